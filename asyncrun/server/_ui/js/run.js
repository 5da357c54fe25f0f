// One run: its record, its metrics as charts, its log following live; stop and resume.

import { useCallback, useEffect, useState } from 'preact/hooks';
import { action, getRun } from './api.js';
import { Figures, MetricChart } from './charts.js';
import { LogView } from './logs.js';
import {
  STOPPABLE, StateBadge, TERMINAL, durationOf, errorText, formatDuration, formatNumber,
  formatTime, href, html, may, transitionsOf, useSummaryRefresh, useTick, useWatch, withSummary,
} from './util.js';

const SHOWN_KEYS = 6; // charts drawn at first; the others one click away

function Actions({ identity, run, onDone }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const state = run.status.state;
  const buttons = [];
  if (may(identity, run.project, 'write') && STOPPABLE.has(state)) buttons.push(['stop', 'Stop']);
  if (may(identity, run.project, 'run') && state === 'STOPPED') buttons.push(['resume', 'Resume']);
  if (may(identity, run.project, 'run') && (state === 'CREATED' || state === 'BUILT')) {
    buttons.push(['run', 'Start']);
  }
  async function act(name) {
    setBusy(true);
    setError('');
    try {
      onDone(await action(run.project, run.id, name));
    } catch (exc) {
      setError(errorText(exc));
    } finally {
      setBusy(false);
    }
  }
  return html`
    <span class="actions">
      ${buttons.map(([name, label]) => html`
        <button id=${`action-${name}`} class=${name === 'stop' ? 'danger' : ''} disabled=${busy}
          onClick=${() => act(name)}>${label}</button>`)}
      ${error && html`<span class="error" role="alert">${error}</span>`}
    </span>`;
}

function Record({ run }) {
  const steps = transitionsOf(run);
  const meta = run.metadata;
  return html`
    <section class="record">
      <h3>Record</h3>
      <dl class="facts">
        <dt>Kind</dt><dd>${run.kind}</dd>
        <dt>Project</dt><dd>${run.project}</dd>
        <dt>Created</dt><dd>${formatTime(meta.created)}${meta.created_by && ` by ${meta.created_by}`}</dd>
        <dt>Updated</dt><dd>${formatTime(meta.updated)}</dd>
        <dt>Labels</dt><dd>${(meta.labels || []).map((l) => html`<span class="label">${l}</span>`)}</dd>
        ${meta.description && html`<dt>Description</dt><dd>${meta.description}</dd>`}
        <dt>Message</dt><dd id="run-message">${run.status.message || ''}</dd>
        <dt>Revision</dt><dd>${meta.revision}</dd>
      </dl>
      <h3>Transitions</h3>
      <table class="transitions" id="transitions">
        <thead><tr><th>State</th><th>Time</th><th>Message</th></tr></thead>
        <tbody>
          ${steps.map((t) => html`<tr>
            <td><${StateBadge} state=${t.state} /></td><td title=${t.time}>${formatTime(t.time)}</td>
            <td>${t.message || ''}</td></tr>`)}
        </tbody>
      </table>
      <details>
        <summary>Spec</summary>
        <pre class="json" id="spec">${JSON.stringify(run.spec, null, 2)}</pre>
      </details>
      <details>
        <summary>Whole record</summary>
        <pre class="json">${JSON.stringify(run, null, 2)}</pre>
      </details>
    </section>`;
}

function SummaryTable({ summaries }) {
  const entries = Object.entries(summaries);
  if (!entries.length) return html`<p class="dim">No metrics.</p>`;
  return html`
    <table class="summaries">
      <thead><tr><th>Key</th><th>Values</th><th>Last</th><th>Min</th><th>Max</th></tr></thead>
      <tbody>${entries.map(([key, s]) => html`
        <tr><td>${key}</td><td>${s.single ? 'single' : s.count.toLocaleString('en-US')}</td>
          <td>${formatNumber(s.last)}</td><td>${formatNumber(s.min)}</td>
          <td>${formatNumber(s.max)}</td></tr>`)}
      </tbody>
    </table>`;
}

export function KeyPicker({ keys, shown, onChange }) {
  if (keys.length <= 1) return null;
  return html`
    <div class="key-picker">
      ${keys.map((key) => html`
        <label class="check"><input type="checkbox" checked=${shown.includes(key)}
          onChange=${(e) => onChange(e.currentTarget.checked
            ? [...shown, key] : shown.filter((k) => k !== key))} />${key}</label>`)}
    </div>`;
}

function Metrics({ run }) {
  const summaries = run.status.metric_summary || {};
  const keys = Object.keys(summaries).filter((k) => !summaries[k].single && summaries[k].count > 0);
  const [shown, setShown] = useState(null);
  const visible = shown ?? keys.slice(0, SHOWN_KEYS);
  return html`
    <section class="metrics">
      <h3>Metrics</h3>
      ${!Object.keys(summaries).length && html`<p class="dim">No metrics yet.</p>`}
      <${Figures} summaries=${summaries} />
      <${KeyPicker} keys=${keys} shown=${visible} onChange=${setShown} />
      <div class="charts">
        ${keys.filter((k) => visible.includes(k)).map((key) => html`
          <${MetricChart} key=${key} project=${run.project} metric=${key}
            runs=${[{ id: run.id, label: run.name || run.id, count: summaries[key].count }]} />`)}
      </div>
      ${Object.keys(summaries).length > 0 && html`
        <details><summary>Summaries</summary><${SummaryTable} summaries=${summaries} /></details>`}
    </section>`;
}

export function RunPage({ identity, project, id }) {
  const [run, setRun] = useState(null);
  const [error, setError] = useState('');
  const [gone, setGone] = useState(false);

  useEffect(() => {
    const stop = new AbortController();
    getRun(project, id, stop.signal).then(setRun, (exc) => {
      if (!stop.signal.aborted) setError(errorText(exc));
    });
    return () => stop.abort();
  }, [project, id]);

  const onChanges = useCallback((changes) => {
    for (const fresh of changes.runs) if (fresh.id === id) setRun(fresh);
    if (changes.missing.includes(id)) setGone(true);
  }, [id]);
  const live = useWatch(project, run ? [id] : [], onChanges, { timeout: 20 });
  const now = useTick(run && !TERMINAL.has(run.status.state));
  const logging = !!run && run.status.state !== 'DELETED' &&
    !(TERMINAL.has(run.status.state) && Date.now() - Date.parse(run.metadata.updated) > 60000);
  useSummaryRefresh(project, [id], logging, (summaries) => {
    setRun((old) => old && withSummary(old, summaries.get(id)));
  });

  if (error) return html`<main class="run"><p class="error" role="alert">${error}</p></main>`;
  if (!run) return html`<main class="run"><p class="dim">Loading…</p></main>`;
  return html`
    <main class="run">
      <div class="run-head">
        <a href=${href(['p', project])}>← runs</a>
        <h2 id="run-title">${run.name || run.id}</h2>
        ${run.name && run.name !== run.id && html`<span class="dim">${run.id}</span>`}
        <span id="run-state"><${StateBadge} state=${run.status.state} /></span>
        <span class="dim">${formatDuration(durationOf(run, now))}</span>
        <span class=${live ? 'live on' : 'live'}>${live ? 'live' : 'connecting…'}</span>
        <span class="spacer"></span>
        <${Actions} identity=${identity} run=${run} onDone=${setRun} />
      </div>
      ${gone && html`<p class="error">This run was deleted.</p>`}
      <${Metrics} run=${run} />
      <${LogView} project=${project} run=${run} />
      <${Record} run=${run} />
    </main>`;
}
