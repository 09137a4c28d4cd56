// Calls to the tooltool API: same origin only, the session's token when signed in, and every
// failure turned into an ApiError carrying the API's problem detail.

import { current, forget } from './session.js';

/** A failed call: HTTP status (0 when the server could not be reached) and problem body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title ?? `${status}`);
    this.status = status;
    this.problem = problem;
  }

  /** "404 Not Found: No file has this digest", as the API words it. */
  describe() {
    if (this.status === 0) return this.problem.detail;
    return this.problem.title ?? `${this.status}: ${this.problem.detail}`;
  }
}

/**
 * Calls `path` and returns the parsed JSON body. Options: method, body (sent as JSON), token
 * (overrides the session's; null for none).
 */
export async function api(path, { method = 'GET', body, token } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = token === undefined ? current()?.token : token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, { detail: 'The server could not be reached. Check your connection and try again.' });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (res.status === 401 && token === undefined && bearer) {
    // The session's token expired or its client was revoked: forget it, and let the header say so.
    forget();
    window.dispatchEvent(new Event('tooltool:session-ended'));
  }
  if (!res.ok) {
    const problem = data && typeof data.detail === 'string' ? data : { detail: res.statusText };
    throw new ApiError(res.status, problem);
  }
  return data;
}

/** `/file/sha512/<digest>` and friends: the digest goes into the path as it is validated. */
export const paths = {
  file: (d) => `/file/sha512/${encodeURIComponent(d)}`,
  fileBatches: (d) => `/file/sha512/${encodeURIComponent(d)}/batches`,
  batch: (id) => `/upload/${encodeURIComponent(id)}`,
  download: (d) => `/sha512/${encodeURIComponent(d)}`,
};
