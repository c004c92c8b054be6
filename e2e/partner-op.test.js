// The partner OpenID Provider that federation tests sign in through (lib/partner-op.js),
// checked on its own, without Gatehouse: its discovery document and keys, then a
// person's sign-in on its pages in headless Chromium for panva's `openid-client`
// (authorization code + PKCE, state, nonce, RFC 9207 `iss`), the ID token's claims
// and acr, and RP-initiated logout. A second provider shows the consent page.
//
// A failing step's screenshot lands in e2e/artifacts/partner-op/ (not committed).

import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as oidc from 'openid-client';

import { launchChromium, watchForProblems } from './lib/browser.js';
import { journeySteps, submit } from './lib/journey.js';
import { PARTNER_ACR_VALUES, startPartnerOp } from './lib/partner-op.js';
import { startCallbackServer, waitForCallback } from './lib/relying-party.js';
import { closeAll } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'partner-op');
const SCOPE = 'openid email profile groups';
const USERS = {
  katherine: {
    email: 'katherine.johnson@partner.example',
    email_verified: true,
    name: 'Katherine Johnson',
    given_name: 'Katherine',
    family_name: 'Johnson',
    groups: ['flight-research', 'analysts'],
  },
};

/** A browser page of its own, and the problems seen on it. */
async function openPage(browser) {
  const context = await browser.newContext({ locale: 'en-GB' });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(20_000);
  const problems = watchForProblems(page);
  // The partner's pages are oidc-provider's, which import a web font from a public
  // host unless lib/partner-op.js strips it: nothing may leave the machine.
  page.on('request', (request) => {
    const { hostname } = new URL(request.url());
    if (!['127.0.0.1', 'localhost'].includes(hostname)) problems.push(`request off the machine: ${request.url()}`);
  });
  return { page, problems };
}

/**
 * openid-client for the partner's `gatehouse` client. The partner is on plain http
 * (loopback, no TLS in the test), which the library refuses unless told.
 */
function discover(op) {
  return oidc.discovery(new URL(op.issuer), op.clientId, undefined, oidc.ClientSecretBasic(op.clientSecret), {
    execute: [oidc.allowInsecureRequests],
  });
}

/** An authorization request's URL and the checks the client keeps for the exchange. */
async function authorizationRequest(config, redirectUri, extra = {}) {
  const checks = {
    pkceCodeVerifier: oidc.randomPKCECodeVerifier(),
    expectedState: oidc.randomState(),
    expectedNonce: oidc.randomNonce(),
    idTokenExpected: true,
  };
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(checks.pkceCodeVerifier),
    code_challenge_method: 'S256',
    state: checks.expectedState,
    nonce: checks.expectedNonce,
    ...extra,
  });
  return { url, checks };
}

/** The partner's sign-in page: any login name, any password. */
async function signInAtPartner(page, login) {
  await page.getByRole('heading', { name: 'Sign-in' }).waitFor();
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any password will do');
  return page.getByRole('button', { name: 'Sign-in', exact: true });
}

/**
 * The next request to the client's `pathname`. Chromium asks the client's origin for
 * /favicon.ico after a callback page has loaded, sometimes only once the next step
 * has begun waiting: that request is not the redirect.
 */
async function nextAt(callback, pathname) {
  for (;;) {
    const url = await callback.next();
    if (url.pathname === pathname) return url;
  }
}

function jwtHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));
}

before(async () => {
  await rm(ARTIFACTS, { recursive: true, force: true });
  await mkdir(ARTIFACTS, { recursive: true });
});

describe('partner OP: sign-in without a consent page, claims in the ID token, logout', { timeout: 120_000 }, () => {
  let callback;
  let op;
  let browser;
  let page;
  let problems = [];
  let config;
  let redirectUri;
  let postLogoutRedirectUri;
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page }) });

  before(async () => {
    callback = await startCallbackServer();
    redirectUri = `http://localhost:${callback.port}/callback`;
    postLogoutRedirectUri = `http://localhost:${callback.port}/signed-out`;
    op = await startPartnerOp({ redirectUris: [redirectUri], postLogoutRedirectUris: [postLogoutRedirectUri], clientSecret: 'partner-secret-for-tests', users: USERS });
    browser = await launchChromium();
    ({ page, problems } = await openPage(browser));
  });

  after(() => closeAll([browser?.close(), op?.close(), callback?.close()]));

  step('publishes its discovery document and signing key', async () => {
    assert.match(op.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(op.clientId, 'gatehouse');
    assert.equal(op.clientSecret, 'partner-secret-for-tests');
    const response = await fetch(`${op.issuer}/.well-known/openid-configuration`);
    assert.equal(response.status, 200);
    const metadata = await response.json();
    assert.equal(metadata.issuer, op.issuer);
    assert.deepEqual(metadata.response_types_supported, ['code']);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(metadata.acr_values_supported, [...PARTNER_ACR_VALUES]);
    assert.deepEqual(metadata.id_token_signing_alg_values_supported, ['RS256']);
    for (const scope of SCOPE.split(' ')) assert.ok(metadata.scopes_supported.includes(scope), `scope ${scope}`);
    for (const claim of ['email', 'email_verified', 'name', 'given_name', 'family_name', 'groups', 'acr']) {
      assert.ok(metadata.claims_supported.includes(claim), `claim ${claim}`);
    }
    assert.ok(metadata.end_session_endpoint, 'end_session_endpoint');

    const jwks = await (await fetch(metadata.jwks_uri)).json();
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.equal(key.kty, 'RSA');
    assert.equal(key.alg, 'RS256');
    assert.ok(key.kid, 'kid');
    assert.equal(key.d, undefined, 'no private part published');

    config = await discover(op);
  });

  step('refuses an authorization request without PKCE', async () => {
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: SCOPE, state: oidc.randomState() });
    const arrived = nextAt(callback, '/callback');
    await page.goto(url.href);
    const received = await waitForCallback(arrived, page, problems);
    assert.equal(received.searchParams.get('error'), 'invalid_request', `${received}`);
    assert.match(received.searchParams.get('error_description'), /PKCE/);
  });

  let tokens;

  step('signs in on the partner page and the client gets an ID token with the claims', async () => {
    const { url, checks } = await authorizationRequest(config, redirectUri);
    const arrived = nextAt(callback, '/callback');
    await page.goto(url.href);
    // No consent page: the answer to the form is the redirect to the client.
    await (await signInAtPartner(page, 'katherine')).click();
    const received = await waitForCallback(arrived, page, problems);
    assert.equal(received.searchParams.get('iss'), op.issuer, 'RFC 9207 iss parameter');

    tokens = await oidc.authorizationCodeGrant(config, received, checks);
    assert.equal(jwtHeader(tokens.id_token).alg, 'RS256');
    const claims = tokens.claims();
    assert.equal(claims.iss, op.issuer);
    assert.equal(claims.aud, 'gatehouse');
    assert.equal(claims.sub, 'katherine');
    assert.equal(claims.nonce, checks.expectedNonce);
    assert.equal(claims.email, USERS.katherine.email);
    assert.equal(claims.email_verified, true);
    assert.equal(claims.name, 'Katherine Johnson');
    assert.equal(claims.given_name, 'Katherine');
    assert.equal(claims.family_name, 'Johnson');
    assert.deepEqual(claims.groups, ['flight-research', 'analysts']);
    assert.equal(claims.acr, 'urn:partner:pwd', 'no acr_values asked: password');
    assert.deepEqual(claims.amr, ['pwd']);
    assert.equal(typeof claims.auth_time, 'number', 'auth_time');

    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(userinfo.email, USERS.katherine.email);
    assert.deepEqual(userinfo.groups, USERS.katherine.groups);
  });

  step('asks no one again while the partner session lasts, and honours acr_values', async () => {
    const { url, checks } = await authorizationRequest(config, redirectUri, { acr_values: 'urn:partner:mfa' });
    const arrived = nextAt(callback, '/callback');
    await page.goto(url.href);
    // The sign-in page would show up here if the session did not satisfy the request.
    const received = await waitForCallback(arrived, page, problems);
    const claims = (await oidc.authorizationCodeGrant(config, received, checks)).claims();
    assert.equal(claims.sub, 'katherine');
    // acr is the session's: the earlier sign-in was with a password. Only a new sign-in
    // (prompt=login, or max_age) is made with the acr asked for.
    assert.equal(claims.acr, 'urn:partner:pwd');

    const again = await authorizationRequest(config, redirectUri, { acr_values: 'urn:partner:mfa', prompt: 'login' });
    const arrivedAgain = nextAt(callback, '/callback');
    await page.goto(again.url.href);
    await (await signInAtPartner(page, 'katherine')).click();
    const stepped = (await oidc.authorizationCodeGrant(config, await waitForCallback(arrivedAgain, page, problems), again.checks)).claims();
    assert.equal(stepped.acr, 'urn:partner:mfa');
    assert.deepEqual(stepped.amr, ['pwd', 'otp']);
  });

  step('signs out at the partner and returns to the post-logout redirect URI', async () => {
    const state = oidc.randomState();
    const url = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: postLogoutRedirectUri, state });
    const arrived = nextAt(callback, '/signed-out');
    await page.goto(url.href);
    await page.getByRole('button', { name: 'Yes, sign me out', exact: true }).click();
    const received = await waitForCallback(arrived, page, problems);
    assert.equal(received.pathname, '/signed-out');
    assert.equal(received.searchParams.get('state'), state);

    // Signed out: the next authorization asks for a sign-in again.
    const { url: next } = await authorizationRequest(config, redirectUri);
    await page.goto(next.href);
    await page.getByRole('heading', { name: 'Sign-in' }).waitFor();
    assert.deepEqual(problems, []);
  });
});

describe('partner OP with the consent page, for a login name it does not know', { timeout: 120_000 }, () => {
  let callback;
  let op;
  let browser;
  let page;
  let problems = [];
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page }) });

  before(async () => {
    callback = await startCallbackServer();
    op = await startPartnerOp({ redirectUris: [`http://localhost:${callback.port}/callback`], users: USERS, consent: true });
    browser = await launchChromium();
    ({ page, problems } = await openPage(browser));
  });

  after(() => closeAll([browser?.close(), op?.close(), callback?.close()]));

  step('signs in, clicks Continue, and gets a made-up partner account', async () => {
    assert.ok(op.clientSecret.length >= 32, 'a client secret is made up when none is given');
    const config = await discover(op);
    const redirectUri = `http://localhost:${callback.port}/callback`;
    const { url, checks } = await authorizationRequest(config, redirectUri, { acr_values: 'urn:partner:mfa urn:partner:pwd' });
    const arrived = nextAt(callback, '/callback');
    await page.goto(url.href);
    await submit(await signInAtPartner(page, 'mary'));
    await page.getByRole('heading', { name: 'Authorize' }).waitFor();
    await page.getByRole('button', { name: 'Continue', exact: true }).click();
    const received = await waitForCallback(arrived, page, problems);
    const claims = (await oidc.authorizationCodeGrant(config, received, checks).catch((err) => {
      err.message += `\n  the partner's errors: ${JSON.stringify(op.errors)}`;
      throw err;
    })).claims();
    assert.equal(claims.sub, 'mary');
    assert.equal(claims.email, 'mary@partner.example');
    assert.equal(claims.email_verified, true);
    assert.deepEqual(claims.groups, []);
    assert.equal(claims.acr, 'urn:partner:mfa', 'the first acr asked for that the partner knows');
    assert.deepEqual(problems, []);
  });
});
