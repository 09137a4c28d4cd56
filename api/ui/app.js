// The admin page: a router over the deep links (/ui/?q=, /ui/file/<digest>, /ui/batch/<id>,
// /ui/audit), the signed-in state in the header, and the sign-in dialog.

import { ApiError, api } from './api.js';
import { announce, h } from './dom.js';
import { current, forget, remember, secondsLeft, shortScope, tokenFrom } from './session.js';
import * as views from './views.js';

/** Longest life of the derived token: a working day. */
const SESSION_SECONDS = 8 * 3600;

const main = document.getElementById('main');
let renders = 0;

/** Draws the view of the current URL. `focus`: move focus to its heading (after navigation). */
async function render(focus = false) {
  const id = ++renders;
  const path = window.location.pathname;
  const params = new URLSearchParams(window.location.search);
  main.setAttribute('aria-busy', 'true');
  let view;
  try {
    let m;
    if (path === '/ui/' || path === '/ui') view = await views.search(params);
    else if ((m = /^\/ui\/file\/([^/]+)$/.exec(path))) view = await views.file(decodeURIComponent(m[1]), () => render());
    else if ((m = /^\/ui\/batch\/([^/]+)$/.exec(path))) view = await views.batch(decodeURIComponent(m[1]));
    else if (path === '/ui/audit') view = await views.audit(params, openSignIn);
    else view = views.notFound();
  } catch (e) {
    view = { title: 'Error', nodes: [h('h1', { text: 'Something went wrong' }), h('p', { class: 'error', role: 'alert', text: String(e.message ?? e) })] };
  }
  if (id !== renders) return; // A newer navigation won.
  main.replaceChildren(...view.nodes.flat().filter(Boolean));
  main.removeAttribute('aria-busy');
  document.title = `${view.title} · tooltool`;
  for (const a of document.querySelectorAll('header nav a')) {
    const here = a.getAttribute('href') === (path === '/ui' ? '/ui/' : path);
    if (here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (focus) {
    // Keyboard and screen-reader users land on the new page's heading.
    const heading = main.querySelector('h1');
    if (heading) heading.setAttribute('tabindex', '-1');
    (heading ?? main).focus();
  }
}

/** Goes to a page of the UI without reloading. */
function navigate(url) {
  window.history.pushState(null, '', url);
  document.getElementById('status').textContent = '';
  render(true);
}

// Links and forms inside the page go through the router.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, window.location.href);
  if (url.origin !== window.location.origin || !url.pathname.startsWith('/ui') || a.hasAttribute('download')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
document.addEventListener('submit', (e) => {
  const form = e.target;
  const action = form.getAttribute('action');
  if (!action || !action.startsWith('/ui')) return;
  e.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (typeof v === 'string' && v.trim() !== '') params.set(k, v.trim());
  const s = params.toString();
  navigate(s ? `${action}?${s}` : action);
});
window.addEventListener('popstate', () => render(true));
window.addEventListener('tooltool:session-ended', () => {
  drawWho();
  announce('Your session ended (expired or revoked): sign in again.');
});

/** The header: who is signed in, with which scopes, and the button to sign in or out. */
function drawWho() {
  const who = document.getElementById('who');
  const session = current();
  if (!session) {
    who.replaceChildren(
      h('span', { id: 'who-text', text: 'Not signed in: public metadata only.' }),
      h('button', { type: 'button', id: 'sign-in', text: 'Sign in', onclick: openSignIn }),
    );
    return;
  }
  const scopes = session.scopes.length
    ? h('ul', { class: 'scopes', id: 'who-scopes', 'aria-label': 'Scopes' }, session.scopes.map((s) => h('li', { title: s, text: shortScope(s) })))
    : h('span', { id: 'who-scopes', text: 'no scopes' });
  who.replaceChildren(
    h('span', { id: 'who-text' }, 'Signed in as ', h('strong', { id: 'who-id', text: session.clientId })),
    scopes,
    h('button', { type: 'button', id: 'sign-out', class: 'secondary', text: 'Sign out', onclick: signOut }),
  );
}

function signOut() {
  forget();
  drawWho();
  announce('Signed out.');
  render();
}

const dialog = document.getElementById('signin-dialog');
const secret = document.getElementById('signin-secret');
const error = document.getElementById('signin-error');

function openSignIn() {
  error.hidden = true;
  secret.value = '';
  dialog.showModal();
  secret.focus();
}

function showError(message) {
  error.textContent = message;
  error.hidden = false;
}

/** Trades what was pasted for a short-lived token with the same scopes (POST /token). */
async function signIn(text) {
  const token = tokenFrom(text);
  let perms;
  try {
    perms = await api('/__permissions__', { token });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      throw new Error(`Sign-in refused: ${e.problem.detail}. Check that you pasted the whole token or file, and that it was not revoked.`);
    }
    throw new Error(`Sign-in failed: ${e instanceof ApiError ? e.describe() : e}`);
  }
  if (perms.scopes.length === 0) throw new Error('Sign-in refused: these credentials hold no scope.');
  const left = secondsLeft(token);
  const lifetime = left === null ? 3600 : Math.min(SESSION_SECONDS, left - 60);
  if (lifetime < 60) throw new Error('Sign-in refused: these credentials expire in less than two minutes.');
  let derived;
  try {
    derived = await api('/token', { method: 'POST', token, body: { scopes: perms.scopes, expires_in: lifetime } });
  } catch (e) {
    throw new Error(`Sign-in failed: ${e instanceof ApiError ? e.describe() : e}`);
  }
  // Who the derived token says we are, as the server sees it.
  const mine = await api('/__permissions__', { token: derived.token });
  remember({ token: derived.token, clientId: mine.client_id, scopes: mine.scopes, expires: derived.expires });
}

document.getElementById('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const submit = document.getElementById('signin-submit');
  submit.disabled = true;
  try {
    await signIn(secret.value);
    secret.value = '';
    dialog.close();
    drawWho();
    announce(`Signed in as ${current().clientId}.`);
    render();
  } catch (err) {
    showError(err.message);
  } finally {
    submit.disabled = false;
  }
});
document.getElementById('signin-cancel').addEventListener('click', () => dialog.close());
document.getElementById('signin-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (f) secret.value = (await f.text()).trim();
  e.target.value = '';
});

drawWho();
render();
