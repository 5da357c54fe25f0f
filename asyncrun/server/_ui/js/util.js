// Shared pieces: the template tag, formatting, permissions, the hash router, the live feed.

import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { ApiError, getRunsById, sleep, watchRuns } from './api.js';

/** Templates: htm over Preact. Values are text, never markup: a record cannot inject HTML. */
export const html = htm.bind(h);

export const STATES = [
  'CREATED', 'BUILT', 'READY', 'PENDING', 'RUNNING', 'COMPLETED', 'ERROR', 'STOP', 'STOPPED',
  'DELETING', 'DELETED',
];
export const TERMINAL = new Set(['COMPLETED', 'ERROR', 'STOPPED', 'DELETED']);
export const STOPPABLE = new Set(['READY', 'PENDING', 'RUNNING']);
const ROLES = ['read', 'write', 'run'];

/** Whether the identity {role, projects} may do what needs `role` in `project`. */
export function may(identity, project, role) {
  if (!identity) return false;
  const covers = identity.projects.includes('*') || identity.projects.includes(project);
  return covers && ROLES.indexOf(identity.role) >= ROLES.indexOf(role);
}

export function StateBadge({ state }) {
  return html`<span class="state state-${state}" data-state=${state}>${state}</span>`;
}

const pad = (n) => String(n).padStart(2, '0');

/** A time as local "YYYY-MM-DD HH:MM:SS". */
export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

/** Oldest first (records keep transitions newest first). */
export function transitionsOf(run) {
  return [...(run.status.transitions || [])].reverse();
}

/** Milliseconds from the first RUNNING to the end (or now while it runs); null if never run. */
export function durationOf(run, now = Date.now()) {
  const steps = transitionsOf(run);
  const start = steps.find((t) => t.state === 'RUNNING');
  if (!start) return null;
  const ended = TERMINAL.has(run.status.state)
    ? steps.filter((t) => TERMINAL.has(t.state)).pop()
    : null;
  return (ended ? Date.parse(ended.time) : now) - Date.parse(start.time);
}

export function formatNumber(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'string') return value; // NaN, Infinity as the API writes them
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(4);
  return String(Number(value.toPrecision(6)));
}

/** A metric value from JSON: non-finite ones come as strings; null stands for a gap. */
export function toNumber(raw) {
  return typeof raw === 'number' && Number.isFinite(raw) ? raw : null;
}

export function errorText(error) {
  if (error instanceof ApiError) return `${error.message} (${error.status}${error.code ? ' ' + error.code : ''})`;
  return String(error && error.message ? error.message : error);
}

// --- the hash router: #/p/PROJECT, #/p/PROJECT/r/ID, #/p/PROJECT/compare?ids=a,b -------------

export function parseHash(hash = location.hash) {
  const [path, search = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(search) };
}

export function href(parts, params) {
  const path = parts.map(encodeURIComponent).join('/');
  const query = params && [...params].length ? `?${params}` : '';
  return `#/${path}${query}`;
}

export function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return parseHash(hash);
}

// --- the live feed -----------------------------------------------------------------------

/**
 * Keep `ids` of `project` up to date: calls onChanges({seq, runs, missing}) with every answer
 * of the watch (the first one at once, with every watched run). Restarts when the ids change;
 * stops when the component goes. Returns whether the feed is currently connected.
 */
export function useWatch(project, ids, onChanges, { timeout = 20 } = {}) {
  const [live, setLive] = useState(false);
  const callback = useRef(onChanges);
  callback.current = onChanges;
  const key = ids.join(',');
  useEffect(() => {
    if (!ids.length) return undefined;
    const stop = new AbortController();
    (async () => {
      let since = 0;
      let wait = 500;
      while (!stop.signal.aborted) {
        try {
          const first = since === 0;
          const changes = await watchRuns(
            project, { ids, since, timeout: first ? 0 : timeout }, stop.signal);
          if (stop.signal.aborted) return;
          since = changes.seq;
          wait = 500;
          setLive(true);
          callback.current(changes, first);
        } catch (error) {
          if (stop.signal.aborted) return;
          setLive(false);
          if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
          await sleep(wait, stop.signal); // the server restarts, the network hiccups: retry
          wait = Math.min(wait * 2, 10000);
        }
      }
    })();
    return () => stop.abort();
  }, [project, key]);
  return live;
}

/** A value that re-renders the component every `ms` while `active` (running durations). */
export function useTick(active, ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [active, ms]);
  return now;
}

/**
 * Metric writes do not wake the watch (they leave a run's change sequence alone), so while
 * runs may still log metrics their summaries are read again every few seconds: one small list
 * request (summaries, no values) while the tab is visible. Calls onSummaries(Map id -> summary).
 */
export function useSummaryRefresh(project, ids, active, onSummaries, ms = 3000) {
  const callback = useRef(onSummaries);
  callback.current = onSummaries;
  const key = ids.join(',');
  useEffect(() => {
    if (!active || !ids.length) return undefined;
    const stop = new AbortController();
    const timer = setInterval(async () => {
      if (document.hidden) return;
      try {
        const runs = await getRunsById(project, ids, stop.signal);
        callback.current(new Map(runs.map((run) => [run.id, run.status.metric_summary || {}])));
      } catch {
        /* the next tick tries again */
      }
    }, ms);
    return () => {
      clearInterval(timer);
      stop.abort();
    };
  }, [project, key, active, ms]);
}

/** `run` with the metric summary `summary` (when there is one). */
export function withSummary(run, summary) {
  if (!summary || JSON.stringify(summary) === JSON.stringify(run.status.metric_summary)) return run;
  return { ...run, status: { ...run.status, metric_summary: summary } };
}
