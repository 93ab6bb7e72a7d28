// Small DOM helpers: elements are built, never parsed from strings, so no
// value from the API can become markup.

/** h('a', {href: '#/'}, 'text', child…); attributes starting with "on" are listeners. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) add(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let uid = 0;
/** A labelled input: field('Email', {type: 'email', name: 'email'}). */
export function field(label, attrs = {}, hint) {
  const id = attrs.id || 'f' + (++uid);
  const hintId = hint ? id + '-hint' : undefined;
  const input = attrs.options
    ? h('select', { id, name: attrs.name, 'aria-describedby': hintId },
        attrs.options.map(o => h('option', { value: o.value ?? o, selected: (o.value ?? o) === attrs.value }, o.label ?? o)))
    : h('input', { id, 'aria-describedby': hintId, ...attrs });
  return h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint && h('p', { id: hintId, class: 'muted small' }, hint));
}

/** A table from rows; cols: [{label, get(row) → node|text, num}]. */
export function table(caption, cols, rows, empty = 'Nothing yet.', { stack = false } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  // stack: at phone width each row becomes a labelled card (style.css), so
  // a last column of buttons is never scrolled out of sight.
  // Explicit roles: a table laid out as blocks keeps its semantics.
  const role = r => stack ? r : undefined;
  return h('div', { class: 'table-wrap' }, h('table', { class: stack ? 'stack' : undefined, role: role('table') },
    h('caption', { class: 'vh' }, caption),
    h('thead', {}, h('tr', { role: role('row') }, cols.map(c => h('th', { scope: 'col', class: cls(c), role: role('columnheader') }, c.label)))),
    h('tbody', {}, rows.map(r => h('tr', { role: role('row') }, cols.map(c => h('td', { class: cls(c), 'data-label': c.label, role: role('cell') }, c.get(r))))))));
}

function cls(c) {
  return [c.num && 'num', c.nowrap && 'nowrap'].filter(Boolean).join(' ') || undefined;
}

/** Micro-dollars as dollars, exactly (integer arithmetic): 1234567 → "$1.234567" trimmed to ≥2 decimals. */
export function money(micros) {
  if (micros === undefined || micros === null) return '—';
  const n = Number(micros);
  const sign = n < 0 ? '-' : '';
  const a = Math.abs(n);
  const dollars = Math.floor(a / 1e6);
  let frac = String(a % 1e6).padStart(6, '0').replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${sign}$${dollars.toLocaleString('en-US')}.${frac}`;
}

export const num = n => (n === undefined || n === null) ? '—' : Number(n).toLocaleString('en-US');

/** Unix seconds or an RFC 3339 string, as a short UTC date-time. */
export function when(t) {
  if (t === undefined || t === null || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

export function toast(msg) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 2500);
}

/** An error box with the API's message. */
export function errorBox(e) {
  return h('div', { class: 'error', role: 'alert' }, e.message || String(e));
}

/** What a page shows when the deployment lacks the API behind it. */
export function unavailable(what, e) {
  const why = e && e.status === 503 ? (e.message || 'It is not configured.') : 'This deployment does not serve it yet.';
  return h('div', { class: 'notice', 'data-unavailable': '' }, h('strong', {}, `${what}: not available on this deployment. `), why);
}

/** A secret shown once, with a copy button. */
export function secretBox(label, value) {
  const code = h('code', { 'data-secret': '' }, value);
  return h('div', { class: 'secret', role: 'region', 'aria-label': label },
    h('span', {}, h('strong', {}, label), h('br'), h('span', { class: 'small' }, 'Copy it now: it is shown once.')),
    code,
    h('button', { type: 'button', class: 'secondary', onclick: async () => {
      try { await navigator.clipboard.writeText(value); toast('Copied'); }
      catch { const r = document.createRange(); r.selectNodeContents(code); getSelection().removeAllRanges(); getSelection().addRange(r); toast('Selected: press Ctrl+C'); }
    } }, 'Copy'));
}

/** Disables a form's submit button while fn runs; shows its error in the form. */
export async function busy(form, fn) {
  const btn = form.querySelector('button[type="submit"]');
  form.querySelector('.error')?.remove();
  if (btn) btn.disabled = true;
  try { await fn(); } catch (e) { form.append(errorBox(e)); } finally { if (btn) btn.disabled = false; }
}
