// MaiRust webmail: a small single-page app over /api/v1. Message text is
// only ever inserted with textContent; HTML bodies (already sanitized by the
// server) are shown in a sandboxed frame without scripts; remote images are
// left out by the server, and blocked by the frame's own policy, until the
// reader asks for them.
'use strict';

const T = {
  en: {
    signIn: 'Sign in', address: 'Address', password: 'Password', logout: 'Sign out', admin: 'Admin',
    older: 'Older messages', empty: 'No messages.', back: '← Back', from: 'From', to: 'To', date: 'Date',
    delete: 'Delete', toJunk: 'Move to Junk', toInbox: 'Move to Inbox', showImages: 'Show images',
    imagesBlocked: 'Images from outside are blocked to protect your privacy.', download: 'Download',
    deleted: 'Deleted.', moved: 'Moved.', badLogin: 'Wrong address or password.', failed: 'Something went wrong: ',
    domains: 'Domains', users: 'Mail users', tokens: 'API tokens', logs: 'Logs', add: 'Add', create: 'Create',
    revoke: 'Revoke', disable: 'Disable', enable: 'Enable', more: 'More', moreText: 'Recall alerts appear here when they are set up.',
    plugins: 'Plugins', noPlugins: 'No plugins installed (mairust plugin install DIR).', resetBreaker: 'Reset breaker', breaker: 'breaker', disabled: 'disabled', pluginLog: 'Log', health: 'health', noLog: '(nothing logged yet)',
    recalled: 'This plugin was found to be dangerous. Disable or remove it.',
    tokenShown: 'Copy this token now; it is not shown again: ', mail: 'Mail', noSubject: '(no subject)',
    spamScore: 'Spam score', notScanned: 'Not scanned for spam (the scanner was unavailable).',
    compose: 'Compose', subject: 'Subject', body: 'Message', send: 'Send', cancel: 'Cancel', sent: 'Sent.',
    suspendedBanner: 'Sending from your account is suspended',
    outbound: 'Outbound', lookUp: 'Look up', release: 'Release', why: 'Why may it send again?', deliveries: 'Latest deliveries',
    since: 'since', until: 'until', st_allowed: 'allowed', st_soft_limited: 'soft-limited', st_suspended: 'suspended',
  },
  ja: {
    signIn: 'ログイン', address: 'メールアドレス', password: 'パスワード', logout: 'ログアウト', admin: '管理',
    older: '古いメッセージ', empty: 'メッセージはありません。', back: '← 戻る', from: '差出人', to: '宛先', date: '日付',
    delete: '削除', toJunk: '迷惑メールへ移動', toInbox: '受信トレイへ移動', showImages: '画像を表示',
    imagesBlocked: 'プライバシー保護のため外部の画像を表示していません。', download: 'ダウンロード',
    deleted: '削除しました。', moved: '移動しました。', badLogin: 'メールアドレスまたはパスワードが違います。', failed: 'エラーが発生しました: ',
    domains: 'ドメイン', users: 'メールユーザー', tokens: 'API トークン', logs: 'ログ', add: '追加', create: '作成',
    revoke: '取り消す', disable: '無効にする', enable: '有効にする', more: 'その他', moreText: 'リコール通知は設定後にここに表示されます。',
    plugins: 'プラグイン', noPlugins: 'プラグインはインストールされていません（mairust plugin install DIR）。', resetBreaker: 'ブレーカーをリセット', breaker: 'ブレーカー', disabled: '無効', pluginLog: 'ログ', health: 'ヘルス', noLog: '（ログはまだありません）',
    recalled: 'このプラグインは危険と判定されました。無効化するか削除してください。',
    tokenShown: 'このトークンは今だけ表示されます。コピーしてください: ', mail: 'メール', noSubject: '(件名なし)',
    spamScore: '迷惑メールスコア', notScanned: '迷惑メール判定は行われていません（スキャナが利用できませんでした）。',
    compose: '新規作成', subject: '件名', body: '本文', send: '送信', cancel: 'キャンセル', sent: '送信しました。',
    suspendedBanner: 'あなたのアカウントは送信一時停止中です',
    outbound: '送信状況', lookUp: '照会', release: '停止を解除', why: '解除の理由', deliveries: '最近の配送',
    since: '開始', until: '終了予定', st_allowed: '送信可', st_soft_limited: '送信制限中', st_suspended: '送信停止中',
  },
};

const $ = (id) => document.getElementById(id);
const state = { lang: localStorage.getItem('lang') || (navigator.language.startsWith('ja') ? 'ja' : 'en'), folder: 'INBOX', cursor: null, current: null, me: null };
const t = (k) => T[state.lang][k] || k;

function applyLang() {
  document.documentElement.lang = state.lang;
  for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll('[data-tp]')) el.placeholder = t(el.dataset.tp);
  $('lang').textContent = state.lang === 'ja' ? 'English' : '日本語';
}

function flash(msg) {
  const s = $('status');
  s.textContent = msg;
  s.classList.add('show');
  setTimeout(() => s.classList.remove('show'), 2500);
}

// Tokens live in sessionStorage: gone when the tab closes.
const tokens = {
  get access() { return sessionStorage.getItem('access'); },
  get refresh() { return sessionStorage.getItem('refresh'); },
  set(tr) { sessionStorage.setItem('access', tr.access_token); sessionStorage.setItem('refresh', tr.refresh_token); },
  clear() { sessionStorage.removeItem('access'); sessionStorage.removeItem('refresh'); },
};

class APIError extends Error {
  constructor(status, problem) { super(problem.detail || String(status)); this.status = status; this.problem = problem; }
}

// api calls /api/v1 with the access token, refreshing it once on 401.
async function api(method, path, body, raw) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = {};
    if (tokens.access) headers.Authorization = 'Bearer ' + tokens.access;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const resp = await fetch('/api/v1' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (resp.status === 401 && attempt === 0 && tokens.refresh && !path.startsWith('/auth/')) {
      if (await refresh()) continue;
    }
    if (!resp.ok) {
      let problem = {};
      try { problem = await resp.json(); } catch { /* not JSON */ }
      if (resp.status === 401) showLogin();
      throw new APIError(resp.status, problem);
    }
    if (raw) return resp;
    return resp.status === 204 ? null : resp.json();
  }
}

async function refresh() {
  const resp = await fetch('/api/v1/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: tokens.refresh }) });
  if (!resp.ok) { tokens.clear(); return false; }
  tokens.set(await resp.json());
  return true;
}

function show(view) {
  for (const v of ['login-view', 'mail-view', 'compose-view', 'admin-view']) $(v).hidden = v !== view;
  $('logout').hidden = view === 'login-view';
  $('compose-link').hidden = view === 'login-view';
  $('admin-link').hidden = !(state.me && state.me.admin);
  $('admin-link').textContent = view === 'admin-view' ? t('mail') : t('admin');
}

function showLogin() { tokens.clear(); state.me = null; $('who').textContent = ''; $('suspended-banner').hidden = true; show('login-view'); }

async function login(ev) {
  ev.preventDefault();
  const f = ev.target;
  $('login-error').textContent = '';
  try {
    const tr = await api('POST', '/auth/login', { address: f.address.value, password: f.password.value });
    tokens.set(tr);
    f.password.value = '';
    await start();
  } catch (e) {
    $('login-error').textContent = e.status === 401 ? t('badLogin') : t('failed') + e.message;
  }
}

async function logout() {
  try { await api('POST', '/auth/logout', { refresh_token: tokens.refresh || '' }); } catch { /* signing out anyway */ }
  showLogin();
}

async function start() {
  state.me = await api('GET', '/me');
  $('who').textContent = state.me.address;
  show('mail-view');
  loadOutboundStatus();
  await loadFolders();
  await loadMessages(true);
}

async function loadFolders() {
  const data = await api('GET', '/folders');
  const box = $('folders');
  box.replaceChildren();
  for (const f of data.folders) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = f.name === state.folder ? 'current' : '';
    const name = document.createElement('span');
    name.textContent = f.name;
    const count = document.createElement('span');
    count.textContent = f.total;
    b.append(name, count);
    b.addEventListener('click', () => { state.folder = f.name; loadFolders(); loadMessages(true); });
    box.append(b);
  }
}

function fmtDate(s) {
  if (!s) return '';
  return new Date(s).toLocaleString(state.lang === 'ja' ? 'ja-JP' : undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

async function loadMessages(reset) {
  if (reset) { state.cursor = null; $('messages').replaceChildren(); closeReader(); }
  const q = new URLSearchParams({ folder: state.folder, limit: '50' });
  if (state.cursor) q.set('cursor', state.cursor);
  const data = await api('GET', '/messages?' + q);
  for (const m of data.messages) $('messages').append(listItem(m));
  state.cursor = data.next_cursor || null;
  $('older').hidden = !state.cursor;
  $('empty').hidden = $('messages').children.length > 0;
}

function listItem(m) {
  const li = document.createElement('li');
  li.dataset.id = m.id;
  const subj = document.createElement('div');
  subj.className = 'subj';
  subj.textContent = m.subject || t('noSubject');
  const meta = document.createElement('div');
  meta.className = 'meta';
  const from = document.createElement('span');
  from.textContent = m.from;
  const date = document.createElement('span');
  date.textContent = fmtDate(m.date || m.received_at);
  meta.append(from, date);
  li.append(subj, meta);
  li.addEventListener('click', () => openMessage(m.id));
  return li;
}

// spamLine describes the spam verdict given at delivery.
function spamLine(v) {
  if (!v || !v.scanned) return t('notScanned');
  const symbols = Object.keys(v.symbols || {}).join(', ');
  return t('spamScore') + ': ' + v.score.toFixed(1) + ' (' + v.action + ')' + (symbols ? ' — ' + symbols : '');
}

function closeReader() {
  $('reader').hidden = true;
  $('mail-view').classList.remove('reading');
  state.current = null;
}

// frameDoc wraps sanitized HTML for the sandboxed frame; outside images load
// only when allowed.
function frameDoc(html, images) {
  const img = images ? 'img-src data: http: https:' : 'img-src data:';
  return '<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; ' + img + '">' + html;
}

async function openMessage(id) {
  const m = await api('GET', '/messages/' + id);
  state.current = m;
  for (const li of $('messages').children) li.classList.toggle('current', li.dataset.id === String(id));
  $('r-subject').textContent = m.subject || t('noSubject');
  $('r-from').textContent = m.from;
  $('r-to').textContent = [m.to, m.cc].filter(Boolean).join(', ');
  $('r-date').textContent = fmtDate(m.date || m.received_at);
  $('r-spam').textContent = spamLine(m.spam);
  const html = m.html || '';
  $('r-html').hidden = !html;
  $('r-text').hidden = !!html;
  $('show-images').hidden = !html;
  $('images-note').hidden = !html;
  if (html) $('r-html').srcdoc = frameDoc(html, false);
  $('r-text').textContent = html ? '' : (m.text || '');
  $('to-junk').hidden = state.folder === 'Junk';
  $('to-inbox').hidden = state.folder === 'INBOX';
  const atts = $('r-attachments');
  atts.replaceChildren();
  for (const a of m.attachments || []) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = t('download') + ': ' + (a.filename || ('#' + a.index)) + ' (' + a.size + ' B)';
    b.addEventListener('click', () => download(m.id, a));
    li.append(b);
    atts.append(li);
  }
  $('reader').hidden = false;
  $('mail-view').classList.add('reading');
}

// showImages asks the server for the body with remote image addresses kept
// (they are removed by default) and lets the frame load them.
async function showImages() {
  const m = await api('GET', '/messages/' + state.current.id + '?images=remote');
  $('r-html').srcdoc = frameDoc(m.html || '', true);
  $('images-note').hidden = true;
  $('show-images').hidden = true;
}

async function download(id, a) {
  const resp = await api('GET', '/messages/' + id + '/attachments/' + a.index, undefined, true);
  const url = URL.createObjectURL(await resp.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = a.filename || ('attachment-' + a.index);
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// loadOutboundStatus shows the banner while the user's sending is suspended.
async function loadOutboundStatus() {
  try {
    const st = await api('GET', '/outbound/status');
    $('suspended-banner').hidden = st.state !== 'suspended';
  } catch { $('suspended-banner').hidden = true; }
}

function showCompose() {
  $('compose-error').textContent = '';
  show('compose-view');
  $('compose-form').to.focus();
}

// send posts the compose form; a refusal shows the server's problem text and
// marks the field it names.
async function send(ev) {
  ev.preventDefault();
  const f = ev.target;
  $('compose-error').textContent = '';
  for (const el of f.elements) el.removeAttribute('aria-invalid');
  try {
    await api('POST', '/send', { to: f.to.value.split(',').map((a) => a.trim()).filter(Boolean), subject: f.subject.value, text: f.text.value });
    f.reset();
    flash(t('sent'));
    await start();
  } catch (e) {
    $('compose-error').textContent = e.message;
    const field = e.problem && e.problem.field && f.elements[e.problem.field];
    if (field) { field.setAttribute('aria-invalid', 'true'); field.focus(); }
    if (e.status === 403) loadOutboundStatus();
  }
}

async function act(fn, done) {
  try { await fn(); flash(done); closeReader(); await loadFolders(); await loadMessages(true); } catch (e) { flash(t('failed') + e.message); }
}

// Admin pages.
async function showAdmin() {
  show('admin-view');
  $('admin-error').textContent = '';
  try {
    await Promise.all([loadDomains(), loadUsers(), loadTokens(), loadLogs(), loadPlugins(), loadOutbound()]);
  } catch (e) { $('admin-error').textContent = t('failed') + e.message; }
}

function row(text, actions) {
  const li = document.createElement('li');
  li.append(document.createTextNode(text + ' '));
  for (const [label, fn] of actions || []) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', () => fn().then(showAdmin, (e) => { $('admin-error').textContent = t('failed') + e.message; }));
    li.append(b);
  }
  return li;
}

async function loadDomains() {
  const data = await api('GET', '/admin/domains');
  $('domains').replaceChildren(...data.domains.map((d) => row(d.name + (d.disabled ? ' (disabled)' : ''),
    [[d.disabled ? t('enable') : t('disable'), () => api('PATCH', '/admin/domains/' + d.id, { disabled: !d.disabled })]])));
}

async function loadUsers() {
  const data = await api('GET', '/admin/users');
  $('users').replaceChildren(...data.users.map((u) => row(u.address + (u.admin ? ' ★' : '') + (u.disabled ? ' (disabled)' : ''),
    [[u.disabled ? t('enable') : t('disable'), () => api('PATCH', '/admin/users/' + u.id, { disabled: !u.disabled })]])));
}

async function loadTokens() {
  const data = await api('GET', '/tokens');
  $('tokens').replaceChildren(...data.tokens.map((tk) => row(tk.name, [[t('revoke'), () => api('DELETE', '/tokens/' + tk.id)]])));
}

async function loadLogs() {
  const data = await api('GET', '/admin/logs?limit=50');
  $('logs').replaceChildren(...data.events.map((ev) => row(fmtDate(ev.at) + ' ' + ev.kind + ' ' + ev.actor)));
}

// loadPlugins lists the agent's plugins with their circuit breakers; an
// admin turns them on or off and closes a breaker that took one out.
async function loadPlugins() {
  const data = await api('GET', '/admin/plugins');
  if (!data.plugins.length) {
    $('plugins').replaceChildren(row(t('noPlugins')));
    return;
  }
  $('plugins').replaceChildren(...data.plugins.map((p) => {
    const b = p.breaker;
    const text = p.id + ' ' + p.version + ' (' + p.kind + ')' + (p.enabled ? '' : ' — ' + t('disabled')) +
      ' — ' + t('breaker') + ': ' + b.state + (b.reason ? ' (' + b.reason + ')' : '') +
      (p.health ? ' — ' + t('health') + ': ' + p.health.status : '');
    const id = encodeURIComponent(p.id);
    const actions = [[p.enabled ? t('disable') : t('enable'), () => api('PATCH', '/admin/plugins/' + id, { enabled: !p.enabled })],
      [t('pluginLog'), async () => { const l = await api('GET', '/admin/plugins/' + id + '/logs?lines=100'); state.pluginLog = l.lines.join('\n') || t('noLog'); }]];
    if (b.state !== 'closed') actions.push([t('resetBreaker'), () => api('POST', '/admin/plugins/' + id + '/breaker/reset')]);
    const r = row(text, actions);
    if (p.recalled) {
      const alert = document.createElement('p');
      alert.className = 'error';
      alert.setAttribute('role', 'alert');
      alert.textContent = t('recalled') + ' (' + p.recalled + ')';
      r.append(alert);
    }
    return r;
  }));
  $('plugin-log').textContent = state.pluginLog || '';
  $('plugin-log').hidden = !state.pluginLog;
}

// outboundLine describes an account's sending state.
function outboundLine(st) {
  return st.account + ': ' + t('st_' + st.state) + (st.reason ? ' (' + st.reason + ')' : '') +
    (st.suspended_at ? ' — ' + t('since') + ' ' + fmtDate(st.suspended_at) : '') +
    (st.soft_until ? ' — ' + t('until') + ' ' + fmtDate(st.soft_until) : '');
}

// loadOutbound shows the sending state of the account looked up, with the
// form that lifts its suspension, and the tenant's latest deliveries.
async function loadOutbound() {
  const account = state.outboundAccount;
  $('outbound-state').textContent = '';
  $('release-form').hidden = true;
  if (account) {
    try {
      const st = await api('GET', '/admin/outbound/accounts/' + encodeURIComponent(account));
      $('outbound-state').textContent = outboundLine(st);
      $('release-form').hidden = st.state !== 'suspended';
    } catch (e) { state.outboundAccount = null; throw e; }
  }
  const log = await api('GET', '/admin/outbound/log?limit=20');
  $('deliveries').replaceChildren(...log.deliveries.map((d) => row(fmtDate(d.at) + ' ' + d.recipient + ' ' + d.status + ' ' + d.code + (d.text ? ' ' + d.text : ''))));
}

function formHandler(id, fn) {
  $(id).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await fn(ev.target); ev.target.reset(); await showAdmin(); } catch (e) { $('admin-error').textContent = t('failed') + e.message; }
  });
}

document.addEventListener('DOMContentLoaded', () => {
  applyLang();
  $('lang').addEventListener('click', () => { state.lang = state.lang === 'ja' ? 'en' : 'ja'; localStorage.setItem('lang', state.lang); applyLang(); });
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('admin-link').addEventListener('click', () => ($('admin-view').hidden ? showAdmin() : start()));
  $('older').addEventListener('click', () => loadMessages(false));
  $('back').addEventListener('click', closeReader);
  $('delete').addEventListener('click', () => act(() => api('DELETE', '/messages/' + state.current.id), t('deleted')));
  $('to-junk').addEventListener('click', () => act(() => api('POST', '/messages/' + state.current.id + '/move', { folder: 'Junk' }), t('moved')));
  $('to-inbox').addEventListener('click', () => act(() => api('POST', '/messages/' + state.current.id + '/move', { folder: 'INBOX' }), t('moved')));
  $('show-images').addEventListener('click', showImages);
  $('compose-link').addEventListener('click', showCompose);
  $('compose-cancel').addEventListener('click', () => show('mail-view'));
  $('compose-form').addEventListener('submit', send);
  formHandler('domain-form', (f) => api('POST', '/admin/domains', { name: f.name.value }));
  formHandler('user-form', (f) => api('POST', '/admin/users', { address: f.address.value, password: f.password.value }));
  formHandler('outbound-form', (f) => { state.outboundAccount = f.account.value.trim(); });
  formHandler('release-form', (f) => api('POST', '/admin/outbound/accounts/' + encodeURIComponent(state.outboundAccount) + '/release', { why: f.why.value }));
  formHandler('token-form', async (f) => { const tk = await api('POST', '/tokens', { name: f.name.value }); $('new-token').textContent = t('tokenShown') + tk.token; });
  if (tokens.access || tokens.refresh) start().catch(showLogin); else showLogin();
});
