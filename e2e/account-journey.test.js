// The self-service journey of a new customer, in a real browser against a real server:
// register → open the link from the verification mail → sign in → account page →
// change password → sign out → the old password no longer works, the new one does.
//
// Locators are accessible ones (label text, role and name): finding a field by its
// label also checks that the label is bound to the input.
//
// Screenshots of the sign-in and account pages, the server log and the mail land in
// e2e/artifacts/account-journey/ (not committed; CI keeps them as artifacts).

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import { escapeRegExp, journeySteps, submit } from './lib/journey.js';
import { linksIn, parseHeaders } from './lib/smtp.js';
import { openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'account-journey');

const EMAIL = 'ada.lovelace@example.com';
const GIVEN_NAME = 'Ada';
const FAMILY_NAME = 'Lovelace';
const PASSWORD = 'violet-harbor-quilt-97-lantern';
const NEW_PASSWORD = 'amber-ocean-tulip-42-compass';

describe('account journey', { timeout: 180_000 }, () => {
  let smtp;
  let server;
  let browser;
  let page;
  let problems = [];
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  const onPath = (pathname) => (url) => url.pathname === pathname;

  before(async () => {
    ({ smtp, server, browser, page, problems } = await openStage({ artifacts: ARTIFACTS }));
  });

  after(async () => {
    // Each one even when another fails, so no server or browser outlives the test.
    const results = await Promise.allSettled([
      browser?.close(),
      server?.stop().then((status) => {
        if (status && (status.code !== 0 || status.signal)) {
          console.error(`note: gatehouse did not exit cleanly on SIGTERM: code ${status.code}, signal ${status.signal}`);
        }
      }),
      smtp?.close(),
    ]);
    for (const result of results) {
      if (result.status === 'rejected') console.error('cleanup failed:', result.reason);
    }
  });

  let verifyLink;

  step('signs up with email, name and password', async () => {
    await page.goto('/signup');
    await page.getByRole('heading', { level: 1 }).waitFor();
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Given name').fill(GIVEN_NAME);
    await page.getByLabel('Family name').fill(FAMILY_NAME);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Create account' }));
    await page.getByRole('heading', { name: /check your email/i }).waitFor();
    assert.match(await page.locator('main').innerText(), new RegExp(escapeRegExp(EMAIL)));
  });

  step('receives a verification mail with a link to the public URL', async () => {
    const mail = await smtp.waitForMessage((m) => m.to.includes(EMAIL));
    await writeFile(path.join(ARTIFACTS, 'verification.eml'), mail.raw, 'latin1');
    const { headers } = parseHeaders(mail.raw);
    assert.match(headers.get('to')?.[0] ?? '', new RegExp(escapeRegExp(EMAIL)), 'To: header names the new user');
    const links = linksIn(mail.raw);
    verifyLink = links.find((link) => link.startsWith(`${server.baseUrl}/verify?token=`));
    assert.ok(verifyLink, `a link to ${server.baseUrl}/verify?token=… in the mail; links found: ${JSON.stringify(links)}`);
    assert.equal(smtp.messages.filter((m) => m.to.includes(EMAIL)).length, 1, 'exactly one mail');
  });

  step('opens the link and is told the address is verified', async () => {
    const response = await page.goto(verifyLink);
    assert.equal(response.status(), 200, `GET ${verifyLink}`);
    await page.getByRole('heading', { level: 1 }).waitFor();
    await page.getByRole('link', { name: /sign in/i }).click();
    await page.waitForURL(onPath('/signin'));
  });

  step('signs in and lands on the account page', async () => {
    await page.getByRole('heading', { name: /sign in/i }).waitFor();
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.screenshot({ path: path.join(ARTIFACTS, 'signin.png'), fullPage: true });
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL(onPath('/account'));
  });

  step('the account page shows the email address', async () => {
    await page.getByRole('heading', { level: 1 }).waitFor();
    await page.locator('main').getByText(EMAIL, { exact: true }).first().waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'account.png'), fullPage: true });
  });

  step('changes the password', async () => {
    // The email form also asks for the current password: work inside the password form.
    const form = page.locator('form').filter({ has: page.getByRole('button', { name: 'Change password' }) });
    await form.getByLabel('Current password').fill(PASSWORD);
    await form.getByLabel('New password').fill(NEW_PASSWORD);
    await submit(form.getByRole('button', { name: 'Change password' }));
    // The notice comes on the account page itself (answered to the POST or after a
    // redirect: either is fine here).
    await page.getByRole('status').filter({ hasText: /password has been changed/i }).waitFor();
    await page.getByRole('button', { name: 'Change password' }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'account-password-changed.png'), fullPage: true });
  });

  step('signs out and lands on the sign-in page', async () => {
    await submit(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }));
    await page.waitForURL(onPath('/signin'));
    await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
  });

  step('the account page now redirects to sign-in', async () => {
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/signin');
  });

  step('the old password no longer signs in', async () => {
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }), { refused: true });
    await page.getByRole('alert').first().waitFor();
    assert.equal(new URL(page.url()).pathname, '/signin');
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/signin', 'still signed out');
  });

  step('the new password signs in', async () => {
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL(onPath('/account'));
    await page.locator('main').getByText(EMAIL, { exact: true }).first().waitFor();
  });

  step('no page showed a console error or a broken subresource', async () => {
    assert.deepEqual(problems, []);
  });
});
