// Review: the marketplace's reviewers decide on the submissions waiting
// for them, oldest first. Each shows who submitted what, the permissions
// it asks for in plain words, the MaiRust version it needs and the
// automatic review's findings; approving countersigns the package and
// lists it in the store, rejecting tells the developer why (the note).
// Everything a submission holds is the developer's text: it goes into
// the page as text only.
import { marketplace } from './api.js';
import { findings, permissionList } from './developer.js';
import { $, el, when } from './dom.js';
import { lang, t } from './i18n.js';

let seq = 0; // the newest load; answers to older ones are dropped
let ids = 0; // for the ids of the notes' fields

const key = (s) => s.pluginId + ' ' + s.version;

// open shows the submissions waiting for review; with keepNotes, the
// notes typed into the items already shown stay (a redraw in the other
// language).
export async function open(keepNotes = false) {
  const n = ++seq;
  document.title = t('reviewTitle') + ' – MaiRust';
  $('review-done').hidden = true;
  $('review-error').textContent = '';
  $('review-empty').hidden = true;
  const notes = new Map(keepNotes ? [...$('review-list').children].map((li) => [li.dataset.key, li.querySelector('textarea').value]) : []);
  if (!keepNotes) $('review-list').replaceChildren();
  try {
    const list = (await marketplace('ListSubmissions', { pending: true })).submissions || [];
    if (n !== seq) return;
    $('review-list').replaceChildren(...list.map((s) => item(s, notes.get(key(s)) || '')));
    $('review-empty').hidden = list.length > 0;
  } catch (e) {
    if (n !== seq) return;
    $('review-list').replaceChildren();
    $('review-error').textContent = e.message;
  }
}

// item is a submission waiting for review, with the reviewer's note and
// decision.
function item(s, note) {
  const li = el('li', '', { className: 'card', 'data-key': key(s), 'data-plugin': s.pluginId, 'data-version': s.version });
  const h = el('h2');
  h.append(el('span', s.pluginId || ''), ' ', el('span', s.version || '', { className: 'version' }));
  const facts = el('dl', '', { className: 'facts' });
  for (const [name, value] of [[t('developer'), s.developer || ''], [t('submitted'), when(s.submittedAt, lang)],
    [t('minMairust'), s.minMairustVersion || t('anyVersion')]]) {
    facts.append(el('dt', name), el('dd', value));
  }
  li.append(h, facts,
    el('h3', t('permissions')), el('p', t('mayIntro'), { className: 'note' }), permissionList(s.permissions),
    el('h3', t('autoReview')), findings(s.findings));

  const id = 'review-note-' + ++ids;
  const label = el('label', '', { htmlFor: id });
  const field = el('textarea', '', { id, name: 'note', maxLength: 4000, rows: 3 });
  field.value = note;
  label.append(el('span', t('noteToDeveloper')), field);
  const error = el('p', '', { className: 'error' });
  error.setAttribute('role', 'alert');
  const approve = el('button', t('approve'), { type: 'button', className: 'approve' });
  const reject = el('button', t('reject'), { type: 'button', className: 'reject' });
  const actions = el('div', '', { className: 'actions' });
  actions.append(approve, reject);
  const decide = async (yes) => {
    error.textContent = '';
    approve.disabled = reject.disabled = true;
    try {
      await marketplace('ReviewSubmission', { pluginId: s.pluginId, version: s.version, approve: yes, note: field.value.trim() });
      li.remove();
      const done = $('review-done');
      done.textContent = t(yes ? 'approvedDone' : 'rejectedDone', s.pluginId, s.version);
      done.hidden = false;
      done.focus();
      $('review-empty').hidden = $('review-list').children.length > 0;
    } catch (e) {
      error.textContent = e.message;
      if (!yes) field.focus();
    } finally {
      approve.disabled = reject.disabled = false;
    }
  };
  approve.addEventListener('click', () => decide(true));
  reject.addEventListener('click', () => decide(false));
  const form = el('div', '', { className: 'decision' });
  form.append(label, actions, error);
  li.append(form);
  return li;
}
