// The page of one tenant: its domains (with the DNS records to publish),
// mail users, members, agents (enrollment tokens; the list refreshed
// every two seconds so that agents appear as they enroll), the plugins
// installed from the store, and billing (billing.js).
import { agents, marketplace, tenants } from './api.js';
import * as billing from './billing.js';
import { $, button, el, guard, onSubmit, row, when } from './dom.js';
import { lang, t } from './i18n.js';
import { pluginPath } from './store.js';

let current = ''; // the tenant's id while its page is shown
let timer = 0;
let shownAgents = ''; // what the agents table shows, to redraw only on change

// open shows the tenant's page and starts refreshing its agents.
export async function open(id) {
  current = id;
  shownAgents = '';
  for (const e of ['domain-error', 'user-error', 'member-error', 'token-error', 'agents-error', 'plugins-error']) $(e).textContent = '';
  $('dns').hidden = true;
  $('token-box').hidden = true;
  $('plugins').hidden = true;
  $('tenant-name').textContent = '';
  billing.reset();
  timer = setInterval(refreshAgents, 2000);
  await Promise.all([
    guard('domain-error', null, async () => {
      const tn = ((await tenants('ListTenants')).tenants || []).find((x) => x.id === id);
      $('tenant-name').textContent = tn ? tn.name : id;
      document.title = (tn ? tn.name : id) + ' – MaiRust';
    }),
    guard('domain-error', null, loadDomains),
    guard('user-error', null, loadUsers),
    guard('member-error', null, loadMembers),
    guard('agents-error', null, loadAgents),
    guard('plugins-error', null, loadPlugins),
    guard('billing-error', null, () => billing.load(id, () => current === id)),
  ]);
}

// leave stops the refreshing when another page is shown.
export function leave() {
  clearInterval(timer);
  current = '';
  document.title = 'MaiRust console';
}

async function loadDomains() {
  const id = current;
  const list = (await tenants('ListDomains', { tenantId: id })).domains || [];
  if (id !== current) return;
  $('domains').tBodies[0].replaceChildren(...list.map((d) => {
    const actions = el('span', '', { className: 'actions' });
    actions.append(
      button(t('dnsRecords'), 'domain-error', () => showDNS(d), { className: 'dns' }),
      button(t('delete'), 'domain-error', async () => {
        if (!confirm(t('confirmDelete', d.name))) return;
        await tenants('DeleteDomain', { tenantId: id, domainId: d.id });
        $('dns').hidden = true;
        await loadDomains();
      }),
    );
    return row([d.name, actions], { 'data-domain': d.name });
  }));
}

async function showDNS(d) {
  const records = (await tenants('GetDNSRecords', { tenantId: current, domainId: d.id })).records || [];
  $('dns-title').textContent = t('dnsFor', d.name);
  $('dns-records').tBodies[0].replaceChildren(...records.map((r) =>
    row([r.purpose, r.type, r.name, el('code', r.value || ''), r.note || ''], { 'data-purpose': r.purpose })));
  $('dns').hidden = false;
}

onSubmit('domain-form', 'domain-error', async (f) => {
  await tenants('AddDomain', { tenantId: current, name: f.name.value });
  f.reset();
  await loadDomains();
});

async function loadUsers() {
  const id = current;
  const list = (await tenants('ListMailUsers', { tenantId: id })).users || [];
  if (id !== current) return;
  $('users').tBodies[0].replaceChildren(...list.map((u) => row([
    u.admin ? `${u.address} (${t('admin')})` : u.address,
    button(t('delete'), 'user-error', async () => {
      if (!confirm(t('confirmDelete', u.address))) return;
      await tenants('DeleteMailUser', { tenantId: id, userId: u.id });
      await loadUsers();
    }),
  ], { 'data-address': u.address })));
}

onSubmit('user-form', 'user-error', async (f) => {
  await tenants('AddMailUser', { tenantId: current, address: f.address.value, password: f.password.value });
  f.reset();
  await loadUsers();
});

async function loadMembers() {
  const id = current;
  const list = (await tenants('ListMembers', { tenantId: id })).members || [];
  if (id !== current) return;
  $('members').tBodies[0].replaceChildren(...list.map((m) =>
    row([m.email, t(m.role), m.invited ? t('invited') : t('member')])));
}

onSubmit('member-form', 'member-error', async (f) => {
  await tenants('InviteMember', { tenantId: current, email: f.email.value, role: f.role.value });
  f.email.value = '';
  await loadMembers();
});

$('token-create').addEventListener('click', (ev) => guard('token-error', ev.target, async () => {
  const resp = await agents('CreateEnrollmentToken', { tenantId: current });
  $('token').textContent = resp.token;
  $('token').title = t('expires') + ' ' + when(resp.expiresAt, lang);
  $('enroll-cmd').textContent = `mairust agent enroll --control-plane ${location.origin} --token ${resp.token}`;
  $('copied').textContent = '';
  $('token-box').hidden = false;
}));

// The clipboard needs a secure context; elsewhere the command is selected
// for the person to copy.
$('copy-cmd').addEventListener('click', async () => {
  const text = $('enroll-cmd').textContent;
  try {
    await navigator.clipboard.writeText(text);
    $('copied').textContent = t('copied');
  } catch {
    getSelection().selectAllChildren($('enroll-cmd'));
    $('copied').textContent = t('selected');
  }
});

async function loadAgents() {
  const id = current;
  const list = (await agents('ListAgents', { tenantId: id })).agents || [];
  const seen = JSON.stringify(list);
  if (id !== current || seen === shownAgents) return;
  shownAgents = seen;
  $('agents').tBodies[0].replaceChildren(...list.map((a) => {
    const revoked = a.status === 'AGENT_STATUS_REVOKED';
    const revoke = revoked ? '' : button(t('revoke'), 'agents-error', async () => {
      if (!confirm(t('confirmRevoke', a.hostname || a.id))) return;
      await agents('RevokeAgent', { tenantId: id, agentId: a.id });
      await loadAgents();
    });
    const health = (a.health || []).map((h) => `${h.name}: ${t(h.status)}${h.detail ? ' (' + h.detail + ')' : ''}`).join(', ');
    return row([a.hostname || a.id, el('span', t(a.status), { className: 'status ' + (a.status || '').toLowerCase() }),
      a.version || '', a.lastHeartbeatAt ? when(a.lastHeartbeatAt, lang) : t('never'), health, revoke], { 'data-agent': a.id });
  }));
  $('agents-empty').hidden = list.length > 0;
}

// refreshAgents reloads the agents list unless the tab is hidden; its
// failure shows until the next refresh succeeds.
let refreshFailed = false;
async function refreshAgents() {
  if (document.hidden || !current) return;
  try {
    await loadAgents();
    if (refreshFailed) $('agents-error').textContent = '';
    refreshFailed = false;
  } catch (e) {
    $('agents-error').textContent = e.message;
    refreshFailed = true;
  }
}

// loadPlugins fills the Plugins card with the tenant's installations; the
// card stays hidden when the control plane has no marketplace.
async function loadPlugins() {
  const id = current;
  let list;
  try {
    list = (await marketplace('ListInstallations', { tenantId: id })).installations || [];
  } catch (e) {
    if (e.code === 'unimplemented') return;
    if (id === current) $('plugins').hidden = false;
    throw e;
  }
  if (id !== current) return;
  $('installations').tBodies[0].replaceChildren(...list.map((p) => row([
    el('a', p.pluginId, { href: pluginPath(p.pluginId), 'data-nav': '' }),
    p.version,
    p.enabled ? t('enabled') : t('disabled'),
    button(t('uninstall'), 'plugins-error', async () => {
      if (!confirm(t('confirmUninstall', p.pluginId))) return;
      await marketplace('UninstallPlugin', { tenantId: id, pluginId: p.pluginId });
      await loadPlugins();
    }, { className: 'uninstall' }),
  ], { 'data-plugin': p.pluginId })));
  $('installations-empty').hidden = list.length > 0;
  $('plugins').hidden = false;
}
