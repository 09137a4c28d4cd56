// The page's views, one per deep link. Each takes the URL's parameters and returns
// {title, nodes}; errors become clear messages, never a blank page.

import { ApiError, api, paths } from './api.js';
import {
  bytes, empty, errorBox, facts, h, link, shortDigest, table, time, visibility,
} from './dom.js';
import { current, grants } from './session.js';
import { manageSection } from './actions.js';

/** Entries per page of results. */
export const PAGE_SIZE = 20;

/** Most results a search route returns (the API's own cap). */
const SEARCH_CAP = 500;

const DIGEST = /^[0-9a-f]{128}$/;

function problem(e, what) {
  if (e instanceof ApiError) return errorBox(`Could not load ${what}: ${e.describe()}`);
  throw e;
}

/** Page `n` (1-based) of `items` and the controls to move between pages. */
function paged(items, n, label, hrefFor) {
  const pages = Math.max(1, Math.ceil(items.length / PAGE_SIZE));
  const page = Math.min(Math.max(1, n), pages);
  const slice = items.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
  const nav = pages === 1 ? null : h(
    'nav',
    { class: 'pager', 'aria-label': `${label} pages` },
    page > 1 ? link(hrefFor(page - 1), 'Previous', { rel: 'prev' }) : null,
    h('span', { text: `Page ${page} of ${pages}` }),
    page < pages ? link(hrefFor(page + 1), 'Next', { rel: 'next' }) : null,
  );
  return { slice, nav };
}

function searchHref(q, fp, bp) {
  const p = new URLSearchParams();
  if (q) p.set('q', q);
  if (fp > 1) p.set('fp', fp);
  if (bp > 1) p.set('bp', bp);
  const s = p.toString();
  return s ? `/ui/?${s}` : '/ui/';
}

/** `/ui/?q=`: files by name or digest prefix, batches by author or message, newest first. */
export async function search(params) {
  const q = (params.get('q') ?? '').trim();
  const fp = Number.parseInt(params.get('fp'), 10) || 1;
  const bp = Number.parseInt(params.get('bp'), 10) || 1;
  const input = h('input', {
    id: 'q', name: 'q', type: 'search', value: q, autocomplete: 'off', placeholder: 'gcc.tar.xz, 3f2a91…, alice, “gcc 13”',
  });
  const form = h(
    'form',
    { role: 'search', class: 'search', action: '/ui/', method: 'get' },
    h('label', { for: 'q', text: 'File name, digest prefix, author or message' }),
    h('div', { class: 'row' }, input, h('button', { type: 'submit', text: 'Search' })),
  );
  const enc = encodeURIComponent(q);
  const [files, batches] = await Promise.allSettled([api(`/file?q=${enc}`), api(`/upload?q=${enc}`)]);
  const heading = q ? `Results for “${q}”` : 'Latest uploads';

  let fileSection;
  if (files.status === 'rejected') {
    fileSection = problem(files.reason, 'files');
  } else {
    // The API lists files oldest first; newest first reads better.
    const all = files.value.result.slice().reverse();
    const { slice, nav } = paged(all, fp, 'Files', (n) => searchHref(q, n, bp));
    const names = await Promise.all(slice.map((f) => api(paths.fileBatches(f.digest)).then(
      (r) => [...new Set(r.result.map((b) => b.filename))],
      () => [],
    )));
    fileSection = all.length === 0
      ? empty(q ? `No file matches “${q}”.` : 'No file has been uploaded yet.')
      : [
        table('Files', ['Name', 'Digest', 'Size', 'Visibility'], slice.map((f, i) => [
          link(`/ui/file/${f.digest}`, names[i].length ? names[i].join(', ') : f.digest.slice(0, 16)),
          shortDigest(f.digest),
          bytes(f.size),
          visibility(f.visibility),
        ])),
        nav,
        all.length >= SEARCH_CAP ? empty(`Only ${SEARCH_CAP} files are listed: make the search more precise.`) : null,
      ];
  }

  let batchSection;
  if (batches.status === 'rejected') {
    batchSection = problem(batches.reason, 'batches');
  } else {
    const all = batches.value.result;
    const { slice, nav } = paged(all, bp, 'Batches', (n) => searchHref(q, fp, n));
    batchSection = all.length === 0
      ? empty(q ? `No batch matches “${q}”.` : 'No batch has been uploaded yet.')
      : [
        table('Batches', ['Batch', 'Author', 'Message', 'Uploaded', 'Files'], slice.map((b) => [
          link(`/ui/batch/${b.id}`, `#${b.id}`),
          b.author,
          b.message,
          time(b.uploaded),
          String(Object.keys(b.files).length),
        ])),
        nav,
        all.length >= SEARCH_CAP ? empty(`Only the newest ${SEARCH_CAP} batches are listed: make the search more precise.`) : null,
      ];
  }

  const count = (r) => (r.status === 'fulfilled' ? ` (${r.value.result.length})` : '');
  return {
    title: q ? `Search: ${q}` : 'Search',
    nodes: [
      h('h1', { text: heading }),
      form,
      h('section', { 'aria-labelledby': 'files-h' }, h('h2', { id: 'files-h', text: `Files${count(files)}` }), fileSection),
      h('section', { 'aria-labelledby': 'batches-h' }, h('h2', { id: 'batches-h', text: `Batches${count(batches)}` }), batchSection),
    ],
  };
}

/** `/ui/file/<digest>`: everything about one file, and the manage actions. */
export async function file(digest, rerender) {
  if (!DIGEST.test(digest)) {
    return {
      title: 'Invalid digest',
      nodes: [h('h1', { text: 'Invalid digest' }), errorBox('Invalid sha512 digest: a digest is 128 lowercase hexadecimal characters.')],
    };
  }
  let info;
  let history;
  try {
    [info, history] = await Promise.all([api(paths.file(digest)), api(paths.fileBatches(digest))]);
  } catch (e) {
    const notFound = e instanceof ApiError && e.status === 404;
    return {
      title: notFound ? 'Unknown file' : 'Error',
      nodes: [
        h('h1', { text: notFound ? 'Unknown file' : 'File' }),
        notFound ? errorBox('No file has this digest.', 'Check the link, or search by name.') : problem(e, 'the file'),
      ],
    };
  }
  const batches = history.result;
  const name = batches[0]?.filename ?? `${digest.slice(0, 16)}…`;
  const session = current();
  const copy = h('button', { type: 'button', class: 'secondary small', id: 'copy-digest', text: 'Copy digest' });
  const digestCode = h('code', { id: 'digest', class: 'digest full', text: digest });
  copy.addEventListener('click', () => copyText(digest, digestCode));

  return {
    title: name,
    nodes: [
      h('h1', { text: name }),
      facts([
        ['Size', bytes(info.size)],
        ['Digest (sha512)', [digestCode, ' ', copy]],
        ['Visibility', visibility(info.visibility)],
        ['Stored copies', storedCopies(info)],
        ['Download', download(info, name, session)],
      ]),
      h('section', { 'aria-labelledby': 'carried-h' },
        h('h2', { id: 'carried-h', text: 'Batches that carried it' }),
        batches.length === 0 ? empty('No batch names this file.') : table('Batches that carried this file', ['Batch', 'Name', 'Author', 'Uploaded', 'Message'], batches.map((b) => [
          link(`/ui/batch/${b.id}`, `#${b.id}`), b.filename, b.author, time(b.uploaded), b.message,
        ]))),
      session && grants(session.scopes, 'manage') ? manageSection(info, name, rerender) : null,
    ],
  };
}

/** The regions holding a copy, each with when its bytes were last proven; or why there is none. */
function storedCopies(info) {
  const lost = Object.entries(info.lost ?? {});
  if (info.instances.length) {
    return h('ul', { class: 'regions', id: 'regions' }, info.instances.map((r) => h('li', {},
      r, info.proven?.[r] ? h('span', { class: 'hint', text: ` (last proven ${info.proven[r]})` }) : null)));
  }
  if (lost.length) {
    const why = lost.map(([r, reason]) => `${r}: ${reason}`).join(', ');
    return h('span', { id: 'regions', class: 'lost', text: `Lost: the scrubber found every stored copy missing or corrupt (${why}). Downloads answer 404; upload the file again.` });
  }
  return h('span', { id: 'regions', text: 'None: every stored copy was deleted. Downloads answer 404 until the file is uploaded again.' });
}

function download(info, name, session) {
  if (!info.has_instances) return h('span', { text: 'Not available: no stored copy.' });
  const a = link(paths.download(info.digest), `Download ${name}`, { id: 'download', download: name });
  if (info.visibility === 'public') return a;
  if (!session || !grants(session.scopes, 'download/internal')) {
    return h('span', { text: 'Internal file: sign in with the download/internal scope to download it.' });
  }
  // A plain link cannot carry the token: ask the server for the signed URL, then go there.
  const out = h('span', {}, a);
  a.addEventListener('click', async (e) => {
    e.preventDefault();
    const res = await fetch(paths.download(info.digest), {
      method: 'HEAD', headers: { Authorization: `Bearer ${session.token}` }, credentials: 'omit',
    }).catch(() => null);
    if (res && res.ok) window.location.assign(res.url);
    else if (res) out.append(errorBox(`Download refused: ${res.status} ${res.statusText}.`));
    // The page may only contact its own server: storage on another host (S3) is out of reach.
    else out.append(errorBox('The page could not get a download URL: use `tooltool fetch` with your credentials.'));
  });
  return out;
}

async function copyText(text, code) {
  const status = document.getElementById('status');
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Digest copied to the clipboard.';
  } catch {
    // No clipboard access (permissions, insecure origin): select it for a manual copy.
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    status.textContent = 'The digest is selected: press Ctrl+C (⌘C) to copy it.';
  }
}

/** `/ui/batch/<id>`: who uploaded what, when, and why. */
export async function batch(id) {
  let b;
  try {
    if (!/^[0-9]+$/.test(id)) throw new ApiError(404, { title: '404 Not Found: No upload batch has this id' });
    b = await api(paths.batch(id));
  } catch (e) {
    const notFound = e instanceof ApiError && e.status === 404;
    return {
      title: 'Unknown batch',
      nodes: [h('h1', { text: `Batch ${id}` }), notFound ? errorBox('No upload batch has this id.') : problem(e, 'the batch')],
    };
  }
  const files = Object.entries(b.files);
  return {
    title: `Batch #${b.id}`,
    nodes: [
      h('h1', { text: `Batch #${b.id}` }),
      facts([['Author', b.author], ['Uploaded', time(b.uploaded)], ['Message', h('span', { class: 'message', text: b.message })]]),
      h('section', { 'aria-labelledby': 'bfiles-h' },
        h('h2', { id: 'bfiles-h', text: `Files (${files.length})` }),
        table('Files of this batch', ['Name', 'Digest', 'Size', 'Visibility'], files.map(([n, f]) => [
          link(`/ui/file/${f.digest}`, n), shortDigest(f.digest), bytes(f.size), visibility(f.visibility),
        ]))),
    ],
  };
}

/** The actions the audit trail records, for the filter. */
const AUDIT_ACTIONS = [
  'batch.uploaded', 'upload.verified', 'upload.rejected', 'file.visibility_changed', 'file.instances_deleted',
  'file.copy_lost',
  'client.created', 'client.rotated', 'client.revoked',
];

function unixOf(date, nextDay) {
  const t = new Date(`${date}T00:00:00`);
  if (Number.isNaN(t.getTime())) return null;
  if (nextDay) t.setDate(t.getDate() + 1);
  return Math.floor(t.getTime() / 1000);
}

function target(t) {
  if (DIGEST.test(t)) return link(`/ui/file/${t}`, `${t.slice(0, 16)}…`, { title: t });
  const m = /^batch:([0-9]+)$/.exec(t);
  if (m) return link(`/ui/batch/${m[1]}`, t);
  return t;
}

/** `/ui/audit`: the audit trail, filtered and paged; needs `manage`. */
export async function audit(params, signIn) {
  const title = h('h1', { text: 'Audit trail' });
  const session = current();
  if (!session) {
    return {
      title: 'Audit trail',
      nodes: [title, errorBox('The audit trail needs the manage scope: sign in first.'),
        h('button', { type: 'button', text: 'Sign in', onclick: signIn })],
    };
  }
  const val = (k) => params.get(k) ?? '';
  const field = (id, label, input) => h('div', { class: 'field' }, h('label', { for: id, text: label }), input);
  const actionSelect = h('select', { id: 'f-action', name: 'action' },
    h('option', { value: '', text: 'Any action' }),
    AUDIT_ACTIONS.map((a) => h('option', { value: a, text: a, selected: a === val('action') })));
  const form = h('form', { class: 'filters', action: '/ui/audit', method: 'get', 'aria-label': 'Filters' },
    field('f-action', 'Action', actionSelect),
    field('f-actor', 'Actor', h('input', { id: 'f-actor', name: 'actor', value: val('actor'), autocomplete: 'off' })),
    field('f-target', 'Target', h('input', { id: 'f-target', name: 'target', value: val('target'), autocomplete: 'off', placeholder: 'digest, batch:ID or client id' })),
    field('f-since', 'From (day)', h('input', { id: 'f-since', name: 'since', type: 'date', value: val('since') })),
    field('f-until', 'To (day, included)', h('input', { id: 'f-until', name: 'until', type: 'date', value: val('until') })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', text: 'Apply filters' }), link('/ui/audit', 'Clear filters')));

  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const k of ['action', 'actor', 'target', 'before']) if (val(k)) query.set(k, val(k));
  if (val('since') && unixOf(val('since'), false) !== null) query.set('since', unixOf(val('since'), false));
  if (val('until') && unixOf(val('until'), true) !== null) query.set('until', unixOf(val('until'), true));
  let page;
  try {
    page = await api(`/audit?${query}`);
  } catch (e) {
    const forbidden = e instanceof ApiError && e.status === 403;
    return {
      title: 'Audit trail',
      nodes: [title, forbidden
        ? errorBox(`Could not load the audit trail: ${e.describe()}`, 'The audit trail needs the manage scope.')
        : problem(e, 'the audit trail')],
    };
  }
  const here = (before) => {
    const p = new URLSearchParams(params);
    if (before) p.set('before', before);
    else p.delete('before');
    const s = p.toString();
    return s ? `/ui/audit?${s}` : '/ui/audit';
  };
  const pager = h('nav', { class: 'pager', 'aria-label': 'Audit trail pages' },
    val('before') ? link(here(null), 'Newest entries') : null,
    page.next_before ? link(here(page.next_before), 'Older entries', { rel: 'next' }) : null);
  return {
    title: 'Audit trail',
    nodes: [
      title,
      form,
      page.result.length === 0
        ? empty('No audit entry matches these filters.')
        : table('Audit trail, newest first', ['When', 'Actor', 'Action', 'Target', 'Details'], page.result.map((e) => [
          time(e.at), e.actor, e.action, target(e.target), h('code', { class: 'details', text: JSON.stringify(e.details) }),
        ])),
      pager.childElementCount ? pager : null,
    ],
  };
}

/** Any other path under /ui/. */
export function notFound() {
  return {
    title: 'Page not found',
    nodes: [h('h1', { text: 'Page not found' }), errorBox('This page does not exist.'), link('/ui/', 'Go to the search')],
  };
}
