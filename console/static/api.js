// The console's only way to the platform: the functions' public APIs, at the
// bases config.json names (see console.Config), with the caller's session
// token or API key as the bearer.

let cfg = { auth_base: '/auth', api_base: '', billing_base: '', usage_base: '' };

/** Loads config.json beside index.html; defaults fit `sluice dev`. */
export async function loadConfig() {
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    if (r.ok) cfg = { ...cfg, ...(await r.json()) };
  } catch { /* keep the defaults */ }
  return cfg;
}

const bases = {
  auth: () => cfg.auth_base,
  api: () => cfg.api_base,
  billing: () => cfg.billing_base || cfg.api_base,
  usage: () => cfg.usage_base || cfg.api_base,
};

/** The OpenAI base URL of this deployment, for the quick start. */
export function openaiBase() {
  return new URL((cfg.api_base || '') + '/v1', location.href).href;
}

const KEY = 'sluice.session';

/** The stored credential: {access_token, refresh_token?, kind: 'session'|'key'}. */
export function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
}
export function setSession(s) {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s)); else sessionStorage.removeItem(KEY);
}

/** An API error in the OpenAI shape, with the HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status; this.code = e.code || ''; this.param = e.param || ''; this.type = e.type || '';
  }
  /** The route or feature is not on this deployment (not built, or not configured). */
  get unavailable() { return this.status === 404 || this.status === 501 || this.status === 503 || this.status === 0; }
}

let refreshing = null;

async function refresh() {
  const s = session();
  if (!s || !s.refresh_token) return false;
  refreshing ||= (async () => {
    const r = await fetch(bases.auth() + '/v1/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: s.refresh_token }),
    });
    if (!r.ok) return false;
    const t = await r.json();
    setSession({ ...s, access_token: t.access_token, refresh_token: t.refresh_token || s.refresh_token });
    return true;
  })().finally(() => { refreshing = null; });
  return refreshing;
}

/** Calls fn's API: api('GET', 'auth', '/v1/me'). Returns the JSON body (null for 204). */
export async function api(method, fn, path, body, { anonymous = false, retried = false } = {}) {
  const headers = {};
  const s = session();
  if (!anonymous && s) headers.Authorization = 'Bearer ' + s.access_token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(bases[fn]() + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: { message: 'The server could not be reached: ' + e.message } });
  }
  if (r.status === 401 && !anonymous && !retried && s && s.kind === 'session' && await refresh()) {
    return api(method, fn, path, body, { retried: true });
  }
  if (r.status === 204) return null;
  let data = null;
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    if (r.status === 401 && !anonymous) { setSession(null); dispatchEvent(new Event('sluice:signed-out')); }
    throw new ApiError(r.status, data);
  }
  return data;
}
