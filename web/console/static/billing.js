// The tenant page's Billing card: the plan and its limits, a banner when
// a payment failed or outbound mail is held, the plans offered (Stripe
// Checkout to subscribe), Stripe's customer portal, and the usage by
// month. The card stays hidden when the control plane has no billing.
import { billing } from './api.js';
import { $, button, el, guard, row, when } from './dom.js';
import { lang, t } from './i18n.js';

let tenant = ''; // whose card is shown, for the portal button

const num = (n) => Number(n || 0).toLocaleString(lang);
const limit = (n) => (Number(n || 0) ? num(n) : t('noLimit'));

// reset empties the card and hides it, and the banner, for a new page.
export function reset() {
  tenant = '';
  $('billing').hidden = true;
  $('billing-banner').hidden = true;
  $('billing-done').hidden = true;
  $('billing-error').textContent = '';
}

// load fills the card with tenant id's billing while shown() says that
// its page is still the one shown; failures are thrown for the caller to
// show in billing-error.
export async function load(id, shown) {
  tenant = id;
  let b;
  try {
    b = await billing('GetBilling', { tenantId: id });
  } catch (e) {
    if (e.code === 'unimplemented') return; // a control plane without the billing service
    if (shown()) $('billing').hidden = false;
    throw e;
  }
  if (!shown() || !b.enabled) return;
  const plan = b.plan || {};
  $('plan-name').textContent = plan.name || plan.id || '';
  $('plan-domains').textContent = limit(plan.domains);
  $('plan-users').textContent = limit(plan.mailUsers);
  $('plan-agents').textContent = limit(plan.agents);
  $('plan-messages').textContent = Number(plan.monthlyMessages || 0)
    ? t('ofLimit', num(b.messagesThisMonth), num(plan.monthlyMessages))
    : `${num(b.messagesThisMonth)} (${t('noLimit')})`;
  banner(b);
  $('plans').tBodies[0].replaceChildren(...(b.plans || []).map((p) => {
    const isCurrent = p.id === plan.id;
    const name = el('div', isCurrent ? `${p.name} (${t('currentPlan')})` : p.name);
    if (p.purchasable && !isCurrent && !b.subscribed) {
      name.append(button(t('upgrade'), 'billing-error', () => toStripe('CreateCheckoutSession', { tenantId: id, planId: p.id }),
        { className: 'upgrade', 'data-plan': p.id }));
    }
    return row([name, limit(p.domains), limit(p.mailUsers), limit(p.agents), limit(p.monthlyMessages)],
      { 'data-plan': p.id, className: isCurrent ? 'current' : '' });
  }));
  $('plans-note').hidden = !b.subscribed;
  if (new URLSearchParams(location.search).get('checkout') === 'done') {
    $('billing-done').hidden = false;
    history.replaceState(null, '', location.pathname); // not again on reload
  }
  $('billing').hidden = false;

  const months = (await billing('GetUsage', { tenantId: id, months: 6 })).months || [];
  if (!shown()) return;
  $('usage').tBodies[0].replaceChildren(...months.map((m) => row([(m.month || '').slice(0, 7), num(m.messages),
    Number(m.storageGbMonths || 0).toLocaleString(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 })])));
  $('usage-empty').hidden = months.length > 0;
}

// banner says what the billing state means for the tenant's mail.
function banner(b) {
  let text = '';
  if (b.state === 'BILLING_STATE_PAST_DUE') {
    text = b.restrictedAt ? t('pastDue', when(b.restrictedAt, lang)) : t('pastDueSoon');
  } else if (b.state === 'BILLING_STATE_RESTRICTED') {
    text = t('restricted');
  } else if (b.holdReason) {
    text = t('held', b.holdReason);
  }
  $('billing-banner-text').textContent = text;
  $('billing-banner').hidden = !text;
}

// toStripe goes to the Stripe page (Checkout, the portal) whose URL the
// method answers.
async function toStripe(method, msg) {
  const { url } = await billing(method, msg);
  if (!url) throw new Error(t('noStripeURL'));
  location.href = url;
}

$('portal').addEventListener('click', (ev) =>
  guard('billing-error', ev.target, () => toStripe('CreatePortalSession', { tenantId: tenant })));
$('billing-go').addEventListener('click', () => $('billing').scrollIntoView());
