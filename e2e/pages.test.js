// The end-user pages where a journey used to break, in a real browser against a real
// server: switching language in the middle of an application's sign-in, the consent
// page in German, the themed 404 page, an account error at its field after a
// redirect, and the recovery codes' copy and download buttons (the page offers no
// language link that would lose them).
//
// Screenshots and the server log land in e2e/artifacts/pages/ (not committed).

import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import dns from 'node:dns';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import { journeySteps, submit } from './lib/journey.js';
import { startCallbackServer } from './lib/relying-party.js';
import { linksIn } from './lib/smtp.js';
import { closeAll, openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'pages');

const EMAIL = 'katherine.johnson@example.com';
const PASSWORD = 'orbit-lantern-violet-73-harbor';
const CLIENT_NAME = 'Trajectory Notes';

dns.setDefaultResultOrder('ipv4first');

// axe-core, evaluated through the DevTools protocol: the pages' CSP (rightly) refuses
// an injected <script>, and the test must not switch the CSP off to look.
const AXE_SOURCE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** Fails with every WCAG 2 A/AA violation axe-core finds on the page as it is now. */
async function assertAccessible(page, what) {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  });
  assert.deepEqual(violations, [], `axe-core on ${what}`);
}

describe('pages that keep the journey', { timeout: 240_000 }, () => {
  let smtp;
  let server;
  let callback;
  let browser;
  let context;
  let page;
  let problems = [];
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  before(async () => {
    ({ smtp, server, browser, context, page, problems } = await openStage({
      artifacts: ARTIFACTS,
      contextOptions: { acceptDownloads: true },
    }));
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.baseUrl });
    callback = await startCallbackServer();
  });

  after(() => closeAll([browser?.close(), server?.stop(), smtp?.close(), callback?.close()]));

  let app; // { clientId, redirectUri }

  step('signs up, verifies the address, and an application is registered', async () => {
    await page.goto('/signup');
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Create account' }));
    const mail = await smtp.waitForMessage((m) => m.to.includes(EMAIL));
    const link = linksIn(mail.raw).find((l) => l.startsWith(`${server.baseUrl}/verify?token=`));
    assert.ok(link, 'a verification link');
    assert.equal((await page.goto(link)).status(), 200);

    const redirectUri = `http://localhost:${callback.port}/callback`;
    const created = await server.cli([
      'clients', 'create', '--name', CLIENT_NAME, '--redirect-uri', redirectUri,
      '--grant', 'authorization_code', '--scope', 'openid', '--scope', 'profile', '--scope', 'email',
    ]);
    const clientId = /^client_id:\s+(\S+)$/m.exec(created)?.[1];
    assert.ok(clientId, `a client_id in:\n${created}`);
    app = { clientId, redirectUri };
  });

  step('switching to German during the application\'s sign-in keeps the way back to it', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(8).toString('hex');
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: app.clientId,
      redirect_uri: app.redirectUri,
      scope: 'openid profile email',
      state,
      nonce: randomBytes(8).toString('hex'),
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    await page.goto(`/authorize?${query}`);
    assert.equal(new URL(page.url()).pathname, '/signin');
    const returnTo = new URL(page.url()).searchParams.get('return_to');
    assert.match(returnTo ?? '', /^\/authorize\?/, 'the sign-in page knows the way back');

    await page.getByRole('navigation', { name: 'Language' }).getByRole('link', { name: 'Deutsch' }).click();
    await page.getByRole('heading', { level: 1 }).waitFor();
    const switched = new URL(page.url());
    assert.equal(switched.pathname, '/signin');
    assert.equal(switched.searchParams.get('return_to'), returnTo, 'return_to survived the switch');
    assert.equal(await page.locator('html').getAttribute('lang'), 'de');
    await assertAccessible(page, 'the German sign-in page');

    await page.getByLabel('E-Mail', { exact: true }).fill(EMAIL);
    await page.getByLabel('Passwort', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Anmelden', exact: true }));

    // Back at the application's request: its consent page, in German, in words.
    await page.waitForURL((u) => u.pathname === '/authorize');
    const listed = (await page.locator('main li').allInnerTexts()).map((s) => s.trim());
    assert.deepEqual(listed, [
      'Ihre Anmeldung mit diesem Konto (eine Kennung für Sie)',
      'Ihren Namen und Ihre Profilangaben',
      'Ihre E-Mail-Adresse',
    ]);
    const allow = page.getByRole('button', { name: 'Erlauben', exact: true });
    const deny = page.getByRole('button', { name: 'Ablehnen', exact: true });
    const [a, d] = [await allow.boundingBox(), await deny.boundingBox()];
    assert.ok(d.y >= a.y + a.height + 8, `the buttons do not touch: allow ${JSON.stringify(a)}, deny ${JSON.stringify(d)}`);
    assert.notEqual(
      await deny.evaluate((el) => getComputedStyle(el).backgroundColor),
      await allow.evaluate((el) => getComputedStyle(el).backgroundColor),
      'deny is styled as the secondary choice',
    );
    await page.screenshot({ path: path.join(ARTIFACTS, 'consent-de.png'), fullPage: true });
    await assertAccessible(page, 'the consent page');

    const arrived = callback.next();
    await allow.click();
    const received = await arrived;
    assert.equal(received.searchParams.get('state'), state, 'the application got its answer');
    assert.ok(received.searchParams.get('code'), 'with a code');
  });

  step('an unknown page is the themed 404 with the request id', async () => {
    const response = await page.goto('/no-such-page');
    assert.equal(response.status(), 404);
    await page.getByRole('heading', { level: 1, name: 'Seite nicht gefunden' }).waitFor();
    const requestId = response.headers()['x-request-id'];
    assert.ok(requestId, 'a request id header');
    assert.match(await page.locator('#request-id').innerText(), new RegExp(requestId));
    await page.screenshot({ path: path.join(ARTIFACTS, 'not-found.png'), fullPage: true });
    await assertAccessible(page, 'the 404 page');
  });

  step('an SVG logo with only a viewBox is shown at the logo height, not 0×0', async () => {
    // The favicon has only a viewBox; put it where a theme's logo goes.
    const box = await page.evaluate(async () => {
      const brand = document.querySelector('.gh-brand');
      const img = document.createElement('img');
      img.className = 'gh-brand__logo';
      img.alt = 'Logo';
      img.src = '/static/themes/default/favicon.svg';
      brand.replaceChildren(img);
      await img.decode();
      const { width, height } = img.getBoundingClientRect();
      return { width, height };
    });
    assert.ok(box.height >= 32 && box.width >= 32, `the logo is visible: ${JSON.stringify(box)}`);
    assert.ok(Math.abs(box.width - box.height) < 1, `its aspect ratio is kept: ${JSON.stringify(box)}`);
  });

  step('an account error is shown at its field, and a reload submits nothing', async () => {
    await page.goto('/account?lang=en');
    const form = page.locator('form').filter({ has: page.getByRole('button', { name: 'Change password' }) });
    await form.getByLabel('Current password').fill('not-my-password-at-all');
    await form.getByLabel('New password').fill('another-long-passphrase-91');
    await submit(form.getByRole('button', { name: 'Change password' }));
    await page.waitForURL((u) => u.pathname === '/account' && u.searchParams.get('field') === 'password-current');
    const input = page.locator('#password-current');
    const error = page.locator('#password-current-error');
    assert.equal(await error.innerText(), 'The current password is incorrect.');
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    assert.equal(await input.getAttribute('aria-describedby'), 'password-current-error');
    const [i, e] = [await input.boundingBox(), await error.boundingBox()];
    assert.ok(e.y >= i.y + i.height && e.y - (i.y + i.height) < 40, `the error sits right under its field: ${JSON.stringify({ i, e })}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'account-error.png'), fullPage: true });
    await assertAccessible(page, 'the account page with an error at its field');

    const methods = [];
    page.on('request', (r) => r.isNavigationRequest() && methods.push(r.method()));
    await page.reload();
    assert.deepEqual(methods, ['GET'], 'a reload is a GET, not the form again');
  });

  step('recovery codes can be copied and downloaded, and no language link loses them', async () => {
    await page.goto('/account/security');
    await submit(page.getByRole('button', { name: 'Set up authenticator app' }));
    const secret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
    await page.getByLabel('Code from your authenticator app').fill(totp(secret));
    await submit(page.getByRole('button', { name: 'Turn on' }));
    const codes = (await page.locator('[data-recovery-codes-list] code').allInnerTexts()).map((c) => c.trim());
    assert.ok(codes.length >= 8, `codes shown: ${codes.length}`);
    assert.equal(await page.locator('.gh-lang').count(), 0, 'no language link on the answer to a form post');

    await page.getByRole('button', { name: 'Copy codes' }).click();
    await page.getByRole('status').filter({ hasText: 'The codes are on your clipboard.' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    for (const code of codes) assert.ok(copied.includes(code), `${code} copied`);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download as a text file' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'recovery-codes.txt');
    const file = path.join(ARTIFACTS, 'recovery-codes.txt');
    await download.saveAs(file);
    const saved = await readFile(file, 'utf8');
    for (const code of codes) assert.ok(saved.includes(code), `${code} in the file`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'recovery-codes.png'), fullPage: true });
    await assertAccessible(page, 'the recovery codes page with its buttons');
  });

  step('no page showed a console error or a broken subresource', async () => {
    assert.deepEqual(problems, []);
  });
});

/** RFC 6238 with SHA-1, six digits, 30-second steps (what Gatehouse asks for). */
function totp(base32, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of base32.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}
