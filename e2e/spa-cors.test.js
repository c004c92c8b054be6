// A single-page app on another origin, as oidc-client-ts and its kind work: the
// browser runs the authorization code flow with PKCE and then calls the token
// endpoint, UserInfo and revocation itself with `fetch` — which only works when
// Gatehouse answers CORS for the app's registered web origin. The same page served
// from an origin nobody registered must be refused by the browser.
//
// The app is a few lines of script served by this test on a port of its own
// (http://127.0.0.1:PORT, a secure context, so Web Crypto makes the PKCE challenge);
// Gatehouse is http://localhost:PORT, another origin. The public client is registered
// with `gatehouse clients create --kind public --cors-origin …`, the user with
// `gatehouse users create`, as an administrator would.
//
// The server log and a screenshot of the app's result land in
// e2e/artifacts/spa-cors/ (not committed).

import assert from 'node:assert/strict';
import dns from 'node:dns';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import { journeySteps, submit } from './lib/journey.js';
import { closeAll, openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'spa-cors');
const EMAIL = 'katherine.johnson@example.com';
const PASSWORD = 'orbit-lantern-velvet-73-harbor';

dns.setDefaultResultOrder('ipv4first');

describe('a browser app on another origin (CORS)', { timeout: 180_000 }, () => {
  let smtp;
  let server;
  let spa;
  let browser;
  let page;
  let problems = [];
  let clientId;
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  before(async () => {
    ({ smtp, server, browser, page, problems } = await openStage({ artifacts: ARTIFACTS }));
    spa = await startSpa(() => ({ issuer: server.baseUrl, clientId }));
  });

  after(() => closeAll([browser?.close(), server?.stop(), smtp?.close(), spa?.close()]));

  step('the operator registers the app with its web origin, and a user', async () => {
    const created = await server.cli([
      'clients', 'create',
      '--name', 'Mission Planner',
      '--kind', 'public',
      '--redirect-uri', `${spa.origin}/callback`,
      '--cors-origin', spa.origin,
      '--grant', 'authorization_code', '--grant', 'refresh_token',
      '--scope', 'openid', '--scope', 'profile', '--scope', 'email',
    ]);
    clientId = created.match(/^client_id:\s*(\S+)/m)?.[1];
    assert.ok(clientId, `a client_id in:\n${created}`);
    assert.doesNotMatch(created, /client_secret:/, 'a public client has no secret');
    await server.cli(
      ['users', 'create', '--email', EMAIL, '--given-name', 'Katherine', '--verified', '--password-stdin', '--operator', 'e2e'],
      { input: `${PASSWORD}\n` },
    );
  });

  step('the app signs the user in with code + PKCE and calls token, UserInfo and revocation with fetch', async () => {
    await page.goto(`${spa.origin}/`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/signin');
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL((u) => u.pathname === '/authorize');
    await page.getByRole('button', { name: 'Allow', exact: true }).click();
    await page.waitForURL((u) => u.origin === spa.origin && u.pathname === '/callback');
    const result = page.locator('#result');
    await result.waitFor();
    await page.waitForFunction(() => document.querySelector('#result')?.dataset.done === 'yes');
    const outcome = JSON.parse(await result.innerText());
    await page.screenshot({ path: path.join(ARTIFACTS, 'app.png'), fullPage: true });
    assert.equal(outcome.error, undefined, JSON.stringify(outcome));
    assert.equal(outcome.token.status, 200, JSON.stringify(outcome.token));
    assert.ok(outcome.token.access_token && outcome.token.id_token, 'tokens readable by the page');
    assert.equal(outcome.userinfo.status, 200);
    assert.equal(outcome.userinfo.email, EMAIL);
    assert.equal(outcome.userinfo.given_name, 'Katherine');
    assert.equal(outcome.revoke.status, 200);
    assert.equal(outcome.afterRevoke.status, 401, 'UserInfo refuses the revoked token, and the page can read why');
    assert.match(outcome.afterRevoke.challenge ?? '', /invalid_token/);
    // That refusal is the one failed request the app makes on purpose.
    const expected = `fetch ${server.baseUrl}/userinfo answered 401`;
    assert.deepEqual(problems.filter((p) => p !== expected), []);
  });

  step('the same page from an origin nobody registered cannot read the token endpoint', async () => {
    const blockedProblems = [];
    page.removeAllListeners('console');
    page.on('console', (m) => blockedProblems.push(m.text()));
    await page.goto(`${spa.otherOrigin}/probe`);
    await page.waitForFunction(() => document.querySelector('#result')?.dataset.done === 'yes');
    const outcome = JSON.parse(await page.locator('#result').innerText());
    assert.equal(outcome.blocked, true, JSON.stringify(outcome));
    assert.ok(
      blockedProblems.some((text) => /CORS|Access-Control-Allow-Origin/i.test(text)),
      `the browser names CORS as the reason: ${blockedProblems.join(' | ')}`,
    );
    // Discovery is public: any origin may read it.
    assert.equal(outcome.discovery, 200);
  });
});

/**
 * The app: `/` starts the flow, `/callback` finishes it, `/probe` tries the token
 * endpoint. Served on 127.0.0.1 (the registered origin) and reachable as localhost
 * (another origin, registered by no one).
 */
async function startSpa(settings) {
  const page = (script) => `<!doctype html><html lang="en"><meta charset="utf-8"><title>Mission Planner</title>
<main><h1>Mission Planner</h1><button id="start" type="button">Sign in</button><pre id="result"></pre></main>
<script type="module">
const { issuer, clientId } = ${JSON.stringify(settings())};
const redirectUri = location.origin + '/callback';
const result = document.querySelector('#result');
const show = (value) => { result.textContent = JSON.stringify(value); result.dataset.done = 'yes'; };
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
${script}
</script></html>`;

  const start = `
document.querySelector('#start').addEventListener('click', async () => {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('pkce', JSON.stringify({ verifier, state }));
  const url = new URL(issuer + '/authorize');
  url.search = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri,
    scope: 'openid profile email', state, nonce: state, code_challenge: challenge, code_challenge_method: 'S256' });
  location.assign(url);
});`;

  const callback = `
try {
  const { verifier, state } = JSON.parse(sessionStorage.getItem('pkce'));
  const params = new URLSearchParams(location.search);
  if (params.get('state') !== state) throw new Error('state mismatch');
  const form = (fields) => ({ method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });
  const tokenResponse = await fetch(issuer + '/oauth2/token', form({ grant_type: 'authorization_code', code: params.get('code'),
    redirect_uri: redirectUri, client_id: clientId, code_verifier: verifier }));
  const token = { status: tokenResponse.status, ...(await tokenResponse.json()) };
  const userinfo = async () => {
    const r = await fetch(issuer + '/userinfo', { headers: { Authorization: 'Bearer ' + token.access_token } });
    return { status: r.status, challenge: r.headers.get('WWW-Authenticate'), ...(r.ok ? await r.json() : {}) };
  };
  const before = await userinfo();
  const revoke = await fetch(issuer + '/oauth2/revoke', form({ token: token.access_token, client_id: clientId }));
  show({ token, userinfo: before, revoke: { status: revoke.status }, afterRevoke: await userinfo() });
} catch (error) {
  show({ error: String(error) });
}`;

  const probe = `
const outcome = {};
try {
  await fetch(issuer + '/oauth2/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x', client_id: clientId }) });
  outcome.blocked = false;
} catch (error) {
  outcome.blocked = error instanceof TypeError;
}
outcome.discovery = (await fetch(issuer + '/.well-known/openid-configuration')).status;
show(outcome);`;

  const pages = { '/': start, '/callback': callback, '/probe': probe };
  const spa = http.createServer((req, res) => {
    const script = pages[new URL(req.url, 'http://x').pathname];
    if (script === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page(script));
  });
  await new Promise((resolve) => spa.listen(0, '127.0.0.1', resolve));
  const { port } = spa.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    otherOrigin: `http://localhost:${port}`,
    close: () => new Promise((resolve) => spa.close(resolve)),
  };
}
