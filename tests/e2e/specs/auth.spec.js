const { test, expect, PASSWORD, unique, mailTo, axeClean, screenshot } = require('./helpers');

test('register, receive the e-mail, verify, log in', async ({ page }) => {
  const email = `${unique('new')}@example.com`;
  await page.goto('/register');
  await axeClean(page);
  await screenshot(page, 'register');

  // A weak password is refused next to its field and nothing else typed is lost.
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill('weak');
  await page.getByLabel('First name (optional)').fill('Ada');
  await page.getByRole('button', { name: 'Register' }).click();
  await expect(page.locator('#f-password-error')).toBeVisible();
  await expect(page.getByLabel('E-mail')).toHaveValue(email);
  await expect(page.getByLabel('First name (optional)')).toHaveValue('Ada');
  await expect(page.getByLabel('Password')).toHaveAttribute('aria-invalid', 'true');

  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Register' }).click();
  await expect(page.getByText('We sent an e-mail to that address')).toBeVisible();

  // Logging in before verifying is refused with a way out.
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('alert')).toContainText(/verif/i);
  await expect(page.getByRole('link', { name: /verification e-mail again/ })).toBeVisible();

  const mail = await mailTo(email, 'Verify');
  const link = mail.links.find((l) => l.includes('/verify-email?'));
  expect(link.startsWith(process.env.GW_WEB_URL)).toBeTruthy();
  await page.goto(link);
  await screenshot(page, 'verify-email');
  await page.getByRole('button', { name: 'Verify my e-mail address' }).click();
  await expect(page.getByText('Your e-mail address is verified')).toBeVisible();
  await axeClean(page);
  await screenshot(page, 'login');

  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('heading', { name: 'Your workspaces' })).toBeVisible();
  await expect(page.getByText('You are not a member of any workspace yet')).toBeVisible();
  await axeClean(page);
});

test('forgot password e-mails a link that sets a new password', async ({ page }) => {
  const email = `${unique('reset')}@example.com`;
  await page.goto('/register');
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.goto((await mailTo(email, 'Verify')).links.find((l) => l.includes('/verify-email?')));
  await page.getByRole('button', { name: 'Verify my e-mail address' }).click();

  await page.goto('/forgot-password');
  await page.getByLabel('E-mail').fill(email);
  await page.getByRole('button', { name: 'Send' }).click();
  await expect(page.getByText('a reset link is on its way')).toBeVisible();
  const link = (await mailTo(email, 'Reset')).links.find((l) => l.includes('/reset-password?'));
  await page.goto(link);
  await page.getByLabel('New password').fill('An0ther!Passw0rd');
  await page.getByRole('button', { name: 'Set password' }).click();
  await expect(page.getByText('Your password was changed')).toBeVisible();
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill('An0ther!Passw0rd');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('heading', { name: 'Your workspaces' })).toBeVisible();
});
