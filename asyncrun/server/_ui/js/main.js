// The dashboard's shell: sign-in, the project picker, and which page the address shows.

import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, onUnauthorized, session, whoami } from './api.js';
import { ComparePage } from './compare.js';
import { RunPage } from './run.js';
import { RunsPage } from './runs.js';
import { errorText, href, html, useHash } from './util.js';

const RECENT_KEY = 'asyncrun.recentProjects'; // project names only: never the token

function recentProjects() {
  try {
    return JSON.parse(localStorage.getItem(RECENT_KEY) || '[]');
  } catch {
    return [];
  }
}

function remember(project) {
  const names = [project, ...recentProjects().filter((p) => p !== project)].slice(0, 10);
  localStorage.setItem(RECENT_KEY, JSON.stringify(names));
}

function Login({ onSignedIn, message }) {
  const [error, setError] = useState(message || '');
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault(); // the form never submits: the token must not reach a URL
    const input = event.currentTarget.querySelector('input');
    const token = input.value.trim();
    if (!token) return;
    setBusy(true);
    try {
      const identity = await whoami(token);
      session.token = token;
      input.value = '';
      onSignedIn(identity);
    } catch (exc) {
      setError(exc instanceof ApiError && exc.status === 401
        ? 'This token was refused: it is unknown, revoked or mistyped.'
        : `Cannot sign in: ${errorText(exc)}`);
    } finally {
      setBusy(false);
    }
  }
  return html`
    <main class="login">
      <h1>asyncrun</h1>
      <form id="login" onSubmit=${submit} autocomplete="off">
        <label for="token">Access token</label>
        <input id="token" type="password" placeholder="art_…" autocomplete="off"
          spellcheck="false" autofocus />
        <button type="submit" disabled=${busy}>Sign in</button>
        ${error && html`<p class="error" role="alert" id="login-error">${error}</p>`}
        <p class="hint">
          A token from <code>asyncrun server token create</code>. It is kept in this tab's
          session storage only, and sent only in the Authorization header.
        </p>
      </form>
    </main>`;
}

function ProjectPicker({ identity, project }) {
  const wildcard = identity.projects.includes('*');
  const choices = wildcard
    ? [...new Set([...(project ? [project] : []), ...recentProjects()])]
    : identity.projects;
  function go(name) {
    if (name) location.hash = href(['p', name]);
  }
  if (!wildcard) {
    return html`
      <select id="project" aria-label="Project" value=${project || ''}
        onChange=${(e) => go(e.currentTarget.value)}>
        ${!project && html`<option value="">Choose a project…</option>`}
        ${choices.map((name) => html`<option value=${name}>${name}</option>`)}
      </select>`;
  }
  return html`
    <form class="picker" onSubmit=${(e) => {
      e.preventDefault();
      go(e.currentTarget.querySelector('input').value.trim());
    }}>
      <input id="project" aria-label="Project" list="recent-projects" placeholder="project"
        defaultValue=${project || ''} key=${project} />
      <datalist id="recent-projects">
        ${choices.map((name) => html`<option value=${name} />`)}
      </datalist>
      <button type="submit">Open</button>
    </form>`;
}

function Header({ identity, project, onSignOut }) {
  const role = identity.token_id === null ? 'no auth' : identity.role;
  return html`
    <header class="top">
      <a class="brand" href="#/">asyncrun</a>
      <${ProjectPicker} identity=${identity} project=${project} />
      <span class="spacer"></span>
      <span class="role" id="role" title=${identity.token_id ? `token ${identity.token_id}` : ''}>
        ${role}
      </span>
      ${identity.token_id !== null &&
        html`<button class="link" id="sign-out" onClick=${onSignOut}>Sign out</button>`}
    </header>`;
}

function Home({ identity }) {
  const named = identity.projects.filter((p) => p !== '*');
  const names = named.length ? named : recentProjects();
  return html`
    <main class="home">
      <h2>Projects</h2>
      ${names.length
        ? html`<ul class="projects">
            ${names.map((name) => html`<li><a href=${href(['p', name])}>${name}</a></li>`)}
          </ul>`
        : html`<p>Type a project's name above to see its runs.</p>`}
    </main>`;
}

function App() {
  const [identity, setIdentity] = useState(null);
  const [problem, setProblem] = useState(null); // null: checking; '': sign in; text: why
  const { parts, params } = useHash();

  useEffect(() => {
    onUnauthorized(() => {
      session.token = null;
      setIdentity(null);
      setProblem('The server refused the token (revoked?): sign in again.');
    });
    whoami().then(setIdentity, (exc) => {
      session.token = null;
      setProblem(exc instanceof ApiError && exc.status === 401 ? '' : errorText(exc));
    });
  }, []);

  if (!identity) {
    if (problem === null) return html`<p class="boot">Connecting…</p>`;
    return html`<${Login} onSignedIn=${setIdentity} message=${problem} />`;
  }
  const signOut = () => {
    session.token = null;
    setIdentity(null);
    setProblem('');
  };
  const project = parts[0] === 'p' ? parts[1] : null;
  if (project) remember(project);
  let page;
  if (!project) page = html`<${Home} identity=${identity} />`;
  else if (parts[2] === 'r' && parts[3]) {
    page = html`<${RunPage} key=${`${project}/${parts[3]}`} identity=${identity}
      project=${project} id=${parts[3]} />`;
  } else if (parts[2] === 'compare') {
    const ids = (params.get('ids') || '').split(',').filter(Boolean);
    page = html`<${ComparePage} key=${`${project}/${ids}`} project=${project} ids=${ids} />`;
  } else page = html`<${RunsPage} key=${project} identity=${identity} project=${project}
      params=${params} />`;
  return html`
    <${Header} identity=${identity} project=${project} onSignOut=${signOut} />
    ${page}`;
}

render(html`<${App} />`, document.getElementById('app'));
