// Several runs side by side: their metric keys on shared charts, their figures in one table.

import { useCallback, useEffect, useState } from 'preact/hooks';
import { getRunsById } from './api.js';
import { MetricChart } from './charts.js';
import { KeyPicker } from './run.js';
import {
  StateBadge, TERMINAL, errorText, formatNumber, href, html, useSummaryRefresh, useWatch,
  withSummary,
} from './util.js';

const SHOWN_KEYS = 4;

export function ComparePage({ project, ids }) {
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState('');
  const [shown, setShown] = useState(null);

  useEffect(() => {
    const stop = new AbortController();
    getRunsById(project, ids.slice(0, 50), stop.signal).then(
      (found) => {
        const order = new Map(ids.map((id, i) => [id, i]));
        setRuns(found.sort((a, b) => order.get(a.id) - order.get(b.id)));
      },
      (exc) => !stop.signal.aborted && setError(errorText(exc)),
    );
    return () => stop.abort();
  }, [project, ids.join(',')]);

  const onChanges = useCallback((changes) => {
    const fresh = new Map(changes.runs.map((run) => [run.id, run]));
    setRuns((old) => old && old.map((run) => fresh.get(run.id) || run));
  }, []);
  useWatch(project, runs ? runs.map((r) => r.id) : [], onChanges);
  const active = !!runs && runs.some((run) => !TERMINAL.has(run.status.state));
  useSummaryRefresh(project, runs ? runs.map((r) => r.id) : [], active, (summaries) => {
    setRuns((old) => old && old.map((run) => withSummary(run, summaries.get(run.id))));
  });

  if (error) return html`<main><p class="error" role="alert">${error}</p></main>`;
  if (!runs) return html`<main><p class="dim">Loading…</p></main>`;
  const summaries = runs.map((run) => run.status.metric_summary || {});
  const keys = [...new Set(summaries.flatMap((s) => Object.keys(s)))].sort();
  const series = keys.filter((k) => summaries.some((s) => s[k] && !s[k].single && s[k].count > 0));
  const visible = shown ?? series.slice(0, SHOWN_KEYS);
  return html`
    <main class="compare">
      <div class="run-head">
        <a href=${href(['p', project])}>← runs</a>
        <h2>Comparing ${runs.length} run${runs.length === 1 ? '' : 's'}</h2>
      </div>
      <table class="compare-table" id="compare-table">
        <thead><tr><th>Key (last value)</th>${runs.map((run) => html`
          <th><a href=${href(['p', project, 'r', run.id])}>${run.name || run.id}</a>
            <div><${StateBadge} state=${run.status.state} /></div></th>`)}</tr></thead>
        <tbody>${keys.map((key) => html`
          <tr><td>${key}</td>${summaries.map((s) => html`
            <td>${s[key] ? formatNumber(s[key].last) : ''}</td>`)}</tr>`)}
        </tbody>
      </table>
      <${KeyPicker} keys=${series} shown=${visible} onChange=${setShown} />
      <div class="charts">
        ${series.filter((k) => visible.includes(k)).map((key) => {
          const having = runs.filter((run, i) => summaries[i][key] && !summaries[i][key].single);
          return html`<${MetricChart} key=${key} project=${project} metric=${key}
            runs=${having.map((run) => ({
              id: run.id, label: run.name || run.id, count: run.status.metric_summary[key].count,
            }))} />`;
        })}
      </div>
    </main>`;
}
