// The JSON API of the server, as the SDK uses it: same routes, same bearer tokens.
//
// The token lives in sessionStorage only (gone when the tab closes), goes out in the
// Authorization header only, and is never put in a URL: not in the address bar, not in a query
// string, so it can reach no server log, no history and no Referer.

const API = 'api/v1';
const TOKEN_KEY = 'asyncrun.token';

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.detail = body && body.detail;
  }
}

let unauthorized = () => {};
/** Called when the server answers 401 (the token was revoked, or none was given). */
export function onUnauthorized(callback) {
  unauthorized = callback;
}

function url(path, query) {
  const target = new URL(API + path, document.baseURI);
  for (const [key, value] of query || []) {
    if (value !== undefined && value !== null && value !== '') target.searchParams.append(key, value);
  }
  return target;
}

function headers(body) {
  const out = { Accept: 'application/json' };
  const token = session.token;
  if (token) out.Authorization = `Bearer ${token}`;
  if (body !== undefined) out['Content-Type'] = 'application/json';
  return out;
}

async function fail(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: keep the status */
  }
  const error = new ApiError(response.status, body);
  if (response.status === 401) unauthorized(error);
  return error;
}

export async function request(method, path, { query, body, signal, token } = {}) {
  const sent = headers(body);
  if (token !== undefined) sent.Authorization = `Bearer ${token}`;
  const response = await fetch(url(path, query), {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
    credentials: 'omit',
  });
  if (!response.ok) throw await fail(response);
  return response.status === 204 ? null : response.json();
}

const enc = encodeURIComponent;
const runs = (project) => `/projects/${enc(project)}/runs`;

/** {role, projects, token_id} of the session's token (or of `token`, to try one out). */
export const whoami = (token) => request('GET', '/whoami', { token });

/** The filters of `asyncrun ls`, as query parameters. */
export function filterParams(filters) {
  const params = [];
  for (const state of filters.state || []) params.push(['state', state]);
  for (const label of filters.label || []) params.push(['label', label]);
  params.push(['kind', filters.kind], ['name', filters.name]);
  params.push(['created_after', filters.created_after], ['created_before', filters.created_before]);
  return params;
}

/** One page of runs, newest first: {items, next_cursor}. Records carry metric summaries only. */
export function listRuns(project, filters, { limit = 100, cursor, signal } = {}) {
  const query = [...filterParams(filters), ['limit', String(limit)], ['cursor', cursor]];
  return request('GET', runs(project), { query, signal });
}

/** One run's record without its metric values (a list of one: lists carry summaries only). */
export async function getRun(project, id, signal) {
  const query = [['ids', id], ['limit', '1']];
  const page = await request('GET', runs(project), { query, signal });
  if (!page.items.length) throw new ApiError(404, { code: 'not_found', message: `no run ${id}` });
  return page.items[0];
}

/** Runs by id (at most 1,000), with metric summaries, newest first. */
export async function getRunsById(project, ids, signal) {
  const query = [['ids', ids.join(',')], ['limit', '1000']];
  return (await request('GET', runs(project), { query, signal })).items;
}

export const action = (project, id, name) =>
  request('POST', `${runs(project)}/${enc(id)}/${name}`, { body: {} });

/** A page of one metric key's history: {key, offset, values, next_offset} (≤100,000 values). */
export function metricPage(project, id, key, offset, limit, signal) {
  const query = [['key', key], ['offset', String(offset)], ['limit', String(limit)]];
  return request('GET', `${runs(project)}/${enc(id)}/metrics`, { query, signal });
}

/**
 * THE way the dashboard learns that runs changed: one long-poll of `POST .../runs:watch`.
 *
 * Returns {seq, runs, missing}: the watched runs written after `since` (and every `fresh` one)
 * as records with metric summaries, the ids that no longer exist, and the seq to pass next.
 * Everything else in the dashboard goes through this function, so the feed behind it can
 * change (a per-project changes feed) without touching the pages.
 */
export function watchRuns(project, { ids, since = 0, timeout = 20, fresh = [] }, signal) {
  const body = { ids, since, timeout, fresh };
  return request('POST', `${runs(project)}:watch`, { body, signal });
}

/**
 * Follow a run's log (`GET .../logs?follow=true`, NDJSON) from `offset`, or its last `tail`
 * lines. Calls onLines(lines) for each batch; resolves with {end, deleted, error, next} where
 * `end` tells a finished stream (the server's end marker) from a broken connection.
 */
export async function followLogs(project, id, { offset, tail }, onLines, signal) {
  const query = [['follow', 'true']];
  if (tail !== undefined) query.push(['tail', String(tail)]);
  else query.push(['offset', String(offset)]);
  const response = await fetch(url(`${runs(project)}/${enc(id)}/logs`, query), {
    headers: headers(),
    signal,
    cache: 'no-store',
    credentials: 'omit',
  });
  if (!response.ok) throw await fail(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let next = offset;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { end: false, next };
    buffer += decoder.decode(value, { stream: true });
    const parts = buffer.split('\n');
    buffer = parts.pop();
    const lines = [];
    for (const part of parts) {
      if (!part) continue; // a heartbeat
      const item = JSON.parse(part);
      if (item.end) {
        if (lines.length) onLines(lines);
        return { end: true, deleted: !!item.deleted, error: item.error, next };
      }
      lines.push(item);
      next = item.offset + 1;
    }
    if (lines.length) onLines(lines);
  }
}

/** Sleep `ms`, or less if `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
