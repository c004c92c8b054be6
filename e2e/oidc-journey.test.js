// Gatehouse as seen by an OpenID Connect client we did not write: panva's
// `openid-client` (certified OpenID Relying Party library) against a real server,
// with the sign-in done by a person's browser on the themed pages:
//
//   discovery → authorization code + PKCE (S256), state, nonce; sign-in and consent in
//   headless Chromium → code exchange with ID-token validation (signature via JWKS,
//   iss, aud, nonce, RFC 9207 `iss` in the response) → UserInfo → refresh (rotation)
//   → introspection → revocation → introspection inactive; refresh-token reuse and
//   code replay revoke the grant; client_credentials with an RFC 9068 access token.
//
// The user signs up through the pages (as in the account journey); the OAuth clients
// are registered with `gatehouse clients create`, as an administrator would.
//
// The consent page screenshot, the server log and the verification mail land in
// e2e/artifacts/oidc-journey/ (not committed; CI keeps them as artifacts).

import assert from 'node:assert/strict';
import { createHash, webcrypto } from 'node:crypto';
import dns from 'node:dns';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as oidc from 'openid-client';

import { escapeRegExp, journeySteps, submit } from './lib/journey.js';
import { cliCredentials, startCallbackServer, waitForCallback } from './lib/relying-party.js';
import { linksIn } from './lib/smtp.js';
import { closeAll, openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'oidc-journey');

const EMAIL = 'grace.hopper@example.com';
const GIVEN_NAME = 'Grace';
const FAMILY_NAME = 'Hopper';
const PASSWORD = 'cobalt-meadow-prism-58-anchor';
const CLIENT_NAME = 'Compiler Notes';
const SCOPE = 'openid profile email offline_access';
const API = 'https://api.example.com';
// What the consent page says for each scope of SCOPE (web/i18n/en.toml, `scope.*`).
const SCOPE_WORDS = {
  openid: 'Your sign-in with this account (a user id for you)',
  profile: 'Your name and profile details',
  email: 'Your email address',
  offline_access: 'Access while you are not using the app (it stays signed in)',
};
const API_SCOPE = 'reports:read';

// The server listens on 127.0.0.1 only, while the issuer (and so every URL the library
// uses, since `iss` is compared exactly) is http://localhost:PORT. Node may resolve
// `localhost` to ::1 first; ask for the IPv4 address first instead.
dns.setDefaultResultOrder('ipv4first');

describe('OpenID Connect journey with openid-client', { timeout: 240_000 }, () => {
  let smtp;
  let server;
  let callback;
  let browser;
  let page;
  let problems = [];
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  before(async () => {
    ({ smtp, server, browser, page, problems } = await openStage({ artifacts: ARTIFACTS }));
    callback = await startCallbackServer();
  });

  after(() => closeAll([browser?.close(), server?.stop(), smtp?.close(), callback?.close()]));

  // The relying party: a confidential web application and a machine client.
  let app; // { clientId, clientSecret, redirectUri }
  let machine; // { clientId, clientSecret }
  let config; // openid-client Configuration for `app`

  /**
   * Runs an authorization request in the browser: `signIn` and `consent` say which of
   * the two pages must appear on the way (anything else fails); `extra` adds request
   * parameters. Resolves with what the client's redirect URI received and the checks
   * the client keeps for the exchange.
   */
  const authorize = async ({ signIn, consent, extra = {} }) => {
    const checks = {
      pkceCodeVerifier: oidc.randomPKCECodeVerifier(),
      expectedState: oidc.randomState(),
      expectedNonce: oidc.randomNonce(),
      idTokenExpected: true,
    };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: app.redirectUri,
      scope: SCOPE,
      code_challenge: await oidc.calculatePKCECodeChallenge(checks.pkceCodeVerifier),
      code_challenge_method: 'S256',
      state: checks.expectedState,
      nonce: checks.expectedNonce,
      ...extra,
    });
    const arrived = callback.next();
    await page.goto(url.href);
    if (signIn) {
      assert.equal(new URL(page.url()).pathname, '/signin', 'the authorization request asks the user to sign in');
      await page.getByRole('heading', { name: /sign in/i }).waitFor();
      await assertThemed(page);
      await page.getByLabel('Email', { exact: true }).fill(EMAIL);
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      const button = page.getByRole('button', { name: 'Sign in', exact: true });
      // Without a consent page the answer to the form is a redirect to the client.
      await (consent ? submit(button) : button.click());
    }
    if (consent) {
      await page.waitForURL((u) => u.pathname === '/authorize');
      const heading = page.getByRole('heading', { level: 1 });
      assert.match(await heading.innerText(), new RegExp(escapeRegExp(CLIENT_NAME)), 'the consent page names the client');
      const listed = await page.locator('main li').allInnerTexts();
      assert.deepEqual(
        listed.map((s) => s.trim()),
        SCOPE.split(' ').map((scope) => SCOPE_WORDS[scope]),
        'the consent page describes the requested scopes in words',
      );
      await assertThemed(page);
      await page.screenshot({ path: path.join(ARTIFACTS, 'consent.png'), fullPage: true });
      // Not `submit`: the answer is a redirect to the client, which the browser may
      // refuse to follow (a console error then says why; see waitForCallback).
      await page.getByRole('button', { name: 'Allow', exact: true }).click();
    }
    const received = await waitForCallback(arrived, page, problems);
    return { received, checks };
  };

  step('signs up and verifies the email address', async () => {
    await page.goto('/signup');
    await page.getByLabel('Email', { exact: true }).fill(EMAIL);
    await page.getByLabel('Given name').fill(GIVEN_NAME);
    await page.getByLabel('Family name').fill(FAMILY_NAME);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await submit(page.getByRole('button', { name: 'Create account' }));
    await page.getByRole('heading', { name: /check your email/i }).waitFor();
    const mail = await smtp.waitForMessage((m) => m.to.includes(EMAIL));
    await writeFile(path.join(ARTIFACTS, 'verification.eml'), mail.raw, 'latin1');
    const verifyLink = linksIn(mail.raw).find((link) => link.startsWith(`${server.baseUrl}/verify?token=`));
    assert.ok(verifyLink, 'a verification link in the mail');
    const response = await page.goto(verifyLink);
    assert.equal(response.status(), 200, `GET ${verifyLink}`);
  });

  step('registers a web application and a machine client with the CLI', async () => {
    const redirectUri = `http://localhost:${callback.port}/callback`;
    const created = await server.cli([
      'clients', 'create',
      '--name', CLIENT_NAME,
      '--redirect-uri', redirectUri,
      '--grant', 'authorization_code', '--grant', 'refresh_token',
      ...SCOPE.split(' ').flatMap((s) => ['--scope', s]),
    ]);
    app = { ...cliCredentials(created), redirectUri };
    const machineOut = await server.cli([
      'clients', 'create',
      '--name', 'Nightly report job',
      '--grant', 'client_credentials',
      '--scope', API_SCOPE,
      '--audience', API,
    ]);
    machine = cliCredentials(machineOut);
    assert.notEqual(app.clientId, machine.clientId);
  });

  step('discovers the provider', async () => {
    config = await discover(server.baseUrl, app);
    const metadata = config.serverMetadata();
    assert.equal(metadata.issuer, server.baseUrl);
    assert.ok(config.serverMetadata().supportsPKCE(), 'S256 is advertised');
    assert.equal(metadata.authorization_response_iss_parameter_supported, true);
    for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint']) {
      assert.ok(metadata[endpoint]?.startsWith(`${server.baseUrl}/`), `${endpoint} on the issuer: ${metadata[endpoint]}`);
    }
  });

  step('client_credentials: an RFC 9068 access token for the API, signed by a key in the JWKS', async () => {
    const machineConfig = await discover(server.baseUrl, machine);
    const granted = await oidc.clientCredentialsGrant(machineConfig, { scope: API_SCOPE });
    assert.equal(granted.token_type.toLowerCase(), 'bearer');
    assert.equal(granted.refresh_token, undefined, 'no refresh token for client_credentials');
    assert.equal(granted.id_token, undefined, 'no ID token without a user');

    const header = jwtPart(granted.access_token, 0);
    assert.equal(header.typ.toLowerCase().replace(/^application\//, ''), 'at+jwt', 'RFC 9068 §2.1 typ');
    const payload = jwtPart(granted.access_token, 1);
    assert.equal(payload.iss, server.baseUrl);
    assert.equal(payload.sub, machine.clientId);
    assert.equal(payload.client_id, machine.clientId);
    assert.deepEqual([payload.aud].flat(), [API]);
    assert.equal(payload.scope, API_SCOPE);
    assert.ok(payload.jti && payload.iat && payload.exp > payload.iat, 'jti, iat, exp');
    await verifyWithJwks(granted.access_token, machineConfig.serverMetadata().jwks_uri);

    const answer = await oidc.tokenIntrospection(machineConfig, granted.access_token);
    assert.equal(answer.active, true);
    assert.equal(answer.client_id, machine.clientId);
    assert.equal(answer.scope, API_SCOPE);
  });

  let first; // what the first authorization produced
  let tokens;
  let claims;

  step('signs in on the themed page, approves the consent page, and the client gets a code', async () => {
    first = await authorize({ signIn: true, consent: true });
    const params = first.received.searchParams;
    assert.ok(params.get('code'), `a code in ${first.received}`);
    assert.equal(params.get('state'), first.checks.expectedState);
    assert.equal(params.get('iss'), server.baseUrl, 'RFC 9207 iss parameter');
  });

  step('exchanges the code; the library validates the ID token', async () => {
    tokens = await oidc.authorizationCodeGrant(config, first.received, first.checks);
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.ok(tokens.access_token && tokens.refresh_token && tokens.id_token);
    assert.ok(tokens.expiresIn() > 0, 'expires_in');
    assert.deepEqual(new Set(tokens.scope.split(' ')), new Set(SCOPE.split(' ')));
    claims = tokens.claims();
    assert.equal(claims.iss, server.baseUrl);
    assert.equal(claims.aud, app.clientId);
    assert.equal(claims.nonce, first.checks.expectedNonce);
    assert.ok(claims.sub, 'sub');
    assert.equal(claims.email, EMAIL);
    assert.equal(claims.email_verified, true);
    assert.equal(claims.given_name, GIVEN_NAME);
    assert.equal(claims.family_name, FAMILY_NAME);
    assert.ok(claims.acr, 'acr');
    assert.equal(typeof claims.auth_time, 'number', 'auth_time');
    assert.ok(Math.abs(claims.auth_time - Date.now() / 1000) < 300, `auth_time ${claims.auth_time} is the sign-in just done`);
    // OIDC Core §3.1.3.8: at_hash is the left half of the access token's SHA-256.
    const digest = createHash('sha256').update(tokens.access_token).digest();
    assert.equal(claims.at_hash, digest.subarray(0, 16).toString('base64url'), 'at_hash');
    // The client named no algorithm: OpenID Connect's registration default, RS256.
    const header = jwtPart(tokens.id_token, 0);
    assert.equal(header.alg, 'RS256');
  });

  step('reads UserInfo with the access token', async () => {
    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(userinfo.sub, claims.sub);
    assert.equal(userinfo.email, EMAIL);
    assert.equal(userinfo.email_verified, true);
    assert.equal(userinfo.given_name, GIVEN_NAME);
    assert.equal(userinfo.family_name, FAMILY_NAME);
  });

  let refreshed;

  step('refreshes: a new access token and a new (rotated) refresh token', async () => {
    refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
    assert.ok(refreshed.access_token);
    assert.notEqual(refreshed.access_token, tokens.access_token);
    assert.ok(refreshed.refresh_token, 'a new refresh token');
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    if (refreshed.id_token) {
      // OIDC Core §12.2: the same iss and sub as the original ID token (checked by the library too).
      assert.equal(refreshed.claims().sub, claims.sub);
      assert.equal(refreshed.claims().iss, claims.iss);
    }
  });

  step('introspection: the refreshed access token is active', async () => {
    const answer = await oidc.tokenIntrospection(config, refreshed.access_token, { token_type_hint: 'access_token' });
    assert.equal(answer.active, true);
    assert.equal(answer.client_id, app.clientId);
    assert.equal(answer.sub, claims.sub);
    assert.equal(answer.iss, server.baseUrl);
    assert.deepEqual(new Set(answer.scope.split(' ')), new Set(SCOPE.split(' ')));
    assert.ok(answer.exp > Date.now() / 1000, 'exp in the future');
  });

  step('revoking the access token makes it inactive and refused by UserInfo', async () => {
    await oidc.tokenRevocation(config, refreshed.access_token, { token_type_hint: 'access_token' });
    const answer = await oidc.tokenIntrospection(config, refreshed.access_token);
    assert.equal(answer.active, false);
    await assert.rejects(oidc.fetchUserInfo(config, refreshed.access_token, claims.sub), (err) => {
      assert.ok(err instanceof oidc.WWWAuthenticateChallengeError, `a WWW-Authenticate challenge, got ${err}`);
      assert.equal(err.status, 401);
      assert.equal(err.cause[0]?.parameters.error, 'invalid_token');
      return true;
    });
  });

  step('revoking the refresh token ends the grant', async () => {
    await oidc.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    await assertInvalidGrant(oidc.refreshTokenGrant(config, refreshed.refresh_token), 'the revoked refresh token');
    const answer = await oidc.tokenIntrospection(config, tokens.access_token);
    assert.equal(answer.active, false, 'the first access token of the grant is inactive too');
    // Also the refresh token that was rotated away before.
    await assertInvalidGrant(oidc.refreshTokenGrant(config, tokens.refresh_token), 'the rotated refresh token');
  });

  step('a second authorization needs neither sign-in nor consent; replaying its code fails and revokes', async () => {
    const second = await authorize({ signIn: false, consent: false });
    const again = await oidc.authorizationCodeGrant(config, second.received, second.checks);
    assert.equal(again.claims().sub, claims.sub);
    assert.equal(again.claims().auth_time, claims.auth_time, 'the same sign-in: the same auth_time');
    assert.equal((await oidc.tokenIntrospection(config, again.access_token)).active, true);
    // RFC 6749 §4.1.2: a code is single use; a second use SHOULD revoke what it issued.
    await assertInvalidGrant(oidc.authorizationCodeGrant(config, second.received, second.checks), 'the replayed code');
    assert.equal((await oidc.tokenIntrospection(config, again.access_token)).active, false, 'tokens of the replayed code revoked');
  });

  step('presenting a rotated refresh token again revokes the grant (reuse detection)', async () => {
    const third = await authorize({ signIn: false, consent: false });
    const issued = await oidc.authorizationCodeGrant(config, third.received, third.checks);
    const next = await oidc.refreshTokenGrant(config, issued.refresh_token);
    assert.equal((await oidc.tokenIntrospection(config, next.access_token)).active, true);
    // RFC 9700 §4.14.2: the old refresh token is refused, and the grant (all its tokens) revoked.
    await assertInvalidGrant(oidc.refreshTokenGrant(config, issued.refresh_token), 'the rotated refresh token');
    assert.equal((await oidc.tokenIntrospection(config, next.access_token)).active, false, 'the newer access token is revoked');
    await assertInvalidGrant(oidc.refreshTokenGrant(config, next.refresh_token), 'the newer refresh token');
  });

  step('prompt=login: signs in again and goes straight back to the client (consent remembered)', async () => {
    const fourth = await authorize({ signIn: true, consent: false, extra: { prompt: 'login' } });
    const issued = await oidc.authorizationCodeGrant(config, fourth.received, fourth.checks);
    assert.equal(issued.claims().sub, claims.sub);
    assert.ok(issued.claims().auth_time >= claims.auth_time, 'auth_time of the new sign-in');
  });

  step('no page showed a console error or a broken subresource', async () => {
    assert.deepEqual(problems, []);
  });
});

/**
 * openid-client for one registered client, configured by discovery from the issuer.
 * The library refuses plain-http endpoints unless told otherwise; the test server is
 * on http://localhost (a loopback address, no TLS in the test), so this configuration
 * allows them. Never do this against a real provider.
 */
async function discover(issuer, { clientId, clientSecret }) {
  return oidc.discovery(new URL(issuer), clientId, undefined, oidc.ClientSecretBasic(clientSecret), {
    execute: [oidc.allowInsecureRequests],
  });
}


/** The sign-in and consent pages come with the theme's stylesheet, applied. */
async function assertThemed(page) {
  const themed = await page.evaluate(() =>
    [...document.styleSheets].some((sheet) => sheet.href?.endsWith('/style.css') && sheet.cssRules.length > 0),
  );
  assert.ok(themed, `the theme stylesheet is loaded on ${page.url()}`);
}

async function assertInvalidGrant(promise, what) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof oidc.ResponseBodyError, `${what}: an OAuth error response, got ${err}`);
    assert.equal(err.status, 400, `${what}: HTTP status`);
    assert.equal(err.error, 'invalid_grant', `${what}: ${err.error}: ${err.error_description}`);
    return true;
  }, `${what} is refused`);
}

/** Header (0) or payload (1) of a JWS compact serialisation. */
function jwtPart(jwt, index) {
  return JSON.parse(Buffer.from(jwt.split('.')[index], 'base64url').toString('utf8'));
}

/** Checks a JWS signature against the issuer's JWKS with WebCrypto (no JOSE library). */
async function verifyWithJwks(jwt, jwksUri) {
  const [headerPart, payloadPart, signaturePart] = jwt.split('.');
  const header = jwtPart(jwt, 0);
  const response = await fetch(jwksUri);
  assert.equal(response.status, 200, `GET ${jwksUri}`);
  const { keys } = await response.json();
  const jwk = keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} is in the JWKS (kids: ${keys.map((k) => k.kid).join(', ')})`);
  const algorithms = {
    ES256: { import: { name: 'ECDSA', namedCurve: 'P-256' }, verify: { name: 'ECDSA', hash: 'SHA-256' } },
    EdDSA: { import: { name: 'Ed25519' }, verify: { name: 'Ed25519' } },
    Ed25519: { import: { name: 'Ed25519' }, verify: { name: 'Ed25519' } },
  };
  const alg = algorithms[header.alg];
  assert.ok(alg, `a signature algorithm this check knows: ${header.alg}`);
  const { d: _private, ...publicJwk } = jwk;
  assert.equal(_private, undefined, 'the JWKS holds no private key material');
  const key = await webcrypto.subtle.importKey('jwk', publicJwk, alg.import, false, ['verify']);
  const valid = await webcrypto.subtle.verify(
    alg.verify,
    key,
    Buffer.from(signaturePart, 'base64url'),
    Buffer.from(`${headerPart}.${payloadPart}`, 'ascii'),
  );
  assert.ok(valid, 'the signature verifies with the JWKS key');
}
