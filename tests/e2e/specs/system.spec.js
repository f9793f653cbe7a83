const { test, expect, login, axeClean, screenshot } = require('./helpers');

test('the tour shows live health, and the counts of your workspaces once logged in', async ({ page }) => {
  await page.goto('/');
  await axeClean(page);
  await screenshot(page, 'landing');
  await page.goto('/tour');
  await expect(page.locator('#live')).toContainText('Log in to see the counts of your workspaces');
  await login(page, 'owner@acme.com');
  await page.goto('/tour');
  for (const s of ['Web', 'API', 'PostgreSQL', 'Redis', 'Worker']) {
    await expect(page.locator('#live .cards li', { hasText: s }).first()).toContainText('up');
  }
  await expect(page.locator('#live')).toContainText('workspaces');
  await expect(page.locator('#live')).toContainText('users');
  await expect(page.locator('#live')).toContainText('artifacts');
  await expect(page.locator('#live')).toContainText('jobs');
  await axeClean(page);
  await screenshot(page, 'tour');
  // The script re-reads the region: a request for the page goes out on its own.
  await page.waitForRequest((r) => r.url().endsWith('/tour'), { timeout: 15_000 });
});

test('the operations dashboard draws request rate, errors and latency', async ({ page }) => {
  await login(page, 'owner@acme.com');
  await page.goto('/ops');
  await expect(page.locator('figure.chart')).toHaveCount(3, { timeout: 30_000 });
  await expect(page.locator('figure.chart svg polyline')).toHaveCount(5);
  await axeClean(page);
  await screenshot(page, 'ops');
});
