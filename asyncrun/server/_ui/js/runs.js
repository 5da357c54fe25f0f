// A project's runs: the filters of `asyncrun ls`, one page at a time, live through the watch.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { listRuns } from './api.js';
import {
  STATES, StateBadge, TERMINAL, durationOf, errorText, formatDuration, formatTime, href, html,
  useTick, useWatch,
} from './util.js';

const PAGE_SIZES = [50, 100, 200, 500];

function filtersOf(params) {
  return {
    state: params.getAll('state'),
    label: params.getAll('label'),
    kind: params.get('kind') || '',
    name: params.get('name') || '',
    created_after: params.get('created_after') || '',
    created_before: params.get('created_before') || '',
  };
}

function localToIso(value) {
  return value ? new Date(value).toISOString() : '';
}

function isoToLocal(value) {
  if (!value) return '';
  const d = new Date(value);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function Filters({ project, filters, limit }) {
  function apply(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const params = new URLSearchParams();
    for (const box of form.querySelectorAll('input[name=state]:checked')) {
      params.append('state', box.value);
    }
    const labels = form.elements.label.value.split(',').map((l) => l.trim()).filter(Boolean);
    for (const label of labels) params.append('label', label);
    for (const field of ['kind', 'name']) {
      const value = form.elements[field].value.trim();
      if (value) params.set(field, value);
    }
    for (const field of ['created_after', 'created_before']) {
      const value = localToIso(form.elements[field].value);
      if (value) params.set(field, value);
    }
    params.set('limit', form.elements.limit.value);
    location.hash = href(['p', project], params);
  }
  return html`
    <form class="filters" id="filters" onSubmit=${apply}>
      <fieldset class="states">
        <legend>State</legend>
        ${STATES.map((state) => html`
          <label class="check">
            <input type="checkbox" name="state" value=${state}
              defaultChecked=${filters.state.includes(state)} />${state}
          </label>`)}
      </fieldset>
      <label>Label <input name="label" placeholder="a,b (all of)"
        defaultValue=${filters.label.join(',')} /></label>
      <label>Kind <input name="kind" placeholder="python+job" defaultValue=${filters.kind} /></label>
      <label>Name <input name="name" defaultValue=${filters.name} /></label>
      <label>Created after
        <input name="created_after" type="datetime-local"
          defaultValue=${isoToLocal(filters.created_after)} /></label>
      <label>before
        <input name="created_before" type="datetime-local"
          defaultValue=${isoToLocal(filters.created_before)} /></label>
      <label>Rows
        <select name="limit">
          ${PAGE_SIZES.map((n) => html`<option value=${n} selected=${n === limit}>${n}</option>`)}
        </select></label>
      <button type="submit">Apply</button>
      <a class="button-like" href=${href(['p', project])}>Clear</a>
    </form>`;
}

function Row({ project, run, now, selected, onSelect }) {
  const duration = durationOf(run, now);
  const labels = run.metadata.labels || [];
  return html`
    <tr data-id=${run.id} class=${selected ? 'selected' : ''}>
      <td><input type="checkbox" aria-label=${`select ${run.id}`} checked=${selected}
        onChange=${(e) => onSelect(run.id, e.currentTarget.checked)} /></td>
      <td class="col-state"><${StateBadge} state=${run.status.state} /></td>
      <td class="col-kind">${run.kind}</td>
      <td class="col-name">
        <a href=${href(['p', project, 'r', run.id])}>${run.name || run.id}</a>
        ${run.name && run.name !== run.id && html`<span class="dim"> ${run.id}</span>`}
      </td>
      <td class="col-labels">${labels.map((l) => html`<span class="label">${l}</span>`)}</td>
      <td class="col-created">${formatTime(run.metadata.created)}</td>
      <td class="col-duration">${formatDuration(duration)}</td>
      <td class="col-message" title=${run.status.message || ''}>${run.status.message || ''}</td>
    </tr>`;
}

export function RunsPage({ project, params }) {
  const filters = filtersOf(params);
  const limit = Number(params.get('limit')) || 100;
  const filterKey = params.toString();
  const [pages, setPages] = useState([undefined]); // cursors of the pages seen: back and forth
  const [page, setPage] = useState({ items: [], next_cursor: null, loading: true });
  const [error, setError] = useState('');
  const [selected, setSelected] = useState(new Set());
  const [reload, setReload] = useState(0);
  const cursor = pages[pages.length - 1];
  const firstId = useRef(null);

  useEffect(() => {
    setPages([undefined]);
  }, [filterKey]);

  useEffect(() => {
    const stop = new AbortController();
    listRuns(project, filters, { limit, cursor, signal: stop.signal }).then(
      (answer) => {
        if (stop.signal.aborted) return;
        setError('');
        setPage({ ...answer, loading: false });
        if (pages.length === 1) firstId.current = answer.items[0]?.id ?? null;
      },
      (exc) => {
        if (!stop.signal.aborted) {
          setError(errorText(exc));
          setPage({ items: [], next_cursor: null, loading: false });
        }
      },
    );
    return () => stop.abort();
  }, [project, filterKey, cursor, reload]);

  // Changes of the runs on screen come from the watch; a run created since shows up when
  // the first page's newest run is no longer the one shown (checked after every answer).
  const ids = page.items.map((run) => run.id);
  const onChanges = useCallback(async (changes) => {
    if (changes.runs.length || changes.missing.length) {
      const fresh = new Map(changes.runs.map((run) => [run.id, run]));
      const gone = new Set(changes.missing);
      setPage((old) => ({
        ...old,
        items: old.items.filter((run) => !gone.has(run.id)).map((run) => fresh.get(run.id) || run),
      }));
    }
    if (pages.length === 1) {
      try {
        const head = await listRuns(project, filters, { limit: 1 });
        const newest = head.items[0]?.id ?? null;
        if (newest !== firstId.current) setReload((n) => n + 1);
      } catch {
        /* the next answer tries again */
      }
    }
  }, [project, filterKey, pages.length]);
  const live = useWatch(project, ids, onChanges, { timeout: 10 });
  const empty = !page.loading && !page.items.length && pages.length === 1 && !error;
  useEffect(() => {
    // Nothing to watch yet: look for a first run now and then (one row, not the page).
    if (!empty) return undefined;
    const timer = setInterval(() => {
      listRuns(project, filters, { limit: 1 }).then((head) => {
        if (head.items.length) setReload((n) => n + 1);
      }, () => {});
    }, 5000);
    return () => clearInterval(timer);
  }, [empty, project, filterKey]);
  const now = useTick(page.items.some((run) => !TERMINAL.has(run.status.state)));

  const select = (id, on) => setSelected((old) => {
    const next = new Set(old);
    if (on) next.add(id);
    else next.delete(id);
    return next;
  });
  const compare = [...selected];
  const first = (pages.length - 1) * limit + 1;
  return html`
    <main class="runs">
      <${Filters} project=${project} filters=${filters} limit=${limit} key=${filterKey} />
      <div class="toolbar">
        <span class=${live ? 'live on' : 'live'} id="live" title="updates through the watch">
          ${live ? 'live' : 'connecting…'}
        </span>
        <span class="dim">
          ${page.items.length ? `runs ${first}–${first + page.items.length - 1}` : ''}
        </span>
        <span class="spacer"></span>
        ${compare.length >= 1 && html`
          <a class="button-like" id="compare"
            href=${href(['p', project, 'compare'], new URLSearchParams({ ids: compare.join(',') }))}>
            Compare ${compare.length} run${compare.length > 1 ? 's' : ''}
          </a>`}
        <button disabled=${pages.length === 1} onClick=${() => setPages(pages.slice(0, -1))}>
          ← Newer</button>
        <button id="next-page" disabled=${!page.next_cursor}
          onClick=${() => setPages([...pages, page.next_cursor])}>Older →</button>
      </div>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <table class="runs-table" id="runs">
        <thead><tr>
          <th></th><th>State</th><th>Kind</th><th>Name</th><th>Labels</th><th>Created</th>
          <th>Duration</th><th>Message</th>
        </tr></thead>
        <tbody>
          ${page.items.map((run) => html`<${Row} key=${run.id} project=${project} run=${run}
            now=${now} selected=${selected.has(run.id)} onSelect=${select} />`)}
        </tbody>
      </table>
      ${!page.loading && !page.items.length && !error &&
        html`<p class="empty">No runs${filterKey ? ' match these filters' : ''}.</p>`}
    </main>`;
}
