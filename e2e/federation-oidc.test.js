// Partners sign in with their own identity provider: an independent OpenID
// Provider (panva's `oidc-provider`, lib/partner-op.js) as Gatehouse's upstream, and
// an independent relying party (`openid-client`) as Gatehouse's client, with every
// page in headless Chromium. The partner runs on 127.0.0.1 and Gatehouse on
// localhost, so each hop is cross-site, as in production.
//
//   an operator adds the partner (`gatehouse connections add-oidc`: issuer, client,
//   domain, mapping rules) → "Sign in with Partner Corp" → the partner's login →
//   back, an account made just in time with the mapped name and group → the
//   client's tokens carry the mapped claims → the same again by home-realm discovery
//   (an address at the partner's domain typed on the sign-in page) → a partner
//   identity whose email is a local account's gets nothing until the owner signs in
//   and links it from the account page → signing out ends the partner's session
//   too (RP-initiated logout) → a replayed answer is refused.
//
// Screenshots, the server log and the partner's refusals land in
// e2e/artifacts/federation-oidc/ (not committed).

import assert from 'node:assert/strict';
import dns from 'node:dns';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as oidc from 'openid-client';

import { journeySteps, submit } from './lib/journey.js';
import { linksIn } from './lib/smtp.js';
import { startPartnerOp } from './lib/partner-op.js';
import { cliCredentials, startCallbackServer, waitForCallback } from './lib/relying-party.js';
import { closeAll, openStage } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'federation-oidc');
const PARTNER = 'Partner Corp';
const USERS = {
  katherine: {
    email: 'Katherine.Johnson@Partner.Example',
    email_verified: true,
    name: 'Katherine Johnson',
    given_name: 'Katherine',
    family_name: 'Johnson',
    groups: ['sales-emea', 'engineering'],
  },
  dorothy: {
    email: 'dorothy.vaughan@partner.example',
    email_verified: true,
    name: 'Dorothy Vaughan',
    given_name: 'Dorothy',
    family_name: 'Vaughan',
    groups: [],
  },
  // Asserts the address of a local account that is not hers to take (unverified:
  // the tenant's trust in the partner's verified emails does not apply).
  mallory: {
    email: 'grace.local@example.com',
    email_verified: false,
    name: 'Mallory',
    given_name: 'Mallory',
    family_name: 'Partner',
    groups: [],
  },
  // The partner vouches for the address of a local account: its owner links by mail.
  ada: {
    email: 'ada.local@example.com',
    email_verified: true,
    name: 'Ada Lovelace',
    given_name: 'Ada',
    family_name: 'Lovelace',
    groups: [],
  },
};
const LOCAL_EMAIL = 'grace.local@example.com';
const MAILED_EMAIL = 'ada.local@example.com';
const LOCAL_PASSWORD = 'saffron-lattice-orbit-63-harbor';
const MAPPING = {
  rules: [
    { from: 'email', to: 'email', transforms: ['lower'], required: true },
    { from: 'given_name', to: 'given_name' },
    { from: 'family_name', to: 'family_name' },
    { from: 'name', to: 'display_name' },
    { from: 'groups', to: 'group', transforms: [{ regex: '^sales-(.+)$', capture: 1 }] },
  ],
};

dns.setDefaultResultOrder('ipv4first');


describe('Federation: sign in with a partner OpenID provider', { timeout: 240_000 }, () => {
  let smtp;
  let server;
  let browser;
  let context;
  let page;
  let problems = [];
  let partner;
  let callback;
  let app;
  let config;
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  before(async () => {
    ({ smtp, server, browser, context, page, problems } = await openStage({
      artifacts: ARTIFACTS,
      // The partner listens on loopback.
      env: { GATEHOUSE_OUTBOUND__ALLOW_PRIVATE_NETWORKS: 'true' },
    }));
    partner = await startPartnerOp({
      redirectUris: [`${server.baseUrl}/federation/partner/callback`],
      keyClients: [{
        clientId: 'gatehouse-key',
        jwksUri: `${server.baseUrl}/federation/partner-key/jwks`,
        redirectUris: [`${server.baseUrl}/federation/partner-key/callback`],
      }],
      postLogoutRedirectUris: [`${server.baseUrl}/federation/partner/logged-out`],
      users: USERS,
    });
    callback = await startCallbackServer();
  });

  after(() => closeAll([browser?.close(), server?.stop(), smtp?.close(), partner?.close(), callback?.close()]));

  /** The partner's login page: any password is accepted for a known login name. */
  const partnerLogin = async (target, login) => {
    await target.waitForURL((u) => u.origin === partner.issuer, { timeout: 15_000 });
    const field = target.locator('input[name=login]');
    if (login) await field.fill(login);
    await target.locator('input[name=password]').fill('any-password');
    await target.getByRole('button', { name: 'Sign-in' }).click();
  };

  step('an operator adds the partner, its domain and mapping rules', async () => {
    const mappingFile = path.join(server.workDir, 'partner-mapping.json');
    await writeFile(mappingFile, JSON.stringify(MAPPING));
    await server.cli(['groups', 'create', '--name', 'emea', '--operator', 'e2e']);
    const added = await server.cli(
      [
        'connections', 'add-oidc',
        '--slug', 'partner',
        '--name', PARTNER,
        '--issuer', partner.issuer,
        '--client-id', partner.clientId,
        '--scope', 'email', '--scope', 'profile', '--scope', 'groups',
        '--domain', 'Partner.Example',
        '--jit',
        '--trust-verified-email',
        '--acr-level', 'urn:partner:mfa=2',
        '--mapping-file', mappingFile,
        '--operator', 'e2e',
      ],
      { input: `${partner.clientSecret}\n` },
    );
    assert.match(added, /added connection partner/);
    const shown = JSON.parse(await server.cli(['connections', 'show', '--slug', 'partner']));
    assert.equal(shown.secret_set, true);
    assert.deepEqual(shown.domains, ['partner.example'], 'the domain is stored normalised');
    assert.ok(!JSON.stringify(shown).includes(partner.clientSecret), 'the secret is never shown');

    const redirectUri = `http://localhost:${callback.port}/callback`;
    const created = await server.cli([
      'clients', 'create', '--name', 'Partner Portal', '--redirect-uri', redirectUri,
      '--grant', 'authorization_code', '--scope', 'openid', '--scope', 'profile', '--scope', 'email',
      '--first-party',
    ]);
    app = { ...cliCredentials(created), redirectUri };
    config = await oidc.discovery(new URL(server.baseUrl), app.clientId, undefined, oidc.ClientSecretBasic(app.clientSecret), {
      execute: [oidc.allowInsecureRequests],
    });
  });

  /** An authorization request of the portal, answered in the browser by `signIn`. */
  const authorize = async (target, signIn, extra = {}) => {
    const checks = {
      pkceCodeVerifier: oidc.randomPKCECodeVerifier(),
      expectedState: oidc.randomState(),
      expectedNonce: oidc.randomNonce(),
      idTokenExpected: true,
    };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: app.redirectUri,
      scope: 'openid profile email',
      code_challenge: await oidc.calculatePKCECodeChallenge(checks.pkceCodeVerifier),
      code_challenge_method: 'S256',
      state: checks.expectedState,
      nonce: checks.expectedNonce,
      ...extra,
    });
    const arrived = callback.next();
    await target.goto(url.href);
    await signIn();
    const received = await waitForCallback(arrived, target, problems);
    const tokens = await oidc.authorizationCodeGrant(config, received, checks);
    return tokens.claims();
  };

  step('"Sign in with Partner Corp": an account made just in time, the claims mapped', async () => {
    const claims = await authorize(page, async () => {
      await page.getByRole('heading', { name: /sign in/i }).waitFor();
      await page.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await partnerLogin(page, 'katherine');
    });
    assert.equal(claims.email, 'katherine.johnson@partner.example', 'the email, lower-cased by the rules');
    assert.equal(claims.given_name, 'Katherine');
    assert.equal(claims.family_name, 'Johnson');
    assert.equal(claims.email_verified, true, 'the connection trusts the partner\'s verified email');
    assert.ok(claims.amr?.includes('fed'), `amr says federated: ${JSON.stringify(claims.amr)}`);
    const exported = JSON.parse(
      await server.cli(['users', 'export', '--email', 'katherine.johnson@partner.example', '--operator', 'e2e']),
    );
    assert.deepEqual(exported.groups, ['emea'], 'sales-emea mapped to the group emea; engineering to none');
    assert.equal(exported.federated_identities.length, 1);
    assert.equal(exported.federated_identities[0].connection, 'partner');
    assert.equal(exported.federated_identities[0].subject, 'katherine', 'linked by the partner\'s subject');
  });

  step('the security page lists the linked sign-in', async () => {
    await page.goto('/account/security');
    const list = page.locator('#identity-list');
    await list.waitFor();
    assert.match(await list.innerText(), new RegExp(PARTNER));
  });

  step('a client asking for more steps up at the partner (acr_values, prompt=login)', async () => {
    let upstream;
    const watch = (request) => {
      // The authorization request itself, not the OP's resumption at /auth/<uid>.
      if (!upstream && request.url().startsWith(`${partner.issuer}/auth?`)) upstream = new URL(request.url());
    };
    page.on('request', watch);
    try {
      const claims = await authorize(page, async () => {
        // Signed in already at level 1: the partner is asked to sign her in again.
        await partnerLogin(page, 'katherine');
      }, { acr_values: 'urn:gatehouse:aal2' });
      assert.equal(upstream?.searchParams.get('prompt'), 'login', 'a fresh sign-in at the partner');
      assert.equal(upstream?.searchParams.get('acr_values'), 'urn:partner:mfa', 'the partner value that counts as level 2');
      assert.equal(claims.acr, 'urn:gatehouse:aal2', 'the session stepped up');
      assert.equal(claims.email, 'katherine.johnson@partner.example', 'the same person');
    } finally {
      page.off('request', watch);
    }
  });

  step('home-realm discovery: a partner address goes to the partner from the sign-in page', async () => {
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      const claims = await authorize(other, async () => {
        await other.getByLabel('Email', { exact: true }).fill('Dorothy.Vaughan@partner.example');
        await other.getByRole('button', { name: 'Sign in', exact: true }).click();
        await other.waitForURL((u) => u.origin === partner.issuer);
        assert.equal(
          await other.locator('input[name=login]').inputValue(),
          'Dorothy.Vaughan@partner.example',
          'the address typed is passed on as login_hint',
        );
        await partnerLogin(other, 'dorothy');
      });
      assert.equal(claims.email, 'dorothy.vaughan@partner.example');
    } finally {
      await fresh.close();
    }
  });

  step('an email match alone opens no local account; the owner links after signing in', async () => {
    await server.cli(
      ['users', 'create', '--email', LOCAL_EMAIL, '--password-stdin', '--verified', '--operator', 'e2e'],
      { input: `${LOCAL_PASSWORD}\n` },
    );
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      await other.goto('/signin');
      await other.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await partnerLogin(other, 'mallory');
      await other.getByRole('heading', { name: 'You already have an account' }).waitFor();
      await other.goto('/account');
      assert.equal(new URL(other.url()).pathname, '/signin', 'no session came of it');
      const beforeLink = JSON.parse(await server.cli(['users', 'export', '--email', LOCAL_EMAIL, '--operator', 'e2e']));
      assert.deepEqual(beforeLink.federated_identities, [], 'nothing was linked');

      // The owner signs in with her password and links the partner sign-in.
      await other.getByLabel('Email', { exact: true }).fill(LOCAL_EMAIL);
      await other.getByLabel('Password', { exact: true }).fill(LOCAL_PASSWORD);
      await submit(other.getByRole('button', { name: 'Sign in', exact: true }));
      await other.goto('/account/security');
      await other.getByRole('button', { name: `Link ${PARTNER}` }).click();
      // The partner remembers mallory's session: straight back.
      await other.waitForURL((u) => u.pathname === '/account/security' && u.search.includes('notice='));
      await other.locator('#identity-list').waitFor();
      const linked = JSON.parse(await server.cli(['users', 'export', '--email', LOCAL_EMAIL, '--operator', 'e2e']));
      assert.equal(linked.federated_identities[0]?.subject, 'mallory');
    } finally {
      await fresh.close();
    }
  });

  step('a verified partner email links after the account owner confirms a mailed link', async () => {
    await server.cli(
      ['users', 'create', '--email', MAILED_EMAIL, '--password-stdin', '--verified', '--operator', 'e2e'],
      { input: `${LOCAL_PASSWORD}\n` },
    );
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const ada = await fresh.newPage();
    try {
      await ada.goto('/signin');
      await ada.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await partnerLogin(ada, 'ada');
      await ada.getByRole('heading', { name: 'Check your email' }).waitFor();
      const before = JSON.parse(await server.cli(['users', 'export', '--email', MAILED_EMAIL, '--operator', 'e2e']));
      assert.deepEqual(before.federated_identities, [], 'nothing linked before the owner confirms');
      const mail = await smtp.waitForMessage((m) => m.to.includes(MAILED_EMAIL));
      const link = linksIn(mail.raw).find((l) => l.includes('/federation/link?token='));
      assert.ok(link, 'the mail carries the link');
      // Opened in the browser that signed in at the partner, it asks first.
      await ada.goto(link);
      await ada.getByRole('heading', { name: 'Link this sign-in?' }).waitFor();
      await submit(ada.getByRole('button', { name: `Link and sign in with ${PARTNER}` }));
      await ada.getByRole('heading', { name: 'Linked' }).waitFor();
      const after = JSON.parse(await server.cli(['users', 'export', '--email', MAILED_EMAIL, '--operator', 'e2e']));
      assert.equal(after.federated_identities[0]?.subject, 'ada');
      // The partner's sign-in now opens the account.
      await ada.goto('/signin');
      await ada.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await ada.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/account');
    } finally {
      await fresh.close();
    }
  });

  step('signing out here signs out at the partner too', async () => {
    await page.goto('/account');
    await page.getByRole('button', { name: 'Sign out' }).click();
    // The partner's own end-session page (RP-initiated logout) asks to confirm.
    await page.waitForURL((u) => u.origin === partner.issuer);
    await page.getByRole('button', { name: 'Yes, sign me out' }).click();
    await page.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/signin');
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/signin', 'signed out here');
    // The partner asks for a login again: its session ended as well.
    await page.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
    await page.waitForURL((u) => u.origin === partner.issuer);
    await page.locator('input[name=login]').waitFor();
  });

  step('private_key_jwt: Gatehouse proves itself with its own key, no shared secret', async () => {
    const added = await server.cli([
      'connections', 'add-oidc',
      '--slug', 'partner-key',
      '--name', 'Partner Key',
      '--issuer', partner.issuer,
      '--client-id', 'gatehouse-key',
      '--client-auth', 'private_key_jwt',
      '--scope', 'email', '--scope', 'profile',
      '--jit', '--trust-verified-email',
      '--operator', 'e2e',
    ]);
    assert.match(added, /added connection partner-key/);
    const jwks = await (await fetch(`${server.baseUrl}/federation/partner-key/jwks`)).json();
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0].crv, 'P-256');
    assert.equal(jwks.keys[0].d, undefined, 'the public half only');
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      await other.goto('/signin');
      await other.getByRole('button', { name: 'Sign in with Partner Key' }).click();
      await partnerLogin(other, 'annie.easley');
      await other
        .waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/account')
        .catch((error) => {
          throw new Error(`${error.message}\nthe partner refused: ${JSON.stringify(partner.errors)}`);
        });
    } finally {
      await fresh.close();
    }
    assert.deepEqual(
      partner.errors.filter((e) => e.event?.includes('grant')),
      [],
      'the partner took the client assertion',
    );
  });

  step('a replayed answer from the partner is refused', async () => {
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      let answer;
      other.on('request', (request) => {
        if (request.url().includes('/federation/partner/callback')) answer = request.url();
      });
      await other.goto('/signin');
      await other.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await partnerLogin(other, 'katherine');
      await other.waitForURL((u) => u.pathname === '/account');
      assert.ok(answer, 'the partner answered at the callback');
      const replay = await other.goto(answer);
      assert.equal(replay.status(), 400);
      assert.equal(await other.locator('#reference').innerText(), 'Reference: oidc_state');
    } finally {
      await fresh.close();
    }
    assert.deepEqual(partner.errors, [], 'the partner refused nothing');
  });
});
