// The plugin marketplace's storefront: the approved plugins, searched
// (anyone, signed in or not), a plugin's page (its README, the
// permissions of its newest version in plain words, its versions), and
// installing it on a tenant the person owns or administers. Everything
// the marketplace sends is untrusted text: it goes into the page as text
// only, the README through a small Markdown subset made of elements.
import { accounts, marketplace, session, storefront } from './api.js';
import { $, el, onSubmit, row } from './dom.js';
import { lang, t } from './i18n.js';

let seq = 0; // the newest page load; answers to older ones are dropped
let shown = null; // the plugin whose page is shown

export const pluginPath = (id) => '/console/store/' + encodeURIComponent(id);

// list shows the plugins matching query (every word; empty: all).
export async function list(query) {
  const n = ++seq;
  shown = null;
  document.title = t('store') + ' – MaiRust';
  $('store-search').q.value = query;
  $('store-error').textContent = '';
  $('store-empty').hidden = true;
  try {
    const plugins = (await storefront('ListPlugins', { query })).plugins || [];
    if (n !== seq) return;
    $('store-list').replaceChildren(...plugins.map(card));
    $('store-empty').textContent = query.trim() ? t('noMatch', query.trim()) : t('noPluginsListed');
    $('store-empty').hidden = plugins.length > 0;
  } catch (e) {
    if (n !== seq) return;
    $('store-list').replaceChildren();
    $('store-error').textContent = e.message;
  }
}

// card is a plugin of the list: its name (a link to its page), newest
// version, developer and the first line of its description.
function card(p) {
  const li = el('li', '', { className: 'card', 'data-plugin': p.id });
  const h = el('h2');
  h.append(el('a', p.name || p.id, { href: pluginPath(p.id), 'data-nav': '' }));
  li.append(h, el('p', t('versionBy', p.latestVersion || '', p.developer || ''), { className: 'note' }));
  const s = summary(p.description);
  if (s) li.append(el('p', s, { className: 'summary' }));
  return li;
}

// summary is the first line of a README that says something: not a
// heading, a rule, a picture or a code block; without its Markdown marks.
export function summary(md = '') {
  let fence = false;
  for (const raw of md.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('```')) {
      fence = !fence;
      continue;
    }
    if (fence || !line || /^(#|<|!\[|\[!\[|[-=*_]{3,}$)/.test(line)) continue;
    const text = line.replace(/^(>\s*)+/, '').replace(/^([-*+]|\d+[.)])\s+/, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`|\*\*|__/g, '');
    return text.length > 200 ? text.slice(0, 199) + '…' : text;
  }
  return '';
}

// page shows the plugin id's page.
export async function page(id) {
  const n = ++seq;
  shown = null;
  $('plugin-page').hidden = true;
  $('plugin-error').textContent = '';
  let resp;
  try {
    resp = await storefront('GetPlugin', { pluginId: id });
  } catch (e) {
    if (n === seq) $('plugin-error').textContent = e.message;
    return;
  }
  if (n !== seq) return;
  const p = resp.plugin || {};
  shown = p;
  document.title = (p.name || p.id) + ' – MaiRust';
  $('plugin-name').textContent = p.name || p.id;
  $('plugin-id').textContent = p.id;
  $('plugin-developer').textContent = t('byDeveloper', p.developer || '');
  $('plugin-readme').replaceChildren(markdown(p.description || ''));
  $('perms-version').textContent = t('permsOf', p.latestVersion || '');
  permissions('plugin-perms', p.permissions);
  $('plugin-versions').tBodies[0].replaceChildren(...(resp.versions || []).map(version));
  $('plugin-page').hidden = false;
  await installer(n, p);
}

function permissions(id, list) {
  $(id).replaceChildren(...(list || []).map((x) => el('li', x)));
}

// version is a row of the version history.
function version(v) {
  const url = v.downloadUrl || '';
  const link = webURL(url) ? el('a', t('downloadFile'), { href: url, download: '', title: 'SHA-256 ' + (v.sha256 || '') }) : '';
  return row([v.version, v.approvedAt ? new Date(v.approvedAt).toLocaleDateString(lang) : '',
    v.minMairustVersion || t('anyVersion'), reviewSummary(v), link], { 'data-version': v.version });
}

// webURL says whether url is an http(s) address, safe for a link.
function webURL(url) {
  try {
    return ['http:', 'https:'].includes(new URL(url, location.href).protocol);
  } catch {
    return false;
  }
}

function reviewSummary(v) {
  const n = Number(v.reviewFindings || 0);
  if (!n) return t('noFindings');
  const key = 'sev_' + (v.reviewWorst || '');
  const worst = t(key) === key ? v.reviewWorst || '' : t(key);
  return n === 1 ? t('reviewOne', worst) : t('reviewMany', n.toLocaleString(lang), worst);
}

// installer offers to install plugin p: for a signed-in person, on one of
// the tenants they own or administer, once they accept its permissions.
async function installer(n, p) {
  const f = $('install-form');
  $('install-error').textContent = '';
  $('install-done').hidden = true;
  $('install-open').hidden = true;
  $('install-anon').hidden = !!session.token;
  $('install-none').hidden = true;
  f.hidden = true;
  if (!session.token) return;
  let me;
  try {
    me = await accounts('GetMe');
  } catch (e) {
    if (n === seq) $('install-error').textContent = e.message;
    return;
  }
  if (n !== seq) return;
  const mine = (me.memberships || []).filter((m) => m.role === 'ROLE_OWNER' || m.role === 'ROLE_ADMIN');
  $('install-none').hidden = mine.length > 0;
  if (!mine.length) return;
  const before = f.tenant.value;
  f.tenant.replaceChildren(...mine.map((m) => el('option', `${m.tenantName} (${t(m.role)})`, { value: m.tenantId })));
  if (mine.some((m) => m.tenantId === before)) f.tenant.value = before;
  permissions('install-perms', p.permissions);
  f.accept.checked = false;
  f.hidden = false;
}

// Coming back after logging in, the person returns to this plugin.
$('install-login').addEventListener('click', () => sessionStorage.setItem('next', location.pathname));

onSubmit('install-form', 'install-error', async (f) => {
  const p = shown;
  $('install-done').hidden = true;
  $('install-open').hidden = true;
  if (!p) return;
  if (!f.accept.checked) {
    f.accept.focus();
    throw new Error(t('acceptFirst'));
  }
  const tenantId = f.tenant.value;
  // The version whose permissions were shown and accepted, not one
  // approved since.
  const resp = await marketplace('InstallPlugin', { tenantId, pluginId: p.id, version: p.latestVersion, permissionsAccepted: true });
  if (shown !== p) return;
  f.accept.checked = false;
  $('install-done').textContent = t('installed', (resp.installation || {}).version || p.latestVersion);
  $('install-done').hidden = false;
  $('install-open').href = '/console/tenants/' + encodeURIComponent(tenantId);
  $('install-open').hidden = false;
});

// markdown renders the safe part of Markdown a README needs as elements,
// every piece of it as text: headings, paragraphs, lists, quotes, code
// blocks, `code`, **bold**, and links as their text and address.
export function markdown(md) {
  const out = document.createDocumentFragment();
  const lines = md.replace(/\r\n?/g, '\n').split('\n');
  let para = [];
  let list = null;
  const flush = () => {
    if (para.length) out.append(inline(el(para.quote ? 'blockquote' : 'p'), para.join(' ')));
    para = [];
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    let m;
    if (/^\s*```/.test(line)) {
      flush();
      const code = [];
      for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
      const pre = el('pre');
      pre.append(el('code', code.join('\n')));
      out.append(pre);
    } else if ((m = line.match(/^\s{0,3}(#{1,6})\s+(.*?)[\s#]*$/))) {
      flush();
      out.append(inline(el(m[1].length <= 2 ? 'h3' : 'h4'), m[2]));
    } else if (!line.trim() || /^\s{0,3}([-*_]\s*){3,}$/.test(line)) {
      flush();
    } else if ((m = line.match(/^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/))) {
      const tag = /\d/.test(m[1]) ? 'ol' : 'ul';
      if (para.length || (list && list.localName !== tag)) flush();
      if (!list) out.append((list = el(tag)));
      list.append(inline(el('li'), m[2]));
    } else if (list && /^\s+\S/.test(line)) {
      inline(list.lastChild, ' ' + line.trim()); // an item's next line
    } else {
      const quote = /^\s*>/.test(line);
      if (list || (para.length && para.quote !== quote)) flush();
      para.quote = quote;
      para.push(line.replace(/^\s*(>\s?)*/, '').trim());
    }
  }
  flush();
  return out;
}

// inline appends text to e with its `code` and **bold** as elements and
// a link [label](address) as "label (address)".
function inline(e, text) {
  const parts = text.split('`');
  if (parts.length % 2 === 0) { // an unpaired backtick: all text
    e.append(text);
    return e;
  }
  parts.forEach((s, i) => {
    if (i % 2) {
      e.append(el('code', s));
      return;
    }
    s = s.replace(/!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)/g, (_, label, url) => (label && url ? `${label} (${url})` : label || url));
    const bold = s.split('**');
    bold.forEach((b, j) => {
      if (j % 2 && j < bold.length - 1) e.append(el('strong', b));
      else e.append(j % 2 ? '**' + b : b);
    });
  });
  return e;
}
