// Shared steps: the stack's addresses (set by global-setup.js), the mail sink, logins,
// accessibility checks and screenshots.
const path = require('node:path');
const { test: base, expect } = require('@playwright/test');
const AxeBuilder = require('@axe-core/playwright').default;

const PASSWORD = 'Str0ng!Passw0rd';
const DEMO_PASSWORD = 'demo123';
const shots = path.resolve(__dirname, '../../../target/e2e/screenshots');

const coverage = require('../coverage');

const test = base.extend({
  baseURL: async ({}, use) => { await use(process.env.GW_WEB_URL); },
  // Every test's page records which lines of the shipped script ran. V8's counters are read
  // when a navigation starts, before the old document goes away; a document replaced before
  // its counters are read is not counted, so the figure is a lower bound.
  page: async ({ page, javaScriptEnabled }, use, testInfo) => {
    if (!javaScriptEnabled) { await use(page); return; }
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
    const entries = [];
    const pending = [];
    const take = async () => {
      try {
        entries.push(...(await cdp.send('Profiler.takePreciseCoverage')).result);
      } catch (_) { /* the page is closing */ }
    };
    const onRequest = (r) => {
      if (r.isNavigationRequest() && r.frame() === page.mainFrame()) pending.push(take());
    };
    page.on('request', onRequest);
    await use(page);
    page.off('request', onRequest);
    await Promise.all(pending);
    await take();
    coverage.save(entries, testInfo.titlePath.join(' '));
  },
});

const api = (p) => `${process.env.GW_API_URL}${p}`;

const unique = (prefix) => `${prefix}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** The newest e-mail to `to` whose subject contains `subject`, waiting for it to arrive. */
async function mailTo(to, subject) {
  for (let i = 0; i < 60; i += 1) {
    const all = await (await fetch(process.env.GW_MAIL_URL)).json();
    const m = all.find((x) => x.to.includes(to) && (x.subject || '').includes(subject));
    if (m) return m;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`no e-mail "${subject}" to ${to}`);
}

async function login(page, email, password = DEMO_PASSWORD) {
  await page.goto('/login');
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('heading', { name: 'Your workspaces' })).toBeVisible();
}

/** Opens the named workspace from the selector; returns its id. */
async function openWorkspace(page, name) {
  await page.goto('/workspaces');
  await page.getByRole('link', { name }).click();
  await expect(page.getByRole('heading', { name: /Artifacts/ })).toBeVisible();
  return /\/w\/([0-9a-f-]+)\//.exec(page.url())[1];
}

/** An account registered and verified through the API directly (for tests about other things). */
async function verifiedAccount() {
  const email = `${unique('user')}@example.com`;
  const res = await fetch(api('/api/v1/auth/register'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD, first_name: 'Test', last_name: 'User' }),
  });
  expect(res.status).toBe(202);
  const mail = await mailTo(email, 'Verify');
  const token = new URL(mail.links.find((l) => l.includes('verify-email'))).searchParams.get('verification_token');
  const ok = await fetch(api(`/api/v1/auth/verify-email?verification_token=${encodeURIComponent(token)}`), { method: 'POST' });
  expect(ok.status).toBe(200);
  return email;
}

async function apiToken(email, password = DEMO_PASSWORD) {
  const res = await fetch(api('/api/v1/auth/login'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  expect(res.status).toBe(200);
  return (await res.json()).access_token;
}

async function apiGet(token, p) {
  const res = await fetch(api(p), { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return res.json();
}

/** axe-core finds no violation on the page as it is now. */
async function axeClean(page) {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  expect(result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(', ')})`)).toEqual([]);
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

module.exports = {
  test, expect, PASSWORD, unique, mailTo, login, openWorkspace, verifiedAccount, apiToken, apiGet, axeClean, screenshot,
};
