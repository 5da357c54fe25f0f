// Metric charts (uPlot) over bounded reads of metric histories.
//
// A run's record carries, per key, a summary {count, last, min, max, single}; the values come
// from `GET .../metrics?key=K&offset=O&limit=N`. A key of at most EXACT values is read whole.
// A longer one (up to millions) is read as WINDOWS evenly spaced windows of WINDOW consecutive
// values, the last one ending at the newest value: a bounded number of requests and points
// whatever the length. Each window is drawn as one point, its mean, inside a band from its
// smallest to its largest value (the band says what the window held, not what lies between
// windows). Zooming in reads the visible range again the same way, and whole once it is at
// most EXACT values, so detail appears where one looks. New values are read as a tail.
//
// The server could do better in one request: a downsampled page (min, max, mean per bucket
// over a range) would make the overview exact; see docs/guides/dashboard.md.

import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { metricPage } from './api.js';
import { errorText, formatNumber, html, toNumber } from './util.js';

export const EXACT = 20000;
export const WINDOWS = 64;
export const WINDOW = 200;
const PAGE = 100000; // the server's largest page
const TAIL = 5000; // appended as a tail up to this many new values; beyond, sampled again
const MAX_KEPT = 200000; // values kept per series (overview plus zoomed detail)
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#db2777',
  '#65a30d', '#4b5563', '#ca8a04'];

async function inPool(tasks, width = 4) {
  const results = new Array(tasks.length);
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, tasks.length) }, worker));
  return results;
}

/** Values [lo, hi) of a key as segments [{lo, values}]: whole, or sampled in windows. */
export async function readRange(project, id, key, lo, hi, signal) {
  const n = hi - lo;
  if (n <= 0) return { segments: [], exact: true };
  const spans = [];
  if (n <= EXACT) {
    for (let start = lo; start < hi; start += PAGE) spans.push([start, Math.min(PAGE, hi - start)]);
  } else {
    for (let i = 0; i < WINDOWS; i++) {
      spans.push([lo + Math.round((i * (n - WINDOW)) / (WINDOWS - 1)), WINDOW]);
    }
  }
  const pages = await inPool(spans.map(([start, limit]) =>
    () => metricPage(project, id, key, start, limit, signal)));
  const summary = n > EXACT;
  const segments = pages.map((page) => ({
    lo: page.offset, values: page.values.map(toNumber), summary,
  }));
  return { segments, exact: !summary };
}

/** The end (exclusive) of the values the segments hold. */
const endOf = (segments) => segments.reduce((end, s) => Math.max(end, s.lo + s.values.length), 0);
const sizeOf = (segments) => segments.reduce((n, s) => n + s.values.length, 0);

function summarise(values) {
  let sum = 0;
  let n = 0;
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v === null) continue;
    sum += v;
    n++;
    low = Math.min(low, v);
    high = Math.max(high, v);
  }
  return n ? [sum / n, low, high] : [null, null, null];
}

/**
 * Segments as sorted points [xs, ys, lows, highs]: a raw segment gives its values (a null, a
 * gap, between raw segments that do not touch); a summarised window gives one point at its
 * middle, its mean, with its smallest and largest value as the band around it.
 */
export function pointsOf(segments) {
  const xs = [];
  const ys = [];
  const lows = [];
  const highs = [];
  let cursor = 0;
  let raw = false;
  for (const seg of [...segments].sort((a, b) => a.lo - b.lo)) {
    const stop = seg.lo + seg.values.length;
    if (stop <= cursor) continue;
    if (seg.summary) {
      const [mean, low, high] = summarise(seg.values);
      xs.push(seg.lo + (seg.values.length - 1) / 2);
      ys.push(mean);
      lows.push(low);
      highs.push(high);
      cursor = stop;
      raw = false;
      continue;
    }
    const start = Math.max(seg.lo, cursor);
    if (raw && start > cursor) {
      xs.push(start - 0.5);
      ys.push(null);
      lows.push(null);
      highs.push(null);
    }
    for (let i = start; i < stop; i++) {
      xs.push(i);
      ys.push(seg.values[i - seg.lo]);
      lows.push(null);
      highs.push(null);
    }
    cursor = stop;
    raw = true;
  }
  return [xs, ys, lows, highs];
}

/** Several series' points on one x axis: a run without a value at some x is left out there. */
export function align(series) {
  if (series.length === 1) return series[0];
  series = series.map(([xs, ys]) => [xs, ys]); // side by side: the means, without bands
  const all = new Set();
  for (const [xs] of series) for (const x of xs) all.add(x);
  const xs = Float64Array.from(all).sort();
  const columns = series.map(([sx, sy]) => {
    const at = new Map();
    for (let i = 0; i < sx.length; i++) at.set(sx[i], sy[i]);
    return Array.from(xs, (x) => (at.has(x) ? at.get(x) : undefined));
  });
  return [Array.from(xs), ...columns];
}

/**
 * One metric key as a chart, for one run or several side by side.
 * runs: [{id, label, count}] where count is the key's value count in the run's summary.
 */
export function MetricChart({ project, metric, runs, height = 220 }) {
  const box = useRef(null);
  const plot = useRef(null);
  const state = useRef({ series: new Map(), zoom: null, busy: false, detailFor: null });
  const [info, setInfo] = useState({ points: 0, exact: true, error: '' });
  const runKey = runs.map((r) => r.id).join(',');
  const counts = runs.map((r) => r.count).join(',');

  function redraw() {
    const series = runs.map((run) => pointsOf(state.current.series.get(run.id)?.segments || []));
    const data = align(series);
    const points = data[0].length;
    const exact = runs.every((run) => state.current.series.get(run.id)?.exact !== false);
    setInfo((old) => ({ ...old, points, exact }));
    if (!plot.current) return;
    box.current.dataset.points = String(points);
    plot.current.setData(data, state.current.zoom === null);
  }

  // The chart itself: made once per set of runs, sized with its box.
  useEffect(() => {
    const el = box.current;
    const options = {
      width: Math.max(el.clientWidth, 300),
      height,
      scales: { x: { time: false } },
      series: [
        { label: 'step', value: (u, v) => (v === null || v === undefined ? '–' : String(v)) },
        ...runs.map((run, i) => ({
          label: run.label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          points: { show: false },
          value: (u, v) => formatNumber(v),
        })),
        ...(runs.length === 1 ? ['window min', 'window max'].map((label) => ({
          label, stroke: 'rgba(37, 99, 235, 0.25)', width: 1, points: { show: false },
          value: (u, v) => formatNumber(v),
        })) : []),
      ],
      bands: runs.length === 1 ? [{ series: [3, 2], fill: 'rgba(37, 99, 235, 0.12)' }] : [],
      axes: [{}, { size: 70, values: (u, ticks) => ticks.map(formatNumber) }],
      cursor: { sync: { key: `asyncrun-${project}` }, drag: { x: true, y: false } },
      hooks: {
        setScale: [(u, scale) => {
          if (scale !== 'x') return;
          const { min, max } = u.scales.x;
          const full = u.data[0].length ? [u.data[0][0], u.data[0][u.data[0].length - 1]] : null;
          const zoomed = full && (min > full[0] + 0.5 || max < full[1] - 0.5);
          state.current.zoom = zoomed ? [Math.max(0, Math.floor(min)), Math.ceil(max) + 1] : null;
          if (zoomed) detail();
        }],
      },
    };
    const u = new uPlot(options, options.series.map(() => []), el);
    plot.current = u;
    el._uplot = u; // for tests and for the curious: the drawn data is u.data
    const resize = new ResizeObserver(() => {
      if (el.clientWidth) u.setSize({ width: el.clientWidth, height });
    });
    resize.observe(el);
    redraw();
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [runKey, height]);

  // Zoomed into a sampled series: read the visible range (whole when it is small enough).
  const timer = useRef(null);
  function detail() {
    clearTimeout(timer.current);
    timer.current = setTimeout(async () => {
      const zoom = state.current.zoom;
      if (!zoom || state.current.detailFor === zoom.join()) return;
      state.current.detailFor = zoom.join();
      try {
        for (const run of runs) {
          const kept = state.current.series.get(run.id);
          if (!kept || kept.exact) continue;
          const hi = Math.min(zoom[1], endOf(kept.segments));
          const read = await readRange(project, run.id, metric, zoom[0], hi);
          if (sizeOf(kept.segments) > MAX_KEPT) kept.segments = kept.segments.slice(0, WINDOWS);
          kept.segments.push(...read.segments);
        }
        redraw();
      } catch (exc) {
        setInfo((old) => ({ ...old, error: errorText(exc) }));
      }
    }, 250);
  }

  // Values: read once, then the tail as the summaries' counts grow.
  useEffect(() => {
    const stop = new AbortController();
    (async () => {
      try {
        for (const run of runs) {
          const kept = state.current.series.get(run.id);
          const have = kept ? endOf(kept.segments) : 0;
          if (kept && run.count <= have) continue;
          if (!kept || (!kept.exact && run.count - have > TAIL) ||
              (kept.exact && run.count > EXACT && run.count - have > TAIL)) {
            const read = await readRange(project, run.id, metric, 0, run.count, stop.signal);
            state.current.series.set(run.id, read);
          } else {
            const tail = await readRange(project, run.id, metric, have, run.count, stop.signal);
            kept.segments.push(...tail.segments);
            kept.exact = kept.exact && run.count <= EXACT;
          }
        }
        if (!stop.signal.aborted) redraw();
      } catch (exc) {
        if (!stop.signal.aborted) setInfo((old) => ({ ...old, error: errorText(exc) }));
      }
    })();
    return () => stop.abort();
  }, [runKey, counts, metric]);

  const total = Math.max(0, ...runs.map((r) => r.count));
  return html`
    <figure class="chart" data-metric=${metric}>
      <figcaption>
        <strong>${metric}</strong>
        <span class="dim">
          ${total.toLocaleString('en-US')} value${total === 1 ? '' : 's'}
          ${!info.exact && ` · sampled: mean and range of ${WINDOWS} windows of ${WINDOW} values — drag to zoom for detail`}
          ${info.exact && ' · drag to zoom, double-click to reset'}
        </span>
      </figcaption>
      ${info.error && html`<p class="error">${info.error}</p>`}
      <div class="plot" ref=${box}></div>
    </figure>`;
}

/** Single-valued keys as figures. */
export function Figures({ summaries }) {
  const singles = Object.entries(summaries).filter(([, s]) => s.single);
  if (!singles.length) return null;
  return html`
    <div class="figures">
      ${singles.map(([key, s]) => html`
        <div class="figure" data-metric=${key}>
          <div class="figure-value">${formatNumber(s.last)}</div>
          <div class="figure-key">${key}</div>
        </div>`)}
    </div>`;
}
