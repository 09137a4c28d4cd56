// Small DOM helpers. Text always goes in as text nodes: nothing the server sends is ever
// parsed as HTML.

/**
 * Creates an element. `attrs`: `class`, `text`, event handlers as `onclick` etc., anything
 * else as an attribute (skipped when null, undefined or false). Children: nodes or strings.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
const exact = new Intl.NumberFormat('en-US');

/** "1.5 MiB", with the exact byte count on hover. */
export function bytes(n) {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  const shown = i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${UNITS[i]}`;
  return h('span', { class: 'bytes', title: `${exact.format(n)} bytes`, text: shown });
}

/** A time in the viewer's locale, with UTC on hover. */
export function time(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', { text: iso });
  const utc = `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  const local = d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  return h('time', { datetime: iso, title: utc, text: local });
}

/** A link inside the page (the router handles it without reloading). */
export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}

/** An error box, read out by screen readers. */
export function errorBox(message, hint) {
  return h('div', { class: 'error', role: 'alert' }, h('p', { text: message }), hint ? h('p', { text: hint }) : null);
}

/** A short message for an empty list. */
export function empty(message) {
  return h('p', { class: 'empty', text: message });
}

/** A visibility badge. */
export function visibility(v) {
  return h('span', { class: `badge ${v === 'public' ? 'public' : 'internal'}`, text: v });
}

/** A digest shortened for lists, the full one on hover. */
export function shortDigest(d) {
  return h('code', { class: 'digest', title: d, text: `${d.slice(0, 16)}…` });
}

/**
 * A table that becomes a list of cards on narrow screens: each cell carries its column name.
 * `columns`: header texts; `rows`: arrays of cell contents.
 */
export function table(caption, columns, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'stack' },
      h('caption', { class: 'visually-hidden', text: caption }),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: c })))),
      h(
        'tbody',
        {},
        rows.map((r) => h('tr', {}, r.map((cell, i) => h('td', { 'data-label': columns[i] }, cell)))),
      ),
    ),
  );
}

/** A definition list from [term, description] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([t, d]) => [h('dt', { text: t }), h('dd', {}, d)]));
}

/** Says something to everyone, screen readers included. */
export function announce(message) {
  const status = document.getElementById('status');
  status.textContent = '';
  // A fresh text node, so the same message twice is announced twice.
  requestAnimationFrame(() => {
    status.textContent = message;
  });
}

/**
 * A modal confirmation. `body`: nodes; `confirmLabel`: the button text; `ready(dialog)` may
 * return a function that tells whether confirming is allowed (re-checked on input). Resolves
 * true when confirmed.
 */
export function confirmDialog({ title, body, confirmLabel, danger = false, ready }) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : null, text: confirmLabel });
    const cancel = h('button', { type: 'button', class: 'secondary', text: 'Cancel' });
    const form = h('form', {}, h('h2', { id: titleId, text: title }), body, h('div', { class: 'buttons' }, ok, cancel));
    const dialog = h('dialog', { 'aria-labelledby': titleId }, form);
    let answer = false;
    const allowed = ready ? ready(dialog) : () => true;
    const check = () => {
      ok.disabled = !allowed();
    };
    form.addEventListener('input', check);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!allowed()) return;
      answer = true;
      dialog.close();
    });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    check();
    dialog.showModal();
    (dialog.querySelector('input') ?? cancel).focus();
  });
}
