const { test, expect, login, openWorkspace, apiToken, apiGet } = require('./helpers');

test('a member of Acme never sees Umbrella data through any page or URL', async ({ page }) => {
  const umbrellaToken = await apiToken('owner@umbrella.com');
  const [umbrella] = await apiGet(umbrellaToken, '/api/v1/workspaces');
  const { items } = await apiGet(umbrellaToken, `/api/v1/workspaces/${umbrella.id}/artifacts?limit=100`);
  const secret = items[0];

  await login(page, 'member@acme.com');
  await expect(page.getByRole('link', { name: 'Umbrella Inc' })).toHaveCount(0);
  const acme = await openWorkspace(page, 'Acme Corp');

  const urls = [
    `/w/${umbrella.id}`,
    `/w/${umbrella.id}/artifacts`,
    `/w/${umbrella.id}/artifacts?q=${encodeURIComponent(secret.name)}`,
    `/w/${umbrella.id}/artifacts/new`,
    `/w/${umbrella.id}/artifacts/${secret.id}`,
    `/w/${umbrella.id}/artifacts/${secret.id}/edit`,
    `/w/${umbrella.id}/settings`,
    `/w/${umbrella.id}/members`,
    `/w/${acme}/artifacts/${secret.id}`,
    `/w/${acme}/artifacts/${secret.id}/edit`,
    `/switch?workspace=${umbrella.id}`,
    `/workspaces/${umbrella.id}`,
  ];
  for (const url of urls) {
    const res = await page.goto(url);
    expect(res.status(), url).toBe(404);
    const html = await page.content();
    expect(html, url).not.toContain(secret.name);
    expect(html, url).not.toContain(umbrella.name);
  }
  // Searching Acme for Umbrella's artifact finds nothing.
  await page.goto(`/w/${acme}/artifacts?q=${encodeURIComponent(secret.name)}`);
  await expect(page.locator('#result-count')).toContainText('0 artifact');

  // Writes are refused the same way.
  const res = await page.request.post(`/w/${umbrella.id}/artifacts/${secret.id}/delete`, {
    form: { csrf_token: (await page.context().cookies()).find((c) => c.name === 'gw_csrf').value },
  });
  expect(res.status()).toBe(404);
  const still = await apiGet(umbrellaToken, `/api/v1/workspaces/${umbrella.id}/artifacts/${secret.id}`);
  expect(still.id).toBe(secret.id);
});
