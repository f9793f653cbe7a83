const { test, expect, unique, login, openWorkspace, axeClean, screenshot } = require('./helpers');

test('a conflicting edit from a second browser shows the conflict and keeps the text', async ({ browser }) => {
  const alice = await browser.newContext({ baseURL: process.env.GW_WEB_URL });
  const bob = await browser.newContext({ baseURL: process.env.GW_WEB_URL });
  const a = await alice.newPage();
  const b = await bob.newPage();
  await login(a, 'owner@acme.com');
  const ws = await openWorkspace(a, 'Acme Corp');
  const name = unique('Shared doc');
  const quick = a.locator('form[data-optimistic=create]');
  await quick.getByLabel('Name').fill(name);
  await quick.getByRole('button', { name: 'Add artifact' }).click();
  const link = a.locator('#artifact-list').getByRole('link', { name });
  await expect(link).toBeVisible();
  const href = await link.getAttribute('href');

  await login(b, 'manager@acme.com');
  await a.goto(`${href}/edit`);
  await b.goto(`${href}/edit`);

  await a.getByLabel('Description').fill('Alice was here first');
  await a.getByRole('button', { name: 'Save' }).click();
  await expect(a.locator('#flash')).toContainText('Saved');

  const bobs = 'Bob typed this carefully and must not lose it';
  await b.getByLabel('Name').fill(`${name} by Bob`);
  await b.getByLabel('Description').fill(bobs);
  await b.getByRole('button', { name: 'Save' }).click();
  await expect(b.locator('[data-form-error]')).toContainText('Someone else saved this artifact');
  await expect(b.getByLabel('Description')).toHaveValue(bobs);
  // The optimistic heading went back to the saved name.
  await expect(b.locator('h1 [data-bind=name]')).toHaveText(name);
  await axeClean(b);
  await screenshot(b, 'edit-conflict');

  // Saving again, knowingly, replaces Alice's change.
  await b.getByRole('button', { name: 'Save' }).click();
  await expect(b.locator('#flash')).toContainText('Saved');
  await b.goto(href);
  await expect(b.getByText(bobs)).toBeVisible();
  expect(ws).toBeTruthy();
  await alice.close();
  await bob.close();
});

test('without JavaScript the conflict page keeps the text too', async ({ browser }) => {
  const ctx = await browser.newContext({ baseURL: process.env.GW_WEB_URL, javaScriptEnabled: false });
  const other = await browser.newContext({ baseURL: process.env.GW_WEB_URL });
  const p = await ctx.newPage();
  const o = await other.newPage();
  await login(p, 'owner@acme.com');
  await openWorkspace(p, 'Acme Corp');
  const first = p.locator('#artifact-list > li a').first();
  const href = await first.getAttribute('href');
  await p.goto(`${href}/edit`);
  await login(o, 'manager@acme.com');
  await o.goto(`${href}/edit`);
  await o.getByRole('button', { name: 'Save' }).click();
  await expect(o.locator('#flash')).toContainText('Saved');

  await p.getByLabel('Description').fill('No-script words');
  await p.getByRole('button', { name: 'Save' }).click();
  await expect(p.getByRole('alert').first()).toContainText('Someone else saved this artifact');
  await expect(p.getByLabel('Description')).toHaveValue('No-script words');
  await ctx.close();
  await other.close();
});
