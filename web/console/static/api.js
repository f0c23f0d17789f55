// Calls to the control plane's Connect API on this origin: POST
// /<package>.<Service>/<Method> with the message as JSON (protojson),
// and the session token, kept in sessionStorage (gone when the tab
// closes), as the bearer.
import { t } from './i18n.js';

export const session = {
  get token() { return sessionStorage.getItem('session'); },
  get email() { return sessionStorage.getItem('email') || ''; },
  set(token, email) { sessionStorage.setItem('session', token); sessionStorage.setItem('email', email); },
  clear() { sessionStorage.removeItem('session'); sessionStorage.removeItem('email'); },
};

// APIError is a Connect error: code (e.g. invalid_argument) and the
// server's message.
class APIError extends Error {
  constructor(code, message) { super(message || code); this.code = code; }
}

// onUnauthenticated is called when the server refuses the session.
let onUnauthenticated = () => {};
export function whenUnauthenticated(f) { onUnauthenticated = f; }

// call invokes service's method (service as 'tenants.v1.TenantsService')
// with msg and returns the response message. how.anonymous sends it
// without the session (public procedures, which an expired session must
// not spoil); how.quiet leaves a refused session to the page's own calls
// (a call of the header's, made on any page).
async function call(service, method, msg = {}, how = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (session.token && !how.anonymous) headers.Authorization = 'Bearer ' + session.token;
  let resp;
  try {
    resp = await fetch(`/mairust.${service}/${method}`, { method: 'POST', headers, body: JSON.stringify(msg) });
  } catch (e) {
    throw new APIError('unavailable', t('unreachable', e.message));
  }
  let body = {};
  try { body = await resp.json(); } catch { /* not JSON: a proxy's page */ }
  if (resp.ok) return body;
  // Without a Connect error, 404 is an unknown procedure (Connect's code
  // for it is unimplemented).
  const err = new APIError(body.code || (resp.status === 404 ? 'unimplemented' : 'unknown'), body.message || `HTTP ${resp.status}`);
  if (err.code === 'unauthenticated' && session.token && !how.quiet) refused(err);
  throw err;
}

function refused(err) {
  session.clear();
  onUnauthenticated(err);
}

export const accounts = (method, msg) => call('accounts.v1.AccountsService', method, msg);
export const tenants = (method, msg) => call('tenants.v1.TenantsService', method, msg);
export const agents = (method, msg) => call('agents.v1.AgentsService', method, msg);
export const billing = (method, msg) => call('billing.v1.BillingService', method, msg);
export const marketplace = (method, msg, how) => call('marketplace.v1.MarketplaceService', method, msg, how);
// storefront calls the marketplace's public procedures (ListPlugins,
// GetPlugin), signed in or not.
export const storefront = (method, msg) => call('marketplace.v1.MarketplaceService', method, msg, { anonymous: true });

// upload submits a plugin package (a File) to the marketplace: POST
// /marketplace/upload with the session as the bearer and the file as the
// body. It returns the answer, {plugin_id, version, state, findings,
// warnings}, and throws the server's {error}.
export async function upload(file) {
  const headers = { 'Content-Type': 'application/octet-stream' };
  if (session.token) headers.Authorization = 'Bearer ' + session.token;
  let resp;
  try {
    resp = await fetch('/marketplace/upload', { method: 'POST', headers, body: file });
  } catch (e) {
    throw new APIError('unavailable', t('unreachable', e.message));
  }
  let body = {};
  try { body = await resp.json(); } catch { /* not JSON: a proxy's page */ }
  if (resp.ok) return body;
  const err = new APIError(resp.status === 401 ? 'unauthenticated' : 'unknown', body.error || `HTTP ${resp.status}`);
  if (err.code === 'unauthenticated' && session.token) refused(err);
  throw err;
}
