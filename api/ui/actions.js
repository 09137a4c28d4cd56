// The actions of the manage scope on one file: change its visibility, delete every stored
// copy. Each asks for confirmation, shows the API's problem detail when it fails, and the new
// state when it succeeds (the server records both in the audit trail).

import { ApiError, api, paths } from './api.js';
import { announce, confirmDialog, errorBox, h } from './dom.js';

async function patch(info, ops, outcome, rerender) {
  try {
    await api(paths.file(info.digest), { method: 'PATCH', body: ops });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    outcome.replaceChildren(errorBox(`The change was refused: ${e.describe()}`));
    return;
  }
  // Show the state the server now holds, then say what happened.
  await rerender();
  return true;
}

/** The "Manage" section of a file page. */
export function manageSection(info, name, rerender) {
  const outcome = h('div', { class: 'outcome', id: 'manage-outcome' });
  const other = info.visibility === 'public' ? 'internal' : 'public';
  const select = h('select', { id: 'new-visibility', name: 'visibility' },
    ['public', 'internal'].map((v) => h('option', { value: v, text: v, selected: v === other })));
  const visForm = h('form', { class: 'action', id: 'visibility-form' },
    h('label', { for: 'new-visibility', text: 'Visibility' }),
    h('div', { class: 'row' }, select, h('button', { type: 'submit', text: 'Change visibility' })));
  visForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = select.value;
    if (v === info.visibility) {
      outcome.replaceChildren(errorBox(`“${name}” is already ${v}.`));
      return;
    }
    const who = v === 'public' ? 'anyone, signed in or not,' : 'only callers with the download/internal scope';
    const ok = await confirmDialog({
      title: `Make “${name}” ${v}?`,
      body: h('p', { text: `From the next request on, ${who} may download “${name}” (${info.digest.slice(0, 8)}…).` }),
      confirmLabel: `Make ${v}`,
    });
    if (!ok) return;
    if (await patch(info, [{ op: 'set_visibility', visibility: v }], outcome, rerender)) {
      announce(`“${name}” is now ${v}.`);
    }
  });

  const del = h('button', { type: 'button', class: 'danger', id: 'delete-copies', text: 'Delete every stored copy…' });
  del.disabled = !info.has_instances;
  del.addEventListener('click', async () => {
    const answer = h('input', { id: 'delete-confirm', autocomplete: 'off', spellcheck: 'false' });
    const ok = await confirmDialog({
      title: `Delete every stored copy of “${name}”?`,
      body: [
        h('p', { text: `The bytes are removed from every region (${info.instances.join(', ')}). The record stays; downloads answer 404 until someone uploads the file again.` }),
        h('label', { for: 'delete-confirm', text: `Type “${name}” or the first 8 characters of the digest (${info.digest.slice(0, 8)}) to confirm` }),
        answer,
      ],
      confirmLabel: 'Delete every copy',
      danger: true,
      ready: () => () => [name, info.digest.slice(0, 8)].includes(answer.value.trim()),
    });
    if (!ok) return;
    if (await patch(info, [{ op: 'delete_instances' }], outcome, rerender)) {
      announce(`Every stored copy of “${name}” was deleted.`);
    }
  });

  return h('section', { class: 'manage', 'aria-labelledby': 'manage-h' },
    h('h2', { id: 'manage-h', text: 'Manage' }),
    visForm,
    h('div', { class: 'action' },
      h('p', { class: 'label', text: 'Stored copies' }),
      del,
      info.has_instances ? null : h('p', { class: 'hint', text: 'There is no stored copy to delete.' })),
    outcome);
}
