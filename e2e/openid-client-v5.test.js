// The older generation of relying parties: openid-client v5 (the library under
// NextAuth v4 and many Express apps), which expects RS256 ID tokens unless a client
// says otherwise — OpenID Connect Dynamic Client Registration's default. A client
// registered without `--id-token-alg` must work with it unchanged: discovery, code +
// PKCE with state and nonce, ID-token validation, UserInfo, refresh, introspection of
// the refresh token by its own client, and revocation.
//
// The server log lands in e2e/artifacts/openid-client-v5/ (not committed).

import assert from 'node:assert/strict';
import dns from 'node:dns';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Issuer, custom, generators } from 'openid-client-v5';

import { journeySteps, submit } from './lib/journey.js';
import { cliCredentials, startCallbackServer, waitForCallback } from './lib/relying-party.js';
import { closeAll, openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'openid-client-v5');
const EMAIL = 'dorothy.vaughan@example.com';
const PASSWORD = 'fortran-willow-signal-64-ember';
const SCOPE = 'openid profile email offline_access';

dns.setDefaultResultOrder('ipv4first');
custom.setHttpOptionsDefaults({ timeout: 10_000 });

describe('openid-client v5 (RS256 by default)', { timeout: 180_000 }, () => {
  let smtp;
  let server;
  let callback;
  let browser;
  let page;
  let problems = [];
  let client;
  let redirectUri;
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  before(async () => {
    ({ smtp, server, browser, page, problems } = await openStage({ artifacts: ARTIFACTS }));
    callback = await startCallbackServer();
  });

  after(() => closeAll([browser?.close(), server?.stop(), smtp?.close(), callback?.close()]));

  step('registers a client that names no ID-token algorithm, and a user', async () => {
    redirectUri = `http://localhost:${callback.port}/callback`;
    const created = await server.cli([
      'clients', 'create',
      '--name', 'Punch Card Archive',
      '--redirect-uri', redirectUri,
      '--grant', 'authorization_code', '--grant', 'refresh_token',
      ...SCOPE.split(' ').flatMap((s) => ['--scope', s]),
    ]);
    const { clientId, clientSecret } = cliCredentials(created);
    await server.cli(
      ['users', 'create', '--email', EMAIL, '--given-name', 'Dorothy', '--verified', '--password-stdin', '--operator', 'e2e'],
      { input: `${PASSWORD}\n` },
    );
    const issuer = await Issuer.discover(server.baseUrl);
    assert.equal(issuer.issuer, server.baseUrl);
    // v5's own defaults: client_secret_basic and RS256 ID tokens.
    client = new issuer.Client({ client_id: clientId, client_secret: clientSecret, redirect_uris: [redirectUri], response_types: ['code'] });
  });

  let tokens;

  step('signs in, and the library accepts the ID token', async () => {
    const verifier = generators.codeVerifier();
    const state = generators.state();
    const nonce = generators.nonce();
    const url = client.authorizationUrl({
      scope: SCOPE,
      code_challenge: generators.codeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const arrived = callback.next();
    await page.goto(url);
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Sign in', exact: true }));
    await page.waitForURL((u) => u.pathname === '/authorize');
    await page.getByRole('button', { name: 'Allow', exact: true }).click();
    const received = await waitForCallback(arrived, page, problems);
    const params = client.callbackParams(received.href);
    tokens = await client.callback(redirectUri, params, { code_verifier: verifier, state, nonce });
    const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString('utf8'));
    assert.equal(header.alg, 'RS256');
    const claims = tokens.claims();
    assert.equal(claims.iss, server.baseUrl);
    assert.equal(claims.aud, client.client_id);
    assert.equal(claims.email, EMAIL);
    assert.equal(claims.given_name, 'Dorothy');
  });

  step('UserInfo, refresh token introspection, refresh and revocation', async () => {
    const userinfo = await client.userinfo(tokens);
    assert.equal(userinfo.email, EMAIL);

    const introspected = await client.introspect(tokens.refresh_token, 'refresh_token');
    assert.equal(introspected.active, true);
    assert.equal(introspected.client_id, client.client_id);
    assert.equal(introspected.sub, tokens.claims().sub);
    assert.deepEqual(new Set(introspected.scope.split(' ')), new Set(SCOPE.split(' ')));
    assert.ok(introspected.exp > Date.now() / 1000, 'exp in the future');

    const refreshed = await client.refresh(tokens.refresh_token);
    assert.ok(refreshed.access_token && refreshed.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated');
    assert.equal((await client.introspect(tokens.refresh_token, 'refresh_token')).active, false, 'the spent token');

    await client.revoke(refreshed.refresh_token, 'refresh_token');
    assert.equal((await client.introspect(refreshed.refresh_token, 'refresh_token')).active, false, 'the revoked token');
    assert.deepEqual(problems, []);
  });
});
