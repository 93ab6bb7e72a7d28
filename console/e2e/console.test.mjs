// End-to-end test of the Sluice web console in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core). console/e2e_test.go starts
// the real stack and runs this with:
//   SLUICE_URL        the stack's base URL
//   ADMIN_EMAIL / ADMIN_PASSWORD   an admin account with a password, no MFA yet
//   MODEL             a served model
//   SCREENSHOTS       optional folder for PNGs of the main pages
// It exits non-zero on the first failed step and prints each step it passed.
import { chromium } from 'playwright-core';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.SLUICE_URL;
const model = process.env.MODEL;
const shots = process.env.SCREENSHOTS;
if (!base || !model) throw new Error('SLUICE_URL and MODEL are required');
if (shots) mkdirSync(shots, { recursive: true });

// Micro-dollars as the console writes them (ui.js money).
function money(micros) {
  const frac = String(micros % 1e6).padStart(6, '0').replace(/0+$/, '').padEnd(2, '0');
  return `$${Math.floor(micros / 1e6).toLocaleString('en-US')}.${frac}`;
}

const step = msg => console.log('ok -', msg);
function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }

// RFC 6238 TOTP (SHA-1, 30 s, 6 digits) from a base32 secret, for the MFA steps.
function totp(secret, offsetSteps = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map(b => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + offsetSteps));
  const mac = createHmac('sha1', key).update(counter).digest();
  const o = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0');
}

// The API called the way a user's program calls it: outside the browser.
async function chat(key, content = 'Hello from the console test') {
  const r = await fetch(base + '/v1/chat/completions', {
    method: 'POST', headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 8 }),
  });
  return { status: r.status, body: await r.json() };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const external = [];
let promptAnswer = '';
async function newPage(viewport = { width: 1280, height: 860 }) {
  const ctx = await browser.newContext({ viewport });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await ctx.newPage();
  // Confirmations are accepted; a prompt (rename) gets promptAnswer.
  page.on('dialog', d => d.type() === 'prompt' ? d.accept(promptAnswer) : d.accept());
  page.on('pageerror', e => { throw new Error('page error: ' + e.message); });
  page.on('request', r => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) external.push(r.url()); });
  page.setDefaultTimeout(30000); // a loaded CI machine runs the Go suite beside the browser
  return page;
}
async function shot(page, name) {
  if (!shots) return;
  await page.evaluate(() => document.getElementById('toast').classList.remove('show'));
  await page.waitForTimeout(250); // let the toast fade and the layout settle
  await page.screenshot({ path: join(shots, name + '.png'), fullPage: true });
}

try {
  // ---- a user signs up, makes a key, uses it, sees the usage, revokes it.
  const page = await newPage();
  const email = `user-${randomBytes(4).toString('hex')}@example.com`;
  const password = 'correct horse ' + randomBytes(4).toString('hex');
  const res = await page.goto(base + '/', { waitUntil: 'networkidle' });
  assert(new URL(page.url()).pathname === '/console/', 'GET / in a browser lands on the console, got ' + page.url());
  assert(res.ok(), 'console loads');
  await page.getByRole('heading', { name: 'Log in to Sluice' }).waitFor();
  await shot(page, 'login');
  await page.getByRole('link', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByLabel('Repeat password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'API keys' }).waitFor();
  step('signed up and landed on API keys');

  await page.getByLabel('Key name').fill('e2e-key');
  await page.getByRole('button', { name: 'Create key' }).click();
  const key = (await page.locator('[data-secret]').textContent()).trim();
  assert(/^sk-/.test(key) || key.length > 20, 'the new key is shown once: ' + key.slice(0, 6));
  await page.getByRole('cell', { name: 'e2e-key', exact: true }).waitFor(); // the key is listed
  await page.getByRole('button', { name: 'Copy' }).click();
  assert(await page.evaluate(() => navigator.clipboard.readText()) === key, 'Copy puts the key on the clipboard');
  await shot(page, 'keys');
  step('created a key in the console');

  const ok = await chat(key);
  assert(ok.status === 200, `the API answers the new key: ${ok.status} ${JSON.stringify(ok.body).slice(0, 200)}`);
  const tokens = ok.body.usage.prompt_tokens + ok.body.usage.completion_tokens;
  step(`called the API with it (${tokens} tokens)`);

  // Usage is recorded by the worker after the response; reload until it shows.
  let seen = false;
  for (let i = 0; i < 40 && !seen; i++) {
    await page.goto(base + '/console/#/usage?t=' + i, { waitUntil: 'networkidle' });
    await page.getByRole('heading', { name: 'Usage', exact: true }).waitFor();
    // The by-model table: Model, Requests, Prompt tokens, Completion tokens,
    // Cached tokens, Cache hit rate, Saved by caching, Cost.
    const row = page.getByRole('table', { name: 'Usage by model' }).getByRole('row').filter({ hasText: model });
    if (await row.count()) {
      const cells = (await row.first().getByRole('cell').allInnerTexts()).map(t => t.replace(/,/g, ''));
      seen = cells[1] === '1' && Number(cells[2]) + Number(cells[3]) === tokens && cells[7].startsWith('$');
    }
    if (!seen) await page.waitForTimeout(250);
  }
  assert(seen, 'the usage page shows the request');
  assert(await page.locator('p.notice', { hasText: /^Counted up to \d{4}-\d\d-\d\d \d\d:\d\d UTC/ }).count() === 1,
    'the usage page says when usage was last totalled');
  await shot(page, 'usage');
  step('the usage page shows the request');

  // A long prompt sent twice: the engine serves the second one's prefix
  // from its cache; the usage page shows the cached tokens, the hit rate and
  // what caching saved, by model and by key.
  const long = Array.from({ length: 200 }, (_, i) => 'word' + i).join(' ');
  let cached = 0;
  for (const q of ['first', 'second']) {
    const r = await chat(key, long + ' ' + q);
    assert(r.status === 200, `long prompt: ${r.status}`);
    cached += r.body.usage.prompt_tokens_details?.cached_tokens || 0;
  }
  assert(cached > 0, 'the repeated prefix was served from the engine cache');
  let shown = false;
  for (let i = 0; i < 40 && !shown; i++) {
    await page.goto(base + '/console/#/usage?c=' + i, { waitUntil: 'networkidle' });
    await page.getByRole('heading', { name: 'Usage', exact: true }).waitFor();
    const card = page.getByLabel('Prompt caching');
    if (await card.count()) {
      const stats = (await card.locator('.stat').allInnerTexts()).map(t => t.replace(/,/g, ''));
      shown = Number(stats[0]) === cached && /^\d+\.\d %$/.test(stats[1]) && stats[2] === money(cached * 75);
    }
    if (!shown) await page.waitForTimeout(250);
  }
  assert(shown, `the usage page shows ${cached} cached tokens, their hit rate and ${money(cached * 75)} saved`);
  const keyRow = page.getByRole('table', { name: 'Usage by key' }).getByRole('row').filter({ hasText: 'e2e-key' });
  assert(await keyRow.count() === 1, 'the usage page lists the key');
  const keyCells = (await keyRow.first().getByRole('cell').allInnerTexts()).map(t => t.replace(/,/g, ''));
  assert(keyCells[1] === '3' && Number(keyCells[4]) === cached, `by key: ${keyCells.join(' | ')}`);
  step(`the usage page shows ${cached} cached prompt tokens, the hit rate and what caching saved`);

  for (const [path, name, heading] of [['#/billing', 'billing', 'Billing'], ['#/models', 'models', 'Models'], ['#/quickstart', 'quickstart', 'Quick start']]) {
    await page.goto(base + '/console/' + path, { waitUntil: 'networkidle' });
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
    await shot(page, name);
  }
  await page.goto(base + '/console/#/billing', { waitUntil: 'networkidle' });
  // Billing shows the balance, or says plainly that this deployment lacks it; it never breaks.
  await page.locator('[data-credit], [data-unavailable]').first().waitFor();
  await page.goto(base + '/console/#/quickstart', { waitUntil: 'networkidle' });
  await page.getByRole('heading', { name: 'Quick start', exact: true }).waitFor();
  assert(await page.locator('pre', { hasText: base + '/v1' }).count() === 4, 'the quick start snippets point at this deployment');
  assert(await page.locator('pre', { hasText: 'OPENAI_API_KEY' }).count() === 4 && await page.locator('pre', { hasText: 'SLUICE_API_KEY' }).count() === 0,
    'the quick start uses OPENAI_API_KEY, as the README and the SDKs do');
  await page.goto(base + '/console/#/models', { waitUntil: 'networkidle' });
  await page.getByRole('row').filter({ hasText: model }).getByText('$100.00').first().waitFor(); // 0.0001 $/token
  step('billing, models and quick start pages render');

  await page.goto(base + '/console/#/keys', { waitUntil: 'networkidle' });
  await page.getByRole('button', { name: 'Revoke e2e-key' }).click();
  await page.getByRole('row').filter({ hasText: 'e2e-key' }).getByText('revoked').waitFor();
  const refused = await chat(key);
  assert(refused.status === 401, `the API refuses the revoked key: ${refused.status}`);
  step('revoked the key; the API refuses it (401)');

  await page.getByLabel('Key name').fill('second-key');
  await page.getByRole('button', { name: 'Create key' }).click();
  const first2 = (await page.locator('[data-secret]').textContent()).trim();
  assert((await chat(first2)).status === 200, 'the second key works');
  await page.getByRole('button', { name: 'Rotate second-key' }).click();
  await page.getByRole('region', { name: 'New key for “second-key”' }).waitFor();
  const key2 = (await page.locator('[data-secret]').textContent()).trim();
  assert(key2 !== first2 && (await chat(key2)).status === 200, 'the rotated key works');
  assert((await chat(first2)).status === 200, 'the old key works during the rotation overlap');
  step('copied a key; rotated one: the new key works, the old one until the overlap ends');

  promptAnswer = 'renamed-key';
  // Rotation left two keys of that name (the old one in its overlap).
  await page.getByRole('button', { name: 'Rename second-key' }).first().click();
  await page.getByRole('row').filter({ hasText: 'renamed-key' }).first().waitFor();
  assert((await chat(key2)).status === 200 && (await chat(first2)).status === 200, 'renamed keys still work');
  step('renamed a key; it still works');

  // Phone width: the nav folds behind a Menu button that works by keyboard.
  const phone = await newPage({ width: 390, height: 844 });
  await phone.goto(base + '/console/#/login', { waitUntil: 'networkidle' });
  await phone.getByLabel('Email').fill(email);
  await phone.getByLabel('Password').fill(password);
  await phone.getByLabel('Password').press('Enter');
  await phone.getByRole('heading', { name: 'API keys' }).waitFor();
  const menu = phone.getByRole('button', { name: 'Menu' });
  assert(await menu.isVisible(), 'the Menu button shows at 390px');
  assert(!(await phone.getByRole('link', { name: 'Usage' }).isVisible()), 'the nav is folded at 390px');
  await menu.focus();
  await phone.keyboard.press('Enter');
  assert(await phone.getByRole('link', { name: 'Usage' }).isVisible(), 'Enter on Menu opens the nav');
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 390, 'no sideways scrolling of the page at 390px: ' + width);
  // The keys table folds into one card per key: its buttons are in view, not scrolled off.
  const revoke = await phone.getByRole('button', { name: 'Revoke renamed-key' }).first().boundingBox();
  assert(revoke && revoke.x >= 0 && revoke.x + revoke.width <= 390, 'the keys table\'s Revoke button is in view at 390px: ' + JSON.stringify(revoke));
  await shot(phone, 'keys-phone');
  await menu.press('Enter');
  step('works at 390px: the menu opens by keyboard, nothing overflows, the keys\' buttons are in view');

  // ---- an admin: log in, must enrol MFA, logs in with TOTP, disables the user.
  const admin = await newPage();
  await admin.goto(base + '/console/#/login', { waitUntil: 'networkidle' });
  await admin.getByLabel('Email').fill(process.env.ADMIN_EMAIL);
  await admin.getByLabel('Password').fill(process.env.ADMIN_PASSWORD);
  await admin.getByRole('button', { name: 'Log in' }).click();
  await admin.getByRole('heading', { name: 'API keys' }).waitFor();
  await admin.getByRole('link', { name: 'Users' }).click();
  await admin.getByText('Admin pages need a login with multi-factor authentication').waitFor();
  step('an admin without MFA is told to enrol it');

  await admin.getByRole('link', { name: 'Set up MFA' }).click();
  await admin.getByLabel('Password').fill(process.env.ADMIN_PASSWORD);
  await admin.getByRole('button', { name: 'Set up MFA' }).click();
  const secret = (await admin.locator('[data-totp-secret]').textContent()).trim();
  await admin.getByLabel('Code from the app').fill(totp(secret));
  await admin.getByRole('button', { name: 'Confirm' }).click();
  await admin.getByRole('region', { name: 'Recovery codes' }).waitFor();
  await admin.getByRole('button', { name: 'Log out' }).click();
  await admin.getByLabel('Email').fill(process.env.ADMIN_EMAIL);
  await admin.getByLabel('Password').fill(process.env.ADMIN_PASSWORD);
  await admin.getByRole('button', { name: 'Log in' }).click();
  await admin.getByLabel('Authentication code').waitFor();
  // The enrolment used this step's code; codes are single-use, so the next step's (within the skew).
  await admin.getByLabel('Authentication code').fill(totp(secret, 1));
  await admin.getByRole('button', { name: 'Log in' }).click();
  await admin.getByRole('heading', { name: 'API keys' }).waitFor();
  step('the admin enrolled TOTP and logged in with a code');

  await admin.getByRole('link', { name: 'Users' }).click();
  await admin.getByLabel('Search by email').fill(email.slice(0, 13).toUpperCase());
  await admin.getByRole('button', { name: 'Search' }).click();
  await admin.waitForURL(/q=/);
  // The search finds exactly the user, whatever the case of the query.
  await admin.waitForFunction(e => { const r = document.querySelectorAll('tbody tr'); return r.length === 1 && r[0].textContent.includes(e); }, email);
  step('the admin searched users by email');

  await admin.getByRole('link', { name: email }).click();
  await admin.getByRole('heading', { name: email }).waitFor();
  // The keys table (the usage-by-key table below names keys too).
  const adminKeys = admin.getByRole('table', { name: 'API keys' });
  await adminKeys.getByRole('row').filter({ hasText: 'e2e-key' }).getByText('revoked').waitFor();
  assert(await adminKeys.getByRole('row').filter({ hasText: /second-key|renamed-key/ }).count() === 2, "the admin sees the user's keys (the rotated one and its successor, one renamed)");
  await admin.getByRole('link', { name: '← Users' }).click();
  await admin.getByLabel('Search by email').fill(email);
  await admin.getByRole('button', { name: 'Search' }).click();
  await admin.getByRole('button', { name: 'Disable ' + email }).click();
  await admin.getByRole('row').filter({ hasText: email }).getByText('disabled').waitFor();
  const blocked = await chat(key2);
  assert(blocked.status === 401 || blocked.status === 403, `the disabled user's key is refused: ${blocked.status}`);
  const blockedOld = await chat(first2);
  assert(blockedOld.status === 401 || blockedOld.status === 403, `the disabled user's rotated-out key is refused: ${blockedOld.status}`);
  step(`the admin disabled the user; their key is refused (${blocked.status})`);

  await admin.getByLabel('Search by email').fill('');
  await admin.getByRole('button', { name: 'Search' }).click();
  await admin.waitForFunction(() => document.querySelectorAll('tbody tr').length >= 3);
  await shot(admin, 'admin-users');
  for (const [path, name, heading] of [['#/admin/status', 'admin-status', 'Status'], ['#/admin/audit', 'admin-audit', 'Audit log'], ['#/admin/revenue', 'admin-revenue', 'Revenue']]) {
    await admin.goto(base + '/console/' + path, { waitUntil: 'networkidle' });
    await admin.getByRole('heading', { name: heading, exact: true }).waitFor();
    await shot(admin, name);
  }
  await admin.goto(base + '/console/#/admin/status', { waitUntil: 'networkidle' });
  await admin.getByText('1 healthy engine').waitFor(); // the simulator, reported by the worker
  await admin.goto(base + '/console/#/admin/audit', { waitUntil: 'networkidle' });
  await admin.getByRole('cell', { name: 'admin.user_update' }).first().waitFor(); // the disable is audited
  step('admin status, audit and revenue pages render');

  assert(external.length === 0, 'no third-party requests: ' + external.join(', '));
  step('no request left the deployment');
} finally {
  await browser.close();
}
