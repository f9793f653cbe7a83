const { test, expect, login, openWorkspace } = require('./helpers');

test('logout then the back button shows no private data', async ({ page, context }) => {
  await login(page, 'owner@acme.com');
  await openWorkspace(page, 'Acme Corp');
  const first = await page.locator('#artifact-list > li a').first().textContent();
  for (const c of await context.cookies()) {
    expect(c.httpOnly, c.name).toBeTruthy();
    expect(c.sameSite, c.name).toBe('Lax');
  }
  // No token is readable by page script.
  expect(await page.evaluate(() => document.cookie)).toBe('');

  await page.getByRole('button', { name: 'Log out' }).click();
  await expect(page.getByText('You are logged out.')).toBeVisible();
  const names = (await context.cookies()).map((c) => c.name);
  expect(names).not.toContain('gw_access');
  expect(names).not.toContain('gw_refresh');

  await page.goBack();
  await expect(page.getByRole('heading', { name: 'Log in' })).toBeVisible();
  expect(await page.content()).not.toContain(first);
});

test('a form without its CSRF token is refused', async ({ page }) => {
  await page.goto('/login');
  const res = await page.request.post('/login', { form: { email: 'owner@acme.com', password: 'demo123' } });
  expect(res.status()).toBe(403);
  expect(await res.text()).toContain('This form is no longer valid');
});
