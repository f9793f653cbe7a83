const { test, expect, PASSWORD, mailTo, login, openWorkspace, verifiedAccount, axeClean, screenshot } = require('./helpers');

test('an admin invites a member, who sees the workspace and cannot manage members', async ({ browser }) => {
  const email = await verifiedAccount();
  const admin = await (await browser.newContext({ baseURL: process.env.GW_WEB_URL })).newPage();
  await login(admin, 'manager@acme.com');
  const ws = await openWorkspace(admin, 'Acme Corp');
  await admin.getByRole('link', { name: 'Members' }).click();
  await axeClean(admin);
  await screenshot(admin, 'members');

  // An invalid address is refused next to the field, and stays typed.
  await admin.getByLabel('E-mail').fill('nobody-here@example.invalid');
  await admin.getByRole('button', { name: 'Add member' }).click();
  await expect(admin.getByRole('alert').first()).toBeVisible();
  await expect(admin.getByLabel('E-mail')).toHaveValue('nobody-here@example.invalid');

  // An address without an account is answered like one with; nobody joins.
  await admin.getByLabel('E-mail').fill('nobody-here@example.com');
  await admin.getByRole('button', { name: 'Add member' }).click();
  await expect(admin.getByText('If that address has an account')).toBeVisible();
  await expect(admin.getByRole('cell', { name: 'nobody-here@example.com', exact: true })).toHaveCount(0);

  await admin.getByLabel('E-mail').fill(email);
  await admin.locator('#invite-role').selectOption('member');
  await admin.getByRole('button', { name: 'Add member' }).click();
  await expect(admin.getByText('If that address has an account')).toBeVisible();
  await expect(admin.getByRole('cell', { name: email, exact: true })).toBeVisible();
  const mail = await mailTo(email, 'You were added');
  expect(mail.links.some((l) => l.includes(`/workspaces/${ws}`))).toBeTruthy();

  const member = await (await browser.newContext({ baseURL: process.env.GW_WEB_URL })).newPage();
  await login(member, email, PASSWORD);
  await member.goto(mail.links.find((l) => l.includes('/workspaces/')));
  await expect(member.getByRole('heading', { name: /Artifacts/ })).toBeVisible();
  await expect(member.getByRole('link', { name: 'Members' })).toHaveCount(0);
  await member.goto(`/w/${ws}/members`);
  await expect(member.getByText('Only owners and admins manage members.')).toBeVisible();
  await member.goto(`/w/${ws}/settings`);
  await expect(member.getByText('Only owners and admins change these settings.')).toBeVisible();
  await expect(member.getByRole('button', { name: 'Save settings' })).toHaveCount(0);
});
