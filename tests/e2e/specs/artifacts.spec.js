const { test, expect, unique, login, openWorkspace, axeClean, screenshot } = require('./helpers');

test('create, search, filter by tag, page, sort, edit and delete artifacts', async ({ page }) => {
  await login(page, 'owner@acme.com');
  await screenshot(page, 'workspaces');
  const ws = await openWorkspace(page, 'Acme Corp');
  await axeClean(page);
  await screenshot(page, 'artifacts');

  // Paging: the demo workspace has more than one page.
  await expect(page.locator('#result-count')).toContainText('page 1 of');
  await page.getByRole('link', { name: 'Next page →' }).click();
  await expect(page.locator('#result-count')).toContainText('page 2 of');
  await expect(page.getByRole('link', { name: '← First page' })).toBeVisible();

  // Sorting by name: the first row is the alphabetically first name.
  await page.goto(`/w/${ws}/artifacts`);
  await page.getByLabel('Sort').selectOption('name');
  await page.getByRole('button', { name: 'Search' }).click();
  const names = await page.locator('#artifact-list > li a').allTextContents();
  expect(names).toEqual([...names].sort((a, b) => a.localeCompare(b, 'en', { sensitivity: 'base' })));

  // Create with script: the row shows at once, then links to the saved artifact.
  await page.goto(`/w/${ws}/artifacts`);
  const name = unique('Quarterly e2e report');
  const tag = unique('e2e');
  const quick = page.locator('form[data-optimistic=create]');
  await quick.getByLabel('Name').fill(name);
  await quick.getByLabel('Tags').fill(`${tag}, finance`);
  await quick.getByRole('button', { name: 'Add artifact' }).click();
  await expect(page.locator('#artifact-list').getByRole('link', { name })).toBeVisible();
  await expect(page.locator('#flash')).toContainText('Created');

  // A refused create rolls back the row and names the field.
  await quick.getByLabel('Name').fill('x'.repeat(300));
  await quick.getByRole('button', { name: 'Add artifact' }).click();
  await expect(quick.locator('#f-name-error')).toBeVisible();
  await expect(page.locator('#artifact-list li.pending')).toHaveCount(0);
  await expect(quick.getByLabel('Name')).toHaveValue('x'.repeat(300));

  // Search finds it by a part of its name.
  await page.getByLabel('Search').fill(name.slice(0, 30));
  await page.getByRole('button', { name: 'Search' }).click();
  await expect(page.locator('#result-count')).toContainText('1 artifact');
  await expect(page.getByRole('link', { name })).toBeVisible();

  // Tag chips: choosing one narrows the list to artifacts carrying it.
  await page.goto(`/w/${ws}/artifacts`);
  await page.getByRole('navigation', { name: 'Filter by tag' }).getByRole('link', { name: 'finance', exact: true }).click();
  await expect(page).toHaveURL(/tags=finance/);
  const tags = await page.locator('#artifact-list .tags').allTextContents();
  expect(tags.length).toBeGreaterThan(0);
  for (const t of tags) expect(t.split(', ')).toContain('finance');
  await page.goto(`/w/${ws}/artifacts?tags=${tag}`);
  await expect(page.locator('#result-count')).toContainText('1 artifact');

  // Detail and edit.
  await page.getByRole('link', { name }).click();
  await expect(page.getByRole('heading', { name })).toBeVisible();
  await axeClean(page);
  await screenshot(page, 'artifact-detail');
  await page.getByRole('link', { name: 'Edit' }).click();
  await axeClean(page);
  await screenshot(page, 'artifact-edit');
  const renamed = `${name} (final)`;
  await page.getByLabel('Name').fill(renamed);
  await page.getByLabel('Metadata').fill('owner = finance team\npages = 12');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('#flash')).toContainText('Saved');
  await expect(page.locator('h1 [data-bind=name]')).toHaveText(renamed);
  await page.getByRole('link', { name: 'Back to the artifact' }).click();
  await expect(page.getByRole('heading', { name: renamed })).toBeVisible();
  await expect(page.getByText('finance team')).toBeVisible();

  // Delete from the list: gone at once, and still gone after a reload.
  await page.goto(`/w/${ws}/artifacts?tags=${tag}`);
  await page.getByRole('button', { name: `Delete ${renamed}` }).click();
  await expect(page.getByRole('link', { name: renamed })).toBeHidden();
  await expect(page.locator('#flash')).toContainText('Deleted');
  await page.reload();
  await expect(page.locator('#result-count')).toContainText('0 artifact');
});

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('forms post normally and a refusal keeps what was typed', async ({ page }) => {
    await login(page, 'owner@acme.com');
    const ws = await openWorkspace(page, 'Acme Corp');
    await page.goto(`/w/${ws}/artifacts/new`);
    const name = unique('No script');
    await page.getByLabel('Name').fill(name);
    await page.getByLabel('Description').fill('Typed with care');
    await page.getByLabel('Metadata').fill('this line has no equals sign');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.locator('#f-artifact_metadata-error')).toContainText('Line 1');
    await expect(page.getByLabel('Name')).toHaveValue(name);
    await expect(page.getByLabel('Description')).toHaveValue('Typed with care');
    await page.getByLabel('Metadata').fill('kind = memo');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByRole('heading', { name })).toBeVisible();
    await page.getByRole('button', { name: 'Delete this artifact' }).click();
    await expect(page.getByText('Artifact deleted.')).toBeVisible();
  });
});
