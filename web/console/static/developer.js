// My plugins: a developer submits a version of a plugin (the package
// made by mairust plugin pack, uploaded with the session), sees the
// automatic review's findings at once, and follows their submissions and
// the reviewers' decisions. Everything the marketplace sends (ids,
// findings, notes, its errors) is untrusted text: it goes into the page
// as text only.
import { marketplace, upload } from './api.js';
import { $, el, onSubmit, when } from './dom.js';
import { lang, t } from './i18n.js';

let seq = 0; // the newest load of the list; answers to older ones are dropped
let last = null; // the answer to the last upload, shown until the page is left
let ids = 0; // for the ids of the submissions' details

// open shows the page afresh.
export function open() {
  last = null;
  $('upload-error').textContent = '';
  return redraw();
}

// redraw shows the page again in the chosen language, keeping the last
// upload's answer.
export function redraw() {
  document.title = t('myPlugins') + ' – MaiRust';
  showUpload();
  return loadSubmissions();
}

onSubmit('upload-form', 'upload-error', async (f) => {
  const file = f.package.files[0];
  last = null;
  showUpload();
  if (!file) {
    f.package.focus();
    throw new Error(t('chooseFile'));
  }
  last = await upload(file);
  f.reset();
  showUpload();
  await loadSubmissions();
});

// showUpload shows the last upload's answer (none: nothing).
function showUpload() {
  $('upload-done').hidden = !last;
  if (!last) return;
  $('upload-state').textContent = t('submittedAs', last.plugin_id || '', last.version || '', stateWord(last.state));
  const warnings = last.warnings || [];
  $('upload-warnings').replaceChildren(...warnings.map((w) => el('li', w)));
  $('upload-warnings-box').hidden = !warnings.length;
  $('upload-findings').replaceChildren(findings(last.findings));
}

// stateWord is a submission's state in words: the upload's (pending) or
// the API's (VERSION_STATE_PENDING).
export function stateWord(state) {
  const key = 'state_' + String(state || '').replace(/^VERSION_STATE_/, '').toLowerCase();
  return t(key) === key ? String(state || '') : t(key);
}

const severities = ['high', 'medium', 'info'];

// sevWord is a finding's severity in words.
function sevWord(s) {
  const key = 'sev_' + s;
  return t(key) === key ? s : t(key);
}

// findings shows the automatic review's findings grouped by severity,
// the most serious first, each group marked by its colour and its name.
export function findings(list = []) {
  if (!list.length) return el('p', t('noFindings'), { className: 'note' });
  const out = el('div', '', { className: 'findings' });
  const others = [...new Set(list.map((f) => f.severity || ''))].filter((s) => !severities.includes(s));
  for (const s of [...severities, ...others]) {
    const group = list.filter((f) => (f.severity || '') === s);
    if (!group.length) continue;
    const sec = el('section', '', { className: 'sev sev-' + (severities.includes(s) ? s : 'other'), 'data-severity': s });
    sec.append(el('h4', t('sevGroup', sevWord(s) || '?', group.length.toLocaleString(lang))));
    const ul = el('ul');
    for (const f of group) {
      const li = el('li', '', { 'data-code': f.code || '' });
      const what = el('p', '', { className: 'what' });
      what.append(el('code', f.code || ''));
      if (f.path) what.append(' · ', el('code', f.path, { className: 'path' }));
      li.append(what, el('p', f.message || ''));
      ul.append(li);
    }
    sec.append(ul);
    out.append(sec);
  }
  return out;
}

async function loadSubmissions() {
  const n = ++seq;
  $('submissions-error').textContent = '';
  try {
    const list = (await marketplace('ListSubmissions', {})).submissions || [];
    if (n !== seq) return;
    $('submissions').replaceChildren(...list.map(submission));
    $('submissions-empty').hidden = list.length > 0;
  } catch (e) {
    if (n !== seq) return;
    $('submissions').replaceChildren();
    $('submissions-empty').hidden = true;
    $('submissions-error').textContent = e.message;
  }
}

// submission is an item of the list: plugin and version, state, dates,
// the reviewer's note, and its details (the full review) on demand.
function submission(s) {
  const state = String(s.state || '').replace(/^VERSION_STATE_/, '').toLowerCase();
  const li = el('li', '', { 'data-plugin': s.pluginId, 'data-version': s.version, 'data-state': state });
  const h = el('h3');
  h.append(el('span', s.pluginId || ''), ' ', el('span', s.version || '', { className: 'version' }));
  const facts = el('p', '', { className: 'facts-line' });
  facts.append(el('span', stateWord(s.state), { className: 'state state-' + state }), ' · ', t('submittedOn', when(s.submittedAt, lang)));
  if (s.reviewedAt) facts.append(' · ', t('reviewedOn', when(s.reviewedAt, lang)));
  li.append(h, facts);
  if (s.reviewNote) {
    const note = el('p', '', { className: 'review-note' });
    note.append(el('strong', t('reviewerNote')), ' ', el('span', s.reviewNote));
    li.append(note);
  }
  const id = 'submission-' + ++ids;
  const body = el('div', '', { id, className: 'details', hidden: true });
  const error = el('p', '', { className: 'error' });
  error.setAttribute('role', 'alert');
  const toggle = el('button', t('details'), { type: 'button', className: 'details-toggle' });
  toggle.setAttribute('aria-expanded', 'false');
  toggle.setAttribute('aria-controls', id);
  toggle.addEventListener('click', async () => {
    error.textContent = '';
    if (!body.hidden) {
      body.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
      toggle.textContent = t('details');
      return;
    }
    toggle.disabled = true;
    try {
      const sub = (await marketplace('GetSubmission', { pluginId: s.pluginId, version: s.version })).submission || {};
      body.replaceChildren(...details(sub));
      body.hidden = false;
      toggle.setAttribute('aria-expanded', 'true');
      toggle.textContent = t('hideDetails');
    } catch (e) {
      error.textContent = e.message;
    } finally {
      toggle.disabled = false;
    }
  });
  li.append(toggle, error, body);
  return li;
}

// details is a submission's full review: its findings, the permissions
// it asks for and the MaiRust version it needs.
function details(sub) {
  return [
    el('h4', t('autoReview')), findings(sub.findings),
    el('h4', t('permissions')), permissionList(sub.permissions),
    el('p', t('needsMairust', sub.minMairustVersion || t('anyVersion')), { className: 'note' }),
  ];
}

// permissionList is a version's permissions, in plain words.
export function permissionList(list) {
  const ul = el('ul', '', { className: 'perms' });
  ul.append(...(list || []).map((p) => el('li', p)));
  return ul;
}
