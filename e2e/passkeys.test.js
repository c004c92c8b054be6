// Passkeys in a real browser: sign up → sign in with the password → add a passkey
// on the security page → sign out → the passkey autofill signs in → sign out →
// "Sign in with a passkey" → the account page, without typing a password → forgot
// password: the reset link's page takes the passkey as the second factor.
//
// The authenticator is Chromium's virtual one (DevTools protocol, WebAuthn domain):
// a platform authenticator with resident keys and user verification, which answers
// without anybody touching it. It lives in the browser context, so the credential
// it makes at registration is the one it offers at sign-in.
//
// Screenshots, the server log and the mail land in e2e/artifacts/passkeys/.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import { journeySteps, submit } from './lib/journey.js';
import { linksIn } from './lib/smtp.js';
import { openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'passkeys');

const EMAIL = 'grace.hopper@example.com';
const PASSWORD = 'cobalt-meadow-lantern-31-harbor';
const PASSKEY_NAME = 'Test laptop';
const NEW_PASSWORD = 'amber-willow-quarry-64-sextant';

describe('passkeys', { timeout: 180_000 }, () => {
  let smtp;
  let server;
  let browser;
  let page;
  let cdp;
  let authenticatorId;
  let problems = [];
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  const onPath = (pathname) => (url) => url.pathname === pathname;

  before(async () => {
    let context;
    ({ smtp, server, browser, context, page, problems } = await openStage({ artifacts: ARTIFACTS }));

    cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    }));
  });

  after(async () => {
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

  step('signs up and verifies the email address', async () => {
    await page.goto('/signup');
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Create account' }));
    await page.getByRole('heading', { name: /check your email/i }).waitFor();
    const mail = await smtp.waitForMessage((m) => m.to.includes(EMAIL));
    const link = linksIn(mail.raw).find((l) => l.startsWith(`${server.baseUrl}/verify?token=`));
    assert.ok(link, 'a verification link in the mail');
    const response = await page.goto(link);
    assert.equal(response.status(), 200, `GET ${link}`);
  });

  step('signs in with the password', async () => {
    await page.goto('/signin');
    // The passkey button appears once passkeys.js has run.
    await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL(onPath('/account'));
  });

  step('adds a passkey on the security page and is shown its recovery codes', async () => {
    await page.goto('/account/security');
    await page.getByText('You have no passkeys yet.').waitFor();
    await page.getByLabel('Name for the new passkey').fill(PASSKEY_NAME);
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    // The first second factor of the account comes with recovery codes, shown once.
    const codes = page.locator('[data-passkey-codes]');
    await codes.getByRole('heading', { name: 'Save your recovery codes' }).waitFor();
    assert.equal(await codes.locator('li code').count(), 10, 'ten recovery codes');
    // The same download as on the recovery codes page, with the codes shown here.
    const shown = (await codes.locator('li code').allInnerTexts()).map((c) => c.trim());
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      codes.getByRole('button', { name: 'Download as a text file' }).click(),
    ]);
    const saved = await readFile(await download.path(), 'utf8');
    for (const code of shown) assert.ok(saved.includes(code), `${code} in the downloaded file`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'recovery-codes.png'), fullPage: true });
    await codes.getByRole('link', { name: 'I have saved them' }).click();
    await page.waitForURL(onPath('/account/security'));
  });

  step('the passkey is listed and the authenticator holds one resident credential', async () => {
    const list = page.locator('#passkey-list');
    await list.getByText(PASSKEY_NAME, { exact: true }).waitFor();
    assert.equal(await list.locator('li').count(), 1);
    await list.getByRole('button', { name: 'Remove passkey' }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'security.png'), fullPage: true });
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1, 'one credential');
    assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
    assert.equal(credentials[0].rpId, 'localhost');
  });

  step('signs out; on the sign-in page the passkey autofill (conditional UI) signs in', async () => {
    // passkeys.js starts a conditional request on the sign-in page. A person would
    // pick the passkey from the email field's autofill; Chromium's virtual
    // authenticator answers the request at once instead.
    const finished = page.waitForResponse((r) => r.url().endsWith('/signin/passkey/finish'));
    await submit(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }));
    assert.equal((await finished).status(), 200, 'the passkey sign-in was accepted');
    await page.waitForURL(onPath('/account'));
    await page.locator('main').getByText(EMAIL, { exact: true }).first().waitFor();
  });

  step('signs out and stays signed out (autofill off)', async () => {
    // From here on the pages see no conditional mediation, as in a browser without
    // passkey autofill: only the button signs in with a passkey.
    await page.context().addInitScript(() => {
      if (window.PublicKeyCredential) {
        Object.defineProperty(PublicKeyCredential, 'isConditionalMediationAvailable', {
          value: async () => false,
          configurable: true,
        });
      }
    });
    await submit(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }));
    await page.waitForURL(onPath('/signin'));
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/signin', 'signed out');
  });

  step('"Sign in with a passkey" signs in without a password', async () => {
    await page.goto('/signin');
    await page.screenshot({ path: path.join(ARTIFACTS, 'signin.png'), fullPage: true });
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.waitForURL(onPath('/account'));
    await page.locator('main').getByText(EMAIL, { exact: true }).first().waitFor();
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(credentials[0].signCount >= 2, `the credential was used twice (signCount ${credentials[0].signCount})`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'account.png'), fullPage: true });
  });

  step('after the password, "Use a passkey" is the second factor', async () => {
    await submit(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }));
    await page.waitForURL(onPath('/signin'));
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL(onPath('/signin/second-factor'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'second-factor.png'), fullPage: true });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(onPath('/account'));
    await page.locator('main').getByText(EMAIL, { exact: true }).first().waitFor();
  });

  step('the security page shows the passkey as used', async () => {
    await page.goto('/account/security');
    const item = page.locator('#passkey-list li').filter({ hasText: PASSKEY_NAME });
    await item.waitFor();
    assert.doesNotMatch(await item.innerText(), /Never/);
  });

  step('forgot password: the reset page offers the passkey, with small radio buttons', async () => {
    await submit(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }));
    await page.waitForURL(onPath('/signin'));
    await page.goto('/recover/request');
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await submit(page.getByRole('button', { name: 'Send link' }));
    await page.getByText('the earlier link no longer works').waitFor();
    const mail = await smtp.waitForMessage((m) => m.to.includes(EMAIL) && linksIn(m.raw).some((l) => l.includes('/recover?token=')));
    const link = linksIn(mail.raw).find((l) => l.startsWith(`${server.baseUrl}/recover?token=`));
    assert.ok(link, 'a reset link in the mail');
    await page.goto(link);
    const passkey = page.getByLabel('Passkey', { exact: true });
    await passkey.waitFor();
    // passkeys.js chose the passkey: no code is asked for.
    assert.equal(await passkey.isChecked(), true, 'the passkey is the chosen proof');
    assert.equal(await page.locator('#recover-code').isVisible(), false, 'no code field for the passkey');
    assert.equal(await page.getByText(/authenticator app/i).count(), 0, 'no app the account does not have');
    const box = await passkey.boundingBox();
    assert.ok(box.width < 32 && box.height < 32, `a radio button of ordinary size: ${JSON.stringify(box)}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'reset.png'), fullPage: true });
  });

  step('the passkey proves the reset and the new password signs in', async () => {
    const { credentials: before } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await submit(page.getByRole('button', { name: 'Set new password' }));
    await page.getByRole('heading', { name: 'Password changed' }).waitFor();
    const { credentials: after } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(after[0].signCount > before[0].signCount, 'the passkey signed the reset');
    await page.goto('/signin');
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL(onPath('/signin/second-factor'));
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(onPath('/account'));
  });

  step('no page showed a console error or a broken subresource', async () => {
    assert.deepEqual(problems, []);
  });
});
