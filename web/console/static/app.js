// MaiRust hosted console: the pages of a single-page app under /console/.
// This module routes between them and holds the account pages (sign up,
// verify, log in, accept an invitation) and the list of tenants; the
// tenant page lives in tenant.js, the plugin store in store.js, a
// developer's submissions in developer.js and their review in review.js.
import { accounts, marketplace, session, tenants, whenUnauthenticated } from './api.js';
import * as developer from './developer.js';
import { $, el, guard, onSubmit } from './dom.js';
import * as i18n from './i18n.js';
import { t } from './i18n.js';
import * as review from './review.js';
import * as store from './store.js';
import * as tenant from './tenant.js';

const views = ['v-login', 'v-signup', 'v-verify', 'v-invite', 'v-tenants', 'v-tenant', 'v-store', 'v-plugin', 'v-developer', 'v-review'];
// The header's links to pages and the page each stands for.
const navs = { 'nav-store': 'v-store', 'nav-developer': 'v-developer', 'nav-review': 'v-review' };

function show(view) {
  for (const v of views) $(v).hidden = v !== view;
  $('who').textContent = session.email;
  $('logout').hidden = !session.token;
  $('nav-login').hidden = !!session.token || view === 'v-login' || view === 'v-signup';
  $('nav-developer').hidden = !session.token;
  for (const [id, v] of Object.entries(navs)) {
    if (v === view) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
  reviewLink();
}

// reviewer is what is known of the session's account: whether it reviews
// the marketplace's submissions (the session it was asked for, null:
// not asked yet).
let reviewer = { token: null, yes: false };

// reviewLink shows the header's Review link to reviewers. Whether the
// account is one is found out once a session, by asking for the
// submissions waiting for review: PermissionDenied means it is not (and
// without the marketplace, Unimplemented: nobody is); any other failure
// is asked again on the next page.
function reviewLink() {
  const token = session.token;
  $('nav-review').hidden = !token || reviewer.token !== token || !reviewer.yes;
  if (!token || reviewer.token === token) return;
  reviewer = { token, yes: false };
  marketplace('ListSubmissions', { pending: true }, { quiet: true }).then(() => {
    if (reviewer.token !== token) return;
    reviewer.yes = true;
    $('nav-review').hidden = session.token !== token;
  }, (e) => {
    if (reviewer.token === token && !['permission_denied', 'unimplemented'].includes(e.code)) reviewer.token = null;
  });
}

// decode is a path element's text ('' when it is not well encoded).
function decode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}

// go shows the page at path (under /console/) as a new history entry.
function go(path) {
  history.pushState(null, '', path);
  route();
}

function route() {
  tenant.leave();
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  if (path === '/console/signup') return show('v-signup');
  if (path === '/console/verify') return verifyPage(query.get('token'));
  if (path === '/console/invite') return invitePage();
  // The store is public: it needs no session.
  if (path === '/console/store' || path === '/console/store/') {
    show('v-store');
    return store.list(query.get('q') || '');
  }
  const p = path.match(/^\/console\/store\/([^/]+)$/);
  if (p) {
    show('v-plugin');
    return store.page(decode(p[1]));
  }
  if (!session.token) {
    // Coming back to these pages after logging in.
    if (path === '/console/developer' || path === '/console/review') sessionStorage.setItem('next', path);
    return loginPage(false);
  }
  if (path === '/console/developer') {
    show('v-developer');
    return developer.open();
  }
  if (path === '/console/review') {
    show('v-review');
    return review.open();
  }
  const m = path.match(/^\/console\/tenants\/([^/]+)$/);
  if (m) {
    show('v-tenant');
    return tenant.open(decodeURIComponent(m[1]));
  }
  if (path !== '/console/') return go('/console/');
  return tenantsPage();
}

function loginPage(forInvitation) {
  if (location.pathname !== '/console/login') history.replaceState(null, '', '/console/login');
  $('login-note').hidden = !forInvitation;
  show('v-login');
  $('login-form').email.focus();
}

onSubmit('signup-form', 'signup-error', async (f) => {
  $('signup-done').hidden = true;
  const resp = await accounts('SignUp', { email: f.email.value, password: f.password.value });
  f.password.value = '';
  $('signup-done').textContent = t('checkMail', resp.account.email);
  $('signup-done').hidden = false;
  $('login-form').email.value = resp.account.email;
});

// verifyPage confirms the address with the link's token, once: the
// token leaves the address bar (and the history) at once.
async function verifyPage(token) {
  show('v-verify');
  $('verify-done').hidden = true;
  $('verify-login').hidden = true;
  $('verify-working').hidden = !token;
  $('verify-error').textContent = token ? '' : t('noToken');
  if (!token) return;
  history.replaceState(null, '', '/console/verify');
  try {
    const resp = await accounts('VerifyEmail', { token });
    $('verify-done').textContent = t('verified', resp.account.email);
    $('verify-done').hidden = false;
    $('verify-login').hidden = false;
    $('login-form').email.value = resp.account.email;
  } catch (e) {
    $('verify-error').textContent = e.message;
  } finally {
    $('verify-working').hidden = true;
  }
}

// invitePage offers to accept the invitation; without a session it asks
// to log in first and comes back here afterwards.
function invitePage() {
  if (!session.token) {
    sessionStorage.setItem('next', location.pathname + location.search);
    return loginPage(true);
  }
  show('v-invite');
  $('invite-done').hidden = true;
  $('invite-open').hidden = true;
  $('invite-accept').hidden = false;
  $('invite-error').textContent = '';
}

$('invite-accept').addEventListener('click', (ev) => guard('invite-error', ev.target, async () => {
  const token = new URLSearchParams(location.search).get('token');
  if (!token) throw new Error(t('noToken'));
  const resp = await accounts('AcceptInvitation', { token });
  const m = resp.membership;
  history.replaceState(null, '', '/console/invite');
  $('invite-accept').hidden = true;
  $('invite-done').textContent = t('joined', m.tenantName, t(m.role));
  $('invite-done').hidden = false;
  $('invite-open').href = '/console/tenants/' + encodeURIComponent(m.tenantId);
  $('invite-open').hidden = false;
}));

onSubmit('login-form', 'login-error', async (f) => {
  const resp = await accounts('LogIn', { email: f.email.value, password: f.password.value });
  session.set(resp.sessionToken, resp.account.email);
  f.password.value = '';
  const next = sessionStorage.getItem('next') || '/console/';
  sessionStorage.removeItem('next');
  go(next);
});

async function tenantsPage() {
  show('v-tenants');
  $('tenant-error').textContent = '';
  try {
    const resp = await tenants('ListTenants');
    const list = resp.tenants || [];
    $('tenants').replaceChildren(...list.map((tn) => {
      const li = el('li');
      li.append(el('a', tn.name, { href: '/console/tenants/' + encodeURIComponent(tn.id), 'data-nav': '' }), ' ', el('span', t(tn.role), { className: 'note' }));
      return li;
    }));
    $('tenants-empty').hidden = list.length > 0;
  } catch (e) {
    $('tenant-error').textContent = e.message;
  }
}

onSubmit('tenant-form', 'tenant-error', async (f) => {
  const resp = await tenants('CreateTenant', { name: f.name.value });
  f.reset();
  go('/console/tenants/' + encodeURIComponent(resp.tenant.id));
});

onSubmit('store-search', 'store-error', async (f) => {
  const q = f.q.value.trim();
  go('/console/store' + (q ? '?q=' + encodeURIComponent(q) : ''));
});

$('logout').addEventListener('click', () => {
  session.clear();
  go('/console/login');
});

$('lang').addEventListener('click', () => {
  i18n.toggle();
  // Redraw the lists in the new language, keeping what was typed or
  // uploaded.
  if (!$('v-developer').hidden) return developer.redraw();
  if (!$('v-review').hidden) return review.open(true);
  if (['v-tenants', 'v-tenant', 'v-store', 'v-plugin'].some((v) => !$(v).hidden)) route();
});

// Links marked data-nav change the page without loading it again.
document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-nav]');
  if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  ev.preventDefault();
  go(a.getAttribute('href'));
});

whenUnauthenticated((err) => {
  loginPage(false);
  $('login-error').textContent = t('sessionEnded') + ' (' + err.message + ')';
});
window.addEventListener('popstate', route);
i18n.apply();
route();
