// The console's router and pages. Hash routes (#/keys) so the files can be
// served by any static server with no rewrite rules.
import { api, loadConfig, session, setSession, ApiError, openaiBase } from './api.js';
import { h, field, table, money, num, when, toast, errorBox, unavailable, secretBox, busy } from './ui.js';
import { barChart } from './chart.js';

const main = document.getElementById('main');
let me = null; // GET /auth/v1/me of the signed-in principal

const isAdmin = () => me && (me.permissions.includes('*') || me.permissions.includes('user:admin'));

const routes = [
  [/^\/login$/, loginPage, { public: true }],
  [/^\/signup$/, signupPage, { public: true }],
  [/^\/keys$/, keysPage],
  [/^\/usage$/, usagePage],
  [/^\/billing$/, billingPage],
  [/^\/models$/, modelsPage],
  [/^\/quickstart$/, quickstartPage],
  [/^\/account$/, accountPage],
  [/^\/admin\/users$/, adminUsersPage, { admin: true }],
  [/^\/admin\/users\/([^/]+)$/, adminUserPage, { admin: true }],
  [/^\/admin\/audit$/, adminAuditPage, { admin: true }],
  [/^\/admin\/status$/, adminStatusPage, { admin: true }],
  [/^\/admin\/revenue$/, adminRevenuePage, { admin: true }],
];

function go(path) { location.hash = '#' + path; }

async function render() {
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(query || '');
  if (!session()) { me = null; } else if (!me) {
    try { me = await api('GET', 'auth', '/v1/me'); } catch { me = null; setSession(null); }
  }
  const match = routes.map(([re, fn, o]) => [path.match(re), fn, o || {}]).find(([m]) => m);
  if (!match) return go(me ? '/keys' : '/login');
  const [m, fn, opts] = match;
  if (!opts.public && !me) return go('/login');
  if (opts.public && me) return go('/keys');
  if (opts.admin && !isAdmin()) return go('/keys');
  updateNav(path);
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const page = await fn(params, ...m.slice(1));
    main.replaceChildren(...[].concat(page).filter(Boolean));
  } catch (e) {
    main.replaceChildren(h('h1', {}, 'Something went wrong'), errorBox(e));
  }
  const h1 = main.querySelector('h1');
  if (h1) document.title = h1.textContent + ' · Sluice console';
  if (render.moved) main.focus(); // move focus for keyboard and screen-reader users
  render.moved = true;
}

function updateNav(path) {
  const nav = document.getElementById('nav');
  const toggle = document.querySelector('.menu-toggle');
  nav.hidden = !me; toggle.hidden = !me;
  nav.classList.add('closed'); toggle.setAttribute('aria-expanded', 'false');
  nav.querySelector('.nav-admin').hidden = !isAdmin();
  document.getElementById('who').textContent = me ? `${me.email || me.user_id} · ${me.role} · ${me.tier}` : '';
  for (const a of nav.querySelectorAll('a')) {
    const target = a.getAttribute('href').slice(1);
    if (path === target || path.startsWith(target + '/')) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

// ---- sign-in -------------------------------------------------------------

function loginPage(params) {
  const totp = field('Authentication code', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6 },
    'The 6-digit code from your authenticator app.');
  const recovery = field('Or a recovery code', { name: 'recovery', autocomplete: 'off' });
  const mfa = h('div', { hidden: true }, totp, recovery);
  const form = h('form', { 'aria-label': 'Log in', onsubmit: e => {
    e.preventDefault();
    busy(form, async () => {
      const f = new FormData(form);
      const body = { email: f.get('email'), password: f.get('password') };
      if (f.get('totp')) body.totp_code = f.get('totp');
      if (f.get('recovery')) body.recovery_code = f.get('recovery');
      try {
        const t = await api('POST', 'auth', '/v1/login', body, { anonymous: true });
        await signedIn({ kind: 'session', access_token: t.access_token, refresh_token: t.refresh_token });
      } catch (err) {
        if (err instanceof ApiError && err.code === 'mfa_required' && mfa.hidden) {
          mfa.hidden = false; mfa.querySelector('input').focus();
          throw new Error('Enter the code from your authenticator app.');
        }
        throw err;
      }
    });
  } },
    field('Email', { type: 'email', name: 'email', autocomplete: 'username', required: true }),
    field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true }),
    mfa,
    h('button', { type: 'submit' }, 'Log in'));
  const keyForm = h('form', { 'aria-label': 'Use an API key', onsubmit: e => {
    e.preventDefault();
    busy(keyForm, () => signedIn({ kind: 'key', access_token: new FormData(keyForm).get('key').trim() }));
  } },
    field('API key', { type: 'password', name: 'key', autocomplete: 'off', required: true },
      'For operators: `make run` writes an admin key to .sluice/admin.key.'),
    h('button', { type: 'submit', class: 'secondary' }, 'Use key'));
  return h('section', { class: 'card narrow' }, h('h1', {}, 'Log in to Sluice'),
    params.get('signed_up') && h('p', { role: 'status' }, 'Account created. Log in to continue.'),
    form,
    h('p', {}, 'New here? ', h('a', { href: '#/signup' }, 'Create an account')),
    h('details', {}, h('summary', {}, 'Sign in with an API key'), keyForm));
}

async function signedIn(s) {
  setSession(s);
  try { me = await api('GET', 'auth', '/v1/me'); } catch (e) { setSession(null); me = null; throw e; }
  go('/keys');
}

function signupPage() {
  const form = h('form', { 'aria-label': 'Sign up', onsubmit: e => {
    e.preventDefault();
    busy(form, async () => {
      const f = new FormData(form);
      if (f.get('password') !== f.get('password2')) throw new Error('The passwords do not match.');
      await api('POST', 'auth', '/v1/signup', { email: f.get('email'), password: f.get('password') }, { anonymous: true });
      const t = await api('POST', 'auth', '/v1/login', { email: f.get('email'), password: f.get('password') }, { anonymous: true });
      await signedIn({ kind: 'session', access_token: t.access_token, refresh_token: t.refresh_token });
    });
  } },
    field('Email', { type: 'email', name: 'email', autocomplete: 'email', required: true }),
    field('Password', { type: 'password', name: 'password', autocomplete: 'new-password', required: true, minlength: 8 }, 'At least 8 characters.'),
    field('Repeat password', { type: 'password', name: 'password2', autocomplete: 'new-password', required: true }),
    h('button', { type: 'submit' }, 'Create account'));
  return h('section', { class: 'card narrow' }, h('h1', {}, 'Create your Sluice account'), form,
    h('p', {}, 'Have an account? ', h('a', { href: '#/login' }, 'Log in')));
}

// ---- API keys ------------------------------------------------------------

async function keysPage() {
  const list = h('div', {});
  const shown = h('div', { 'aria-live': 'polite' });
  const reveal = (label, k) => { shown.replaceChildren(secretBox(label, k.key)); shown.querySelector('button').focus(); };
  const load = async () => {
    const { data } = await api('GET', 'auth', '/v1/keys');
    list.replaceChildren(keyTable(data, {
      rotate: async k => { reveal(`New key for “${k.name || k.prefix}”`, await api('POST', 'auth', `/v1/keys/${k.id}/rotate`, {})); await load(); toast('Key rotated'); },
      revoke: async k => { await api('DELETE', 'auth', `/v1/keys/${k.id}`); await load(); toast('Key revoked'); },
      rename: async (k, name) => { await api('PATCH', 'auth', `/v1/keys/${k.id}`, { name }); await load(); toast('Key renamed'); },
    }));
  };
  const form = h('form', { class: 'card', 'aria-label': 'Create an API key', onsubmit: e => {
    e.preventDefault();
    busy(form, async () => {
      const f = new FormData(form);
      const body = { name: f.get('name') };
      const days = Number(f.get('expires') || 0);
      if (days > 0) body.expires_at = new Date(Date.now() + days * 86400e3).toISOString();
      reveal(`Your new key “${body.name}”`, await api('POST', 'auth', '/v1/keys', body));
      form.reset();
      await load();
    });
  } },
    h('div', { class: 'row' },
      field('Key name', { name: 'name', required: true, maxlength: 100, placeholder: 'e.g. laptop' }),
      field('Expires', { name: 'expires', options: [{ value: '0', label: 'Never' }, { value: '7', label: 'In 7 days' }, { value: '30', label: 'In 30 days' }, { value: '90', label: 'In 90 days' }] }),
      h('button', { type: 'submit' }, 'Create key')));
  await load();
  return [h('h1', {}, 'API keys'),
    h('p', { class: 'muted' }, 'Keys call the OpenAI-compatible API at ', h('code', {}, openaiBase()), '. ', h('a', { href: '#/quickstart' }, 'Quick start')),
    form, shown, h('h2', {}, 'Your keys'), list];
}

function keyStatus(k) {
  const now = Date.now() / 1000;
  if (k.revoked_at) return h('span', { class: 'badge bad' }, 'revoked');
  if (k.expires_at && k.expires_at < now) return h('span', { class: 'badge bad' }, 'expired');
  if (k.expires_at) return h('span', { class: 'badge warn' }, 'expires ' + when(k.expires_at).slice(0, 10));
  return h('span', { class: 'badge ok' }, 'active');
}

function keyTable(keys, actions) {
  const live = k => !k.revoked_at && !(k.expires_at && k.expires_at < Date.now() / 1000);
  return table('API keys', [
    { label: 'Name', get: k => k.name || '—' },
    { label: 'Key', get: k => h('code', {}, k.prefix + '…') },
    { label: 'Status', get: keyStatus },
    { label: 'Created', get: k => when(k.created_at) },
    { label: 'Last used', get: k => when(k.last_used_at) },
    { label: 'Actions', get: k => live(k) ? h('div', { class: 'actions' },
      actions.rename && h('button', { type: 'button', class: 'secondary', 'aria-label': `Rename ${k.name || k.prefix}`, onclick: e => {
        const name = prompt(`New name for the key “${k.name || k.prefix}” (at most 100 characters):`, k.name || '');
        if (name !== null && name.trim() !== '' && name !== k.name) act(e, () => actions.rename(k, name.trim().slice(0, 100)));
      } }, 'Rename'),
      actions.rotate && h('button', { type: 'button', class: 'secondary', 'aria-label': `Rotate ${k.name || k.prefix}`, onclick: e => act(e, () => actions.rotate(k)) }, 'Rotate'),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name || k.prefix}`, onclick: e => {
        if (confirm(`Revoke the key “${k.name || k.prefix}”? Requests with it fail at once.`)) act(e, () => actions.revoke(k));
      } }, 'Revoke')) : '' },
  ], keys, 'No keys yet: create one above.', { stack: true });
}

async function act(e, fn) {
  const b = e.currentTarget; b.disabled = true;
  try { await fn(); } catch (err) { b.disabled = false; b.after(errorBox(err)); }
}

// ---- usage ---------------------------------------------------------------

const day = d => d.toISOString().slice(0, 10);

/** Usage by day and model from the contract's group_by=day; null when the
 *  deployment serves only the older per-request rows (then by model only). */
async function fetchUsage(start, end, userID) {
  const q = new URLSearchParams({ start, end, group_by: 'day' });
  if (userID) q.set('user_id', userID);
  const { data, folded_at: foldedAt } = await api('GET', 'usage', '/v1/usage?' + q);
  if (data.length && !('date' in data[0])) return { daily: false, rows: data };
  return { daily: true, rows: data, foldedAt };
}

async function prices() {
  try {
    const { data } = await api('GET', 'api', '/v1/models');
    return Object.fromEntries(data.map(m => [m.id, m.pricing]));
  } catch { return {}; }
}

async function usageView(userID) {
  const end = new Date(), start = new Date(Date.now() - 29 * 86400e3);
  let u;
  try { u = await fetchUsage(day(start), day(end), userID); } catch (e) {
    if (e instanceof ApiError && e.unavailable) return [unavailable('Usage', e)];
    throw e;
  }
  const out = [];
  let byModel;
  if (u.daily) {
    // The rollups lag the requests by up to one scheduled run: say so, and
    // as of when, rather than show a recent request's absence as "no usage".
    if (u.foldedAt !== undefined) {
      const when = u.foldedAt ? new Date(u.foldedAt) : null;
      out.push(h('p', { class: 'notice', role: 'status' }, when
        ? `Counted up to ${when.toISOString().slice(0, 16).replace('T', ' ')} UTC, when usage was last totalled; newer requests appear after the next run (about a minute).`
        : 'Usage has not been totalled yet; requests appear here after the first run (about a minute).'));
    }
    const days = [];
    for (let t = start.getTime(); t <= end.getTime(); t += 86400e3) days.push(day(new Date(t)));
    const models = [...new Set(u.rows.map(r => r.model))].sort();
    const grid = key => models.map(m => ({ name: m, values: days.map(d => u.rows.filter(r => r.date === d && r.model === m).reduce((a, r) => a + key(r), 0)) }));
    out.push(h('div', { class: 'grid charts' },
      barChart('Tokens by day', days, grid(r => r.prompt_tokens + r.completion_tokens), num),
      barChart('Requests by day', days, grid(r => r.requests), num),
      barChart('Cost by day', days, grid(r => r.cost_micros), money, 10000)));
    byModel = models.map(m => u.rows.filter(r => r.model === m).reduce((a, r) => ({ model: m,
      requests: a.requests + r.requests, prompt: a.prompt + r.prompt_tokens, completion: a.completion + r.completion_tokens,
      cost: a.cost + r.cost_micros, cached: a.cached + (r.cached_tokens || 0), saved: a.saved + (r.cached_saved_micros || 0) }),
      { requests: 0, prompt: 0, completion: 0, cost: 0, cached: 0, saved: 0 }));
    // The engines' prefix caches: prompt tokens served from cache, their
    // share of all prompt tokens, and what their price saved.
    const all = byModel.reduce((a, m) => ({ prompt: a.prompt + m.prompt, cached: a.cached + m.cached, saved: a.saved + m.saved }),
      { prompt: 0, cached: 0, saved: 0 });
    out.push(h('div', { class: 'grid', 'aria-label': 'Prompt caching' },
      h('div', { class: 'card' }, h('h3', {}, 'Cached prompt tokens'), h('p', { class: 'stat' }, num(all.cached))),
      h('div', { class: 'card' }, h('h3', {}, 'Cache hit rate'), h('p', { class: 'stat' }, hitRate(all.cached, all.prompt))),
      h('div', { class: 'card' }, h('h3', {}, 'Saved by caching'), h('p', { class: 'stat' }, money(all.saved)))));
  } else {
    if (userID) return [unavailable('Another user’s usage', null)];
    // Older deployments: one row per request, no dates or costs; sum by
    // model and price the tokens with the published per-token prices.
    const p = await prices();
    const agg = {};
    for (const r of u.rows) {
      const a = agg[r.model] ||= { model: r.model, requests: 0, prompt: 0, completion: 0, cost: 0 };
      a.requests++; a.prompt += r.prompt_tokens; a.completion += r.completion_tokens;
      const pr = p[r.model];
      if (pr) a.cost += r.prompt_tokens * pr.input_micros_per_token + r.completion_tokens * pr.output_micros_per_token;
    }
    byModel = Object.values(agg).sort((a, b) => a.model.localeCompare(b.model));
    out.push(h('p', { class: 'notice' }, 'Usage by day is not available on this deployment; these are all-time totals by model, priced at list prices.'));
    if (byModel.length) out.push(h('div', { class: 'grid charts' },
      barChart('Tokens by model', byModel.map(m => m.model), [{ name: 'prompt', values: byModel.map(m => m.prompt) }, { name: 'completion', values: byModel.map(m => m.completion) }], num),
      barChart('Requests by model', byModel.map(m => m.model), [{ name: 'requests', values: byModel.map(m => m.requests) }], num)));
  }
  out.push(h('h2', {}, 'By model'), table('Usage by model', [
    { label: 'Model', get: r => r.model },
    { label: 'Requests', num: true, get: r => num(r.requests) },
    { label: 'Prompt tokens', num: true, get: r => num(r.prompt) },
    { label: 'Completion tokens', num: true, get: r => num(r.completion) },
    { label: 'Cached tokens', num: true, get: r => num(r.cached || 0) },
    { label: 'Cache hit rate', num: true, get: r => hitRate(r.cached || 0, r.prompt) },
    { label: 'Saved by caching', num: true, get: r => money(r.saved || 0) },
    { label: 'Cost', num: true, get: r => money(r.cost) },
  ], byModel, 'No usage in this period.'));
  if (u.daily) {
    // By API key (group_by=key): the raw rows, so it is current, not as of
    // the last rollup run.
    const q = new URLSearchParams({ start: day(start), end: day(end), group_by: 'key' });
    if (userID) q.set('user_id', userID);
    try {
      const { data } = await api('GET', 'usage', '/v1/usage?' + q);
      out.push(h('h2', {}, 'By key'), table('Usage by key', [
        { label: 'Key', get: r => r.key_id ? `${r.name || 'unnamed'} (${r.prefix}…)` : 'console session' },
        { label: 'Requests', num: true, get: r => num(r.requests) },
        { label: 'Prompt tokens', num: true, get: r => num(r.prompt_tokens) },
        { label: 'Completion tokens', num: true, get: r => num(r.completion_tokens) },
        { label: 'Cached tokens', num: true, get: r => num(r.cached_tokens) },
        { label: 'Cache hit rate', num: true, get: r => hitRate(r.cached_tokens, r.prompt_tokens) },
        { label: 'Saved by caching', num: true, get: r => money(r.cached_saved_micros) },
        { label: 'Cost', num: true, get: r => money(r.cost_micros) },
      ], data, 'No usage in this period.'));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e; // an older deployment without group_by=key: the table is left out
    }
  }
  return out;
}

/** Cached over prompt tokens as a percentage with one decimal. */
function hitRate(cached, prompt) {
  return prompt > 0 ? `${(100 * cached / prompt).toFixed(1)} %` : '—';
}

async function usagePage() {
  return [h('h1', {}, 'Usage'), h('p', { class: 'muted' }, 'The last 30 days, UTC.'), ...await usageView()];
}

// ---- billing -------------------------------------------------------------

async function optional(what, fn) {
  try { return await fn(); } catch (e) {
    if (e instanceof ApiError && e.unavailable) return unavailable(what, e);
    return errorBox(e);
  }
}

function balanceCards(b) {
  const it = b.included_tokens || {};
  const unlimited = it.limit === -1;
  return h('div', { class: 'grid' },
    h('div', { class: 'card' }, h('h2', {}, 'Plan'), h('p', { class: 'stat', 'data-tier': b.tier }, b.tier),
      b.period && h('p', { class: 'muted small' }, 'Period ', b.period.label, b.period.end ? ` until ${when(b.period.end)}` : '')),
    h('div', { class: 'card' }, h('h2', {}, 'Included tokens left'),
      h('p', { class: 'stat' }, unlimited ? 'Unlimited' : num(it.remaining)),
      !unlimited && h('progress', { max: Math.max(it.limit, 1), value: it.remaining, 'aria-label': 'Included tokens left' }),
      !unlimited && h('p', { class: 'muted small' }, `${num(it.used)} of ${num(it.limit)} used this period`)),
    h('div', { class: 'card' }, h('h2', {}, 'Credit balance'), h('p', { class: 'stat', 'data-credit': b.credit_micros }, money(b.credit_micros)),
      h('p', { class: 'muted small' }, 'Prepaid credits, used after included tokens.')),
    h('div', { class: 'card' }, h('h2', {}, 'Postpaid this period'), h('p', { class: 'stat' }, money(b.postpaid_micros)),
      h('p', { class: 'muted small' }, 'Cap ', money(b.overage_cap_micros))),
    (b.debt_micros > 0 || b.funds_suspended) && h('div', { class: 'card', 'data-debt': b.debt_micros || 0 }, h('h2', {}, 'Debt'),
      h('p', { class: 'stat' }, money(b.debt_micros || 0)),
      h('p', { class: 'muted small' }, b.funds_suspended
        ? `Credit and postpaid use are suspended while ${b.open_disputes} payment dispute(s) are open.`
        : 'Usage charged past your funds; new requests need credit first.')));
}

/** u if it is an http(s) URL, else '': a link from an API never runs script. */
function webURL(u) {
  try { return ['https:', 'http:'].includes(new URL(u).protocol) ? u : ''; } catch { return ''; }
}

async function checkout(body, btn) {
  btn.disabled = true;
  try {
    const back = location.href.split('#')[0] + '#/billing';
    const s = await api('POST', 'billing', '/v1/billing/checkout', { ...body, success_url: back + '?paid=1', cancel_url: back });
    location.assign(webURL(s.url) || '#/billing');
  } catch (e) {
    btn.disabled = false;
    btn.closest('.card').append(e instanceof ApiError && e.unavailable ? unavailable('Checkout', e) : errorBox(e));
  }
}

async function billingPage(params) {
  const balance = await optional('Balance', async () => balanceCards(await api('GET', 'usage', '/v1/billing/balance')));
  const plans = await optional('Plans and credit packs', async () => {
    const { data } = await api('GET', 'billing', '/v1/billing/plans', undefined, { anonymous: true });
    const subs = data.filter(p => p.kind === 'subscription'), packs = data.filter(p => p.kind === 'credits');
    return h('div', { class: 'grid' },
      subs.map(p => h('div', { class: 'card' }, h('h3', {}, p.tier), h('p', { class: 'stat' }, money(p.monthly_cost_micros), h('span', { class: 'small muted' }, ' / month')),
        h('p', { class: 'small' }, p.included_tokens === -1 ? 'Unlimited included tokens' : `${num(p.included_tokens)} tokens included`),
        me.tier === p.tier ? h('p', {}, h('span', { class: 'badge ok' }, 'your plan'))
          : h('button', { type: 'button', onclick: e => checkout({ kind: 'subscription', tier: p.tier }, e.currentTarget) }, `Upgrade to ${p.tier}`))),
      packs.map(p => h('div', { class: 'card' }, h('h3', {}, 'Credits'), h('p', { class: 'stat' }, money(p.amount_micros)),
        h('button', { type: 'button', class: 'secondary', onclick: e => checkout({ kind: 'credits', pack: p.pack }, e.currentTarget) }, `Buy ${money(p.amount_micros)} of credits`))));
  });
  const invoices = await optional('Invoices', async () => {
    const { data } = await api('GET', 'usage', '/v1/billing/invoices');
    return table('Invoices', [
      { label: 'Period', get: s => s.period },
      { label: 'Plan', get: s => s.tier },
      { label: 'Requests', num: true, get: s => num(s.requests) },
      { label: 'Tokens', num: true, get: s => num(s.prompt_tokens + s.completion_tokens) },
      { label: 'Cached tokens', num: true, get: s => `${num(s.cached_tokens || 0)} (${hitRate(s.cached_tokens || 0, s.prompt_tokens)})` },
      { label: 'Saved by caching', num: true, get: s => money(s.cached_saved_micros || 0) },
      { label: 'Credits used', num: true, get: s => money(s.credits_used_micros) },
      { label: 'Overage', num: true, get: s => money(s.overage_micros) },
      { label: 'Total due', num: true, get: s => money(s.total_due_micros) },
      { label: 'Stripe', get: s => (s.stripe_invoices || []).map(i => webURL(i.hosted_invoice_url)
        ? h('a', { href: i.hosted_invoice_url, rel: 'noopener' }, `${i.status} ${money(i.amount_paid_micros)}`) : i.status) },
    ], data, 'No statements yet.');
  });
  const portal = h('button', { type: 'button', class: 'secondary', onclick: async e => {
    const b = e.currentTarget; b.disabled = true;
    try { location.assign(webURL((await api('POST', 'billing', '/v1/billing/portal', {})).url) || '#/billing'); }
    catch (err) { b.disabled = false; b.after(err instanceof ApiError && err.unavailable ? unavailable('Billing portal', err) : errorBox(err)); }
  } }, 'Manage payment details');
  return [h('h1', {}, 'Billing'),
    params.get('paid') && h('p', { class: 'notice', role: 'status' }, 'Thank you: your payment is being confirmed and shows here within a minute.'),
    balance, h('h2', {}, 'Upgrade or buy credits'), plans, h('p', {}, portal), h('h2', {}, 'Invoices'), invoices];
}

// ---- models and quick start --------------------------------------------

async function modelsPage() {
  const { data } = await api('GET', 'api', '/v1/models');
  const per1M = m => m === undefined ? '—' : money(m * 1e6); // micro-dollars per token → per million tokens
  return [h('h1', {}, 'Models'), h('p', { class: 'muted' }, 'Prices per million tokens.'), table('Models', [
    { label: 'Model', get: m => h('code', {}, m.id) },
    { label: 'Context', num: true, get: m => num(m.max_model_len) },
    { label: 'Input', num: true, get: m => per1M(m.pricing?.input_micros_per_token) },
    // A prompt token served from the engine's prefix cache: its own price
    // where one is set, else the input price.
    { label: 'Cached input', num: true, get: m => per1M(m.pricing?.cached_input_micros_per_token ?? m.pricing?.input_micros_per_token) },
    { label: 'Output', num: true, get: m => per1M(m.pricing?.output_micros_per_token) },
  ], data, 'No models are available to you.')];
}

async function quickstartPage() {
  let model = 'MODEL';
  try { model = (await api('GET', 'api', '/v1/models')).data[0]?.id || model; } catch { /* keep the placeholder */ }
  const base = openaiBase();
  const block = (title, code) => [h('h2', {}, title), h('pre', { tabindex: 0 }, h('code', {}, code))];
  return [h('h1', {}, 'Quick start'),
    h('p', {}, 'Sluice speaks the OpenAI API: point an OpenAI SDK at ', h('code', {}, base), ' with a key from ', h('a', { href: '#/keys' }, 'API keys'), '.'),
    ...block('Shell', `export OPENAI_BASE_URL=${base}
export OPENAI_API_KEY=sk-sluice-…   # your key, from API keys`),
    ...block('Python (openai)', `import os
from openai import OpenAI

client = OpenAI(base_url="${base}", api_key=os.environ["OPENAI_API_KEY"])
r = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Hello"}],
)
print(r.choices[0].message.content)`),
    ...block('Node (openai)', `import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${base}", apiKey: process.env.OPENAI_API_KEY });
const r = await client.chat.completions.create({
  model: "${model}",
  messages: [{ role: "user", content: "Hello" }],
});
console.log(r.choices[0].message.content);`),
    ...block('curl', `curl ${base}/chat/completions \\
  -H "Authorization: Bearer $OPENAI_API_KEY" -H "Content-Type: application/json" \\
  -d '{"model":"${model}","messages":[{"role":"user","content":"Hello"}]}'`)];
}

// ---- account and MFA -----------------------------------------------------

function accountPage() {
  const area = h('div', {});
  const s = session();
  if (s.kind === 'key') {
    area.append(h('p', { class: 'muted' }, 'You are signed in with an API key; MFA belongs to password sessions.'));
  } else if (me.mfa_enrolled ?? me.mfa) {
    const form = h('form', { class: 'card', 'aria-label': 'Turn off MFA', onsubmit: e => {
      e.preventDefault();
      busy(form, async () => {
        const f = new FormData(form);
        await api('POST', 'auth', '/v1/me/mfa/totp/disable', { password: f.get('password'), totp_code: f.get('code') });
        toast('MFA turned off'); form.replaceWith(h('p', {}, 'MFA is off. Log in again to refresh your session.'));
      });
    } }, h('p', {}, h('span', { class: 'badge ok' }, 'MFA on'), ' This session passed a second factor.'),
      field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true }),
      field('Authentication code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true }),
      h('button', { type: 'submit', class: 'danger' }, 'Turn off MFA'));
    area.append(form);
  } else {
    const step2 = h('div', {});
    const form = h('form', { class: 'card', 'aria-label': 'Set up MFA', onsubmit: e => {
      e.preventDefault();
      busy(form, async () => {
        const t = await api('POST', 'auth', '/v1/me/mfa/totp', { password: new FormData(form).get('password') });
        form.hidden = true;
        const confirmForm = h('form', { 'aria-label': 'Confirm MFA', onsubmit: ev => {
          ev.preventDefault();
          busy(confirmForm, async () => {
            const r = await api('POST', 'auth', '/v1/me/mfa/totp/confirm', { totp_code: new FormData(confirmForm).get('code') });
            step2.replaceChildren(h('p', { role: 'status' }, h('span', { class: 'badge ok' }, 'MFA on'), ' Log out and in again with a code to use admin pages.'),
              secretBox('Recovery codes', r.recovery_codes.join('  ')));
          });
        } },
          field('Code from the app', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, pattern: '[0-9]{6}', maxlength: 6 }),
          h('button', { type: 'submit' }, 'Confirm'));
        step2.replaceChildren(h('div', { class: 'card' },
          h('p', {}, 'Scan this code with an authenticator app (or add the secret, or open the link on your phone), then enter the code it shows.'),
          h('p', {}, h('img', { src: t.qr_code, alt: 'QR code of the TOTP secret', width: 200, height: 200, 'data-totp-qr': '' })),
          h('p', {}, 'Secret: ', h('code', { 'data-totp-secret': '' }, t.secret)),
          h('p', {}, h('a', { href: t.otpauth_url }, 'Open in an authenticator app')),
          confirmForm));
        step2.querySelector('input').focus();
      });
    } }, h('p', {}, h('span', { class: 'badge warn' }, 'MFA off'), ' Protect your account with a TOTP authenticator app.',
      me.role === 'admin' ? ' Admin pages require it.' : ''),
      field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true }),
      h('button', { type: 'submit' }, 'Set up MFA'));
    area.append(form, step2);
  }
  return [h('h1', {}, 'Account'), h('div', { class: 'card' },
    h('p', {}, h('strong', {}, 'Email: '), me.email || '—'), h('p', {}, h('strong', {}, 'Role: '), me.role),
    h('p', {}, h('strong', {}, 'Plan: '), me.tier, ' · ', h('a', { href: '#/billing' }, 'Billing'))),
  h('h2', {}, 'Multi-factor authentication'), area];
}

// ---- admin ----------------------------------------------------------------

/** Admin calls answer mfa_required for a session without a second factor. */
function adminError(e) {
  if (e instanceof ApiError && e.code === 'mfa_required') {
    return h('div', { class: 'notice', role: 'alert' }, 'Admin pages need a login with multi-factor authentication. ',
      h('a', { href: '#/account' }, 'Set up MFA'), ', then log out and in again with a code.');
  }
  if (e instanceof ApiError && e.unavailable) return unavailable('This view', e);
  return errorBox(e);
}

const ROLES = ['user', 'developer', 'admin'];
const TIERS = ['free', 'pro', 'enterprise'];

async function adminUsersPage(params) {
  const q = params.get('q') || '';
  const results = h('div', {});
  const search = h('form', { role: 'search', class: 'row', onsubmit: e => {
    e.preventDefault(); go('/admin/users?q=' + encodeURIComponent(new FormData(search).get('q')));
  } }, field('Search by email', { type: 'search', name: 'q', value: q }), h('button', { type: 'submit' }, 'Search'));
  try {
    const { data } = await api('GET', 'auth', '/v1/admin/users?limit=200&q=' + encodeURIComponent(q));
    const patch = async (u, body, msg) => { await api('PATCH', 'auth', `/v1/admin/users/${u.id}`, body); toast(msg); render(); };
    const choose = (label, list, u, key) => {
      const id = `${key}-${u.id}`;
      const sel = h('select', { id, 'aria-label': `${label} of ${u.email}`, onchange: e => act(e, () => patch(u, { [key]: e.target.value }, `${label} changed`)) },
        [...new Set([...list, u[key]])].map(v => h('option', { value: v, selected: v === u[key] }, v)));
      return sel;
    };
    results.append(table('Users', [
      { label: 'Email', get: u => h('a', { href: `#/admin/users/${u.id}?email=${encodeURIComponent(u.email)}` }, u.email) },
      { label: 'Role', get: u => choose('Role', ROLES, u, 'role') },
      { label: 'Plan', get: u => choose('Plan', TIERS, u, 'tier') },
      { label: 'Status', get: u => u.disabled ? h('span', { class: 'badge bad' }, 'disabled') : h('span', { class: 'badge ok' }, 'active') },
      { label: 'Created', get: u => when(u.created_at) },
      { label: 'Actions', get: u => h('button', { type: 'button', class: u.disabled ? 'secondary' : 'danger', 'aria-label': `${u.disabled ? 'Enable' : 'Disable'} ${u.email}`,
        onclick: e => {
          if (u.disabled || confirm(`Disable ${u.email}? Their sessions and keys stop working at once.`)) act(e, () => patch(u, { disabled: !u.disabled }, u.disabled ? 'User enabled' : 'User disabled'));
        } }, u.disabled ? 'Enable' : 'Disable') },
    ], data, q ? 'No user matches.' : 'No users.'));
  } catch (e) { results.append(adminError(e)); }
  return [h('h1', {}, 'Users'), search, results];
}

async function adminUserPage(params, id) {
  const email = params.get('email') || id;
  const keys = h('div', {});
  const load = async () => {
    try {
      const { data } = await api('GET', 'auth', `/v1/admin/users/${id}/keys`);
      keys.replaceChildren(keyTable(data, {
        revoke: async k => { await api('DELETE', 'auth', `/v1/admin/keys/${k.id}`); toast('Key revoked'); await load(); },
        rename: async (k, name) => { await api('PATCH', 'auth', `/v1/admin/keys/${k.id}`, { name }); toast('Key renamed'); await load(); },
      }));
    } catch (e) { keys.replaceChildren(adminError(e)); }
  };
  await load();
  const balance = await optional('Balance', async () => balanceCards(await api('GET', 'usage', '/v1/billing/balance?user_id=' + encodeURIComponent(id))));
  return [h('p', {}, h('a', { href: '#/admin/users' }, '← Users')), h('h1', {}, email),
    h('h2', {}, 'Keys'), keys, h('h2', {}, 'Balance'), balance, h('h2', {}, 'Usage, last 30 days'), ...await usageView(id)];
}

/** A UUID cut to its first 8 characters (the whole in a tooltip); other text as is. */
function shortID(v) {
  if (!v) return '—';
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(v);
  return h('code', { class: 'small', title: uuid ? v : undefined }, uuid ? v.slice(0, 8) : v.slice(0, 40));
}

async function adminAuditPage() {
  try {
    const { data } = await api('GET', 'auth', '/v1/admin/audit?limit=200');
    return [h('h1', {}, 'Audit log'), table('Audit log', [
      { label: 'When', nowrap: true, get: e => when(e.at) },
      { label: 'Action', get: e => h('code', {}, e.action) },
      { label: 'Outcome', get: e => h('span', { class: 'badge ' + (e.outcome === 'ok' ? 'ok' : 'warn') }, e.outcome) },
      { label: 'Actor', get: e => shortID(e.actor_id) },
      { label: 'Target', get: e => shortID(e.target) },
      { label: 'From', get: e => e.remote },
      { label: 'Detail', get: e => e.detail && Object.keys(e.detail).length ? h('code', { class: 'small' }, JSON.stringify(e.detail).slice(0, 120)) : '' },
    ], data, 'The log is empty.')];
  } catch (e) { return [h('h1', {}, 'Audit log'), adminError(e)]; }
}

async function adminStatusPage() {
  let st;
  try { st = await api('GET', 'api', '/v1/admin/status'); } catch (e) { return [h('h1', {}, 'Status'), adminError(e)]; }
  return [h('h1', {}, 'Status'), h('p', { class: 'muted' }, 'Queue depth by priority and engine health, live. ',
    h('button', { type: 'button', class: 'link', onclick: () => render() }, 'Refresh')),
  ...st.models.map(m => h('section', { class: 'card', 'aria-label': m.model },
    h('h2', {}, h('code', {}, m.model), ' ', m.healthy_endpoints > 0
      ? h('span', { class: 'badge ok' }, `${m.healthy_endpoints} healthy engine${m.healthy_endpoints === 1 ? '' : 's'}`)
      : h('span', { class: 'badge bad' }, 'no healthy engine')),
    h('p', { class: 'small' }, `In flight ${num(m.in_flight)} of capacity ${num(m.capacity)}; queued `,
      h('strong', { 'data-depth': '' }, num(m.queues.reduce((a, q) => a + q.depth, 0)))),
    table(`Queues of ${m.model}`, [
      { label: 'Priority', get: q => q.priority },
      { label: 'Depth', num: true, get: q => num(q.depth) },
      { label: 'Running', num: true, get: q => num(q.pending) },
      { label: 'Oldest waiting', num: true, get: q => q.oldest_age_ms ? `${(q.oldest_age_ms / 1000).toFixed(1)} s` : '—' },
    ], m.queues, 'No queues.'),
    table(`Engines of ${m.model}`, [
      { label: 'Worker', get: r => r.worker },
      { label: 'Engine', get: r => h('code', { class: 'small' }, r.url) },
      { label: 'Health', get: r => r.healthy ? h('span', { class: 'badge ok' }, 'healthy') : h('span', { class: 'badge bad' }, 'down') },
      { label: 'Load', num: true, get: r => `${r.in_flight} / ${r.capacity}` },
    ], m.workers.flatMap(w => w.endpoints.map(e => ({ worker: w.worker, ...e }))), 'No worker reports this model.')))];
}

async function adminRevenuePage() {
  let data;
  try { ({ data } = await api('GET', 'usage', '/v1/admin/revenue?days=30')); } catch (e) { return [h('h1', {}, 'Revenue'), adminError(e)]; }
  const rows = [...data].sort((a, b) => a.date.localeCompare(b.date));
  const kinds = [['subscriptions_micros', 'subscriptions'], ['credits_purchased_micros', 'credits bought'], ['overage_micros', 'overage']];
  const total = rows.reduce((a, r) => a + kinds.reduce((b, [k]) => b + (r[k] || 0), 0), 0);
  return [h('h1', {}, 'Revenue'), h('p', {}, 'Last 30 days: ', h('strong', {}, money(total))),
    rows.length ? barChart('Revenue by day', rows.map(r => r.date), kinds.map(([k, name]) => ({ name, values: rows.map(r => r[k] || 0) })), money, 10000) : '',
    table('Revenue by day', [
      { label: 'Date', get: r => r.date },
      ...kinds.map(([k, name]) => ({ label: name[0].toUpperCase() + name.slice(1), num: true, get: r => money(r[k]) })),
      { label: 'Usage value', num: true, get: r => money(r.usage_micros) },
    ], rows.reverse(), 'No revenue yet.')];
}

// ---- start -----------------------------------------------------------------

document.getElementById('logout').addEventListener('click', async () => {
  const s = session();
  if (s?.kind === 'session') {
    try { await api('POST', 'auth', '/v1/logout', s.refresh_token ? { refresh_token: s.refresh_token } : {}); } catch { /* signed out locally anyway */ }
  }
  setSession(null); me = null; go('/login');
});
document.querySelector('.menu-toggle').addEventListener('click', e => {
  const nav = document.getElementById('nav');
  const open = nav.classList.toggle('closed') === false;
  e.currentTarget.setAttribute('aria-expanded', String(open));
});
addEventListener('sluice:signed-out', () => { me = null; go('/login'); });
addEventListener('hashchange', render);
await loadConfig();
render();
