// The signed-in session: a short-lived derived token, kept in sessionStorage only (this tab,
// gone when it closes), never in local storage or a cookie. Also: reading pasted credentials,
// and which scopes grant what.

const KEY = 'tooltool.session';

/** The current session {token, clientId, scopes, expires}, or null (anonymous). */
export function current() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY));
    if (s && typeof s.token === 'string' && Date.parse(s.expires) > Date.now()) return s;
  } catch {
    // A malformed entry is treated as no session.
  }
  return null;
}

/** Keeps a session for this tab. */
export function remember(session) {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

/** Forgets the session. */
export function forget() {
  sessionStorage.removeItem(KEY);
}

/**
 * Reads what the user pasted: a credentials file {"clientId", "accessToken"} or a bare token.
 * Returns the token; throws an Error with a message for the user.
 */
export function tokenFrom(text) {
  const t = text.trim();
  if (t === '') throw new Error('Paste a token or a credentials file first.');
  if (t.startsWith('{')) {
    let file;
    try {
      file = JSON.parse(t);
    } catch {
      throw new Error('This looks like a credentials file but is not valid JSON.');
    }
    if (typeof file.accessToken !== 'string' || file.accessToken.trim() === '') {
      throw new Error('The credentials file has no "accessToken".');
    }
    return file.accessToken.trim();
  }
  if (/\s/.test(t)) throw new Error('A token is a single word without spaces.');
  return t;
}

/** Seconds until a JWT expires, read from its (unverified) payload; null if unreadable. */
export function secondsLeft(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(payload)).exp;
    return typeof exp === 'number' ? exp - Math.floor(Date.now() / 1000) : null;
  } catch {
    return null;
  }
}

/** The server's scope prefix, which it writes into the page. */
export function prefix() {
  return document.querySelector('meta[name="tooltool-scope-prefix"]')?.content ?? '';
}

/** Whether `scopes` grant `suffix` (e.g. "manage"), wildcards included, as the server decides. */
export function grants(scopes, suffix) {
  const required = `${prefix()}/${suffix}`;
  return (scopes ?? []).some((g) => (g.endsWith('*') ? required.startsWith(g.slice(0, -1)) : g === required));
}

/** A scope without the prefix, for display. */
export function shortScope(scope) {
  const p = `${prefix()}/`;
  return scope.startsWith(p) ? scope.slice(p.length) : scope;
}
