// One run's log, following live: stdout and stderr told apart, each execution marked.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, followLogs, sleep } from './api.js';
import { errorText, formatTime, html, transitionsOf } from './util.js';

const FIRST_TAIL = 2000; // lines shown of a long log when the page opens
const MAX_LINES = 5000; // lines kept on screen: older ones leave as new ones come
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/**
 * When each execution began. Log lines do not carry their execution, but every execution
 * starts with a move to READY (run or resume) before its process exists: a line belongs to
 * the last execution that began at or before its time.
 */
export function executionStarts(run) {
  const starts = [];
  for (const step of transitionsOf(run)) {
    if (step.state === 'READY') starts.push({ at: Date.parse(step.time), time: step.time });
    if (step.state === 'RUNNING' && starts.length) starts[starts.length - 1].running = step.time;
  }
  return starts;
}

function executionAt(starts, time) {
  let n = 0;
  while (n < starts.length && starts[n].at <= time) n++;
  return Math.max(n, 1);
}

export function LogView({ project, run }) {
  const box = useRef(null);
  const seen = useRef({ last: null, execution: 0, count: 0 });
  const starts = executionStarts(run);
  const startsRef = useRef(starts);
  startsRef.current = starts;
  const [status, setStatus] = useState('connecting');
  const [lines, setLines] = useState(0);
  const [generation, setGeneration] = useState(0);
  const [follow, setFollow] = useState(true);
  const followRef = useRef(follow);
  followRef.current = follow;
  const [show, setShow] = useState({ stdout: true, stderr: true, times: true });

  function append(batch) {
    const el = box.current;
    if (!el) return;
    const fragment = document.createDocumentFragment();
    for (const line of batch) {
      const at = Date.parse(line.time);
      const execution = executionAt(startsRef.current, at);
      if (execution !== seen.current.execution) {
        const start = startsRef.current[execution - 1];
        const mark = document.createElement('div');
        mark.className = 'log-execution';
        mark.dataset.execution = String(execution);
        mark.textContent = `execution ${execution}` +
          (start ? ` · started ${formatTime(start.running || start.time)}` : '');
        fragment.appendChild(mark);
        seen.current.execution = execution;
      }
      const row = document.createElement('div');
      row.className = `log-line ${line.stream === 'stderr' ? 'stderr' : 'stdout'}`;
      row.dataset.offset = String(line.offset);
      const time = document.createElement('span');
      time.className = 'log-time';
      time.textContent = formatTime(line.time).slice(11);
      time.title = line.time;
      const stream = document.createElement('span');
      stream.className = 'log-stream';
      stream.textContent = line.stream === 'stderr' ? 'err' : 'out';
      const text = document.createElement('span');
      text.className = 'log-text';
      text.textContent = line.text.replace(ANSI, '');
      row.append(time, stream, text);
      fragment.appendChild(row);
      seen.current.last = line.offset;
    }
    el.appendChild(fragment);
    seen.current.count += batch.length;
    while (el.childElementCount > MAX_LINES) el.firstElementChild.remove();
    setLines(seen.current.count);
    if (followRef.current) el.scrollTop = el.scrollHeight;
  }

  useEffect(() => {
    const stop = new AbortController();
    (async () => {
      let wait = 500;
      while (!stop.signal.aborted) {
        const from = seen.current.last === null
          ? { tail: FIRST_TAIL } : { offset: seen.current.last + 1 };
        try {
          setStatus('following');
          const result = await followLogs(project, run.id, from, append, stop.signal);
          if (result.end) {
            setStatus(result.deleted ? 'the run was deleted'
              : result.error ? `stopped: ${result.error.message}` : 'ended');
            return;
          }
          wait = 500;
        } catch (exc) {
          if (stop.signal.aborted) return;
          if (exc instanceof ApiError && [401, 403, 404].includes(exc.status)) {
            setStatus(errorText(exc));
            return;
          }
        }
        setStatus('reconnecting');
        await sleep(wait, stop.signal); // the connection broke (a server restart?): resume
        wait = Math.min(wait * 2, 10000);
      }
    })();
    return () => stop.abort();
  }, [project, run.id, generation]);

  // A resumed run logs again: follow its new execution once the old stream has ended.
  useEffect(() => {
    if (status === 'ended') setGeneration((n) => n + 1);
  }, [starts.length]);

  const classes = ['log', show.stdout ? '' : 'hide-stdout', show.stderr ? '' : 'hide-stderr',
    show.times ? '' : 'hide-times'].join(' ');
  const toggle = (name) => (e) => setShow({ ...show, [name]: e.currentTarget.checked });
  return html`
    <section class="logs">
      <div class="toolbar">
        <h3>Logs</h3>
        <label class="check"><input type="checkbox" checked=${show.stdout}
          onChange=${toggle('stdout')} />stdout</label>
        <label class="check"><input type="checkbox" checked=${show.stderr}
          onChange=${toggle('stderr')} />stderr</label>
        <label class="check"><input type="checkbox" checked=${show.times}
          onChange=${toggle('times')} />times</label>
        <label class="check"><input type="checkbox" checked=${follow}
          onChange=${(e) => setFollow(e.currentTarget.checked)} />follow</label>
        <span class="spacer"></span>
        <span class="dim" id="log-status">${lines.toLocaleString('en-US')} lines · ${status}</span>
      </div>
      <div class=${classes} id="log" ref=${box} role="log" aria-live="off"></div>
    </section>`;
}
