// Partners sign in with their own SAML identity provider: Debian's SimpleSAMLphp
// (lib/saml-idp.js) as Gatehouse's upstream IdP, an independent relying party
// (`openid-client`) as Gatehouse's client, every page in headless Chromium. The IdP
// runs on 127.0.0.1 and Gatehouse on localhost, so its POST to the assertion
// consumer service is cross-site, as in production: it arrives without the
// browser's cookies and Gatehouse hands the result on to the browser that began.
//
//   an operator adds the partner from its metadata URL (`gatehouse connections
//   add-saml`) → Gatehouse's SP metadata is signed (checked with xmlsec1, an
//   independent XML-signature verifier) and the IdP is told the SP's certificate,
//   so it refuses unsigned requests → "Sign in with Partner SAML" → the IdP's login
//   → back, an account made just in time from the mapped attributes, a group
//   mapped from a multi-valued attribute → the client's tokens carry the claims →
//   an encrypted assertion signs in too → the same IdP response posted again is
//   refused → signing out here signs out at the IdP (single logout, both
//   messages signed over the redirect binding) → the IdP signing its user out
//   ends the Gatehouse session too.
//
// Screenshots and the server log land in e2e/artifacts/federation-saml/.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dns from 'node:dns';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as oidc from 'openid-client';

import { journeySteps } from './lib/journey.js';
import { cliCredentials, startCallbackServer, waitForCallback } from './lib/relying-party.js';
import { startSamlIdp } from './lib/saml-idp.js';
import { closeAll, openStage } from './lib/stage.js';

const run = promisify(execFile);
const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'federation-saml');
const PARTNER = 'Partner SAML';
const MAPPING = {
  rules: [
    { from: 'mail', to: 'email', transforms: ['lower'], required: true },
    { from: 'givenName', to: 'given_name' },
    { from: 'sn', to: 'family_name' },
    { from: 'eduPersonAffiliation', to: 'group', transforms: [{ regex: '^sales-(.+)$', capture: 1 }] },
  ],
};
const USERS = {
  mary: {
    password: 'partner-pass-1',
    mail: 'Mary.Jackson@Partner.Example',
    givenName: 'Mary',
    sn: 'Jackson',
    eduPersonAffiliation: ['member', 'sales-emea'],
  },
};

dns.setDefaultResultOrder('ipv4first');

describe('Federation: sign in with a partner SAML identity provider', { timeout: 240_000 }, () => {
  let smtp;
  let server;
  let browser;
  let context;
  let page;
  let problems = [];
  let idp;
  let callback;
  let app;
  let config;
  const step = journeySteps({ artifacts: ARTIFACTS, current: () => ({ page, server }) });

  before(async () => {
    ({ smtp, server, browser, context, page, problems } = await openStage({
      artifacts: ARTIFACTS,
      // The IdP's metadata is fetched from loopback.
      env: { GATEHOUSE_OUTBOUND__ALLOW_PRIVATE_NETWORKS: 'true' },
    }));
    idp = await startSamlIdp({
      spEntityId: `${server.baseUrl}/federation/partner/saml/metadata`,
      acsUrl: `${server.baseUrl}/federation/partner/saml/acs`,
      sloUrl: `${server.baseUrl}/federation/partner/saml/slo`,
      users: USERS,
      authnContextClassRef: 'urn:partner:mfa',
    });
    callback = await startCallbackServer();
  });

  /** Gatehouse's SP metadata for the connection, as the IdP's operator fetches it. */
  const spMetadata = async () => {
    const answer = await fetch(`${server.baseUrl}/federation/partner/saml/metadata`);
    assert.equal(answer.status, 200);
    return answer.text();
  };

  /** The SP's certificate, as PEM, from its metadata. */
  const spCertificate = async () => {
    const certificate = (await spMetadata()).match(/<ds:X509Certificate>([^<]+)<\/ds:X509Certificate>/)[1];
    return `-----BEGIN CERTIFICATE-----\n${certificate.match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  };

  after(() => closeAll([browser?.close(), server?.stop(), smtp?.close(), idp?.stop(), callback?.close()]));

  /** The IdP's sign-in page, answered as mary. */
  const idpLogin = async (target) => {
    await target.waitForURL((u) => u.origin === idp.baseUrl, { timeout: 15_000 });
    await target.fill('#username', 'mary');
    await target.fill('#password', USERS.mary.password);
    await target.click('#submit_button');
  };

  step('an operator adds the partner from its metadata; the SP metadata is signed', async () => {
    const mappingFile = path.join(server.workDir, 'saml-mapping.json');
    await writeFile(mappingFile, JSON.stringify(MAPPING));
    await server.cli(['groups', 'create', '--name', 'emea', '--operator', 'e2e']);
    const added = await server.cli([
      'connections', 'add-saml',
      '--slug', 'partner',
      '--name', PARTNER,
      '--metadata-url', idp.metadataUrl,
      '--authn-context-level', 'urn:partner:mfa=2',
      '--jit',
      '--mapping-file', mappingFile,
      '--operator', 'e2e',
    ]);
    assert.match(added, /added connection partner/);
    const shown = JSON.parse(await server.cli(['connections', 'show', '--slug', 'partner']));
    assert.equal(shown.kind, 'saml');
    assert.equal(shown.settings.idp_entity_id, idp.entityId, 'read from the IdP metadata');
    assert.equal(shown.settings.sso_url, idp.ssoRedirectUrl);
    assert.ok(!JSON.stringify(shown).includes('PRIVATE KEY'), 'the SP key is never shown');

    const metadata = await spMetadata();
    const spCertPem = await spCertificate();
    const metadataFile = path.join(server.workDir, 'sp-metadata.xml');
    const certFile = path.join(server.workDir, 'sp.crt');
    await writeFile(metadataFile, metadata);
    await writeFile(certFile, spCertPem);
    const verified = await run('xmlsec1', [
      '--verify', '--pubkey-cert-pem', certFile,
      '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor',
      metadataFile,
    ]);
    assert.match(`${verified.stdout}${verified.stderr}`, /^OK$/m, 'xmlsec1 verifies the SP metadata');
    // From now on the IdP refuses AuthnRequests this key did not sign.
    await idp.trustSp({ spCertPem });

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

  let posted;

  step('"Sign in with Partner SAML": an account made just in time from the attributes', async () => {
    page.on('request', (request) => {
      if (request.method() === 'POST' && request.url().endsWith('/federation/partner/saml/acs')) {
        posted = request.postData();
      }
    });
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
    });
    const arrived = callback.next();
    await page.goto(url.href);
    await page.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
    await page.waitForURL((u) => u.origin === idp.baseUrl, { timeout: 15_000 });
    await page.fill('#username', 'mary');
    await page.fill('#password', USERS.mary.password);
    await page.click('#submit_button');
    const received = await waitForCallback(arrived, page, problems);
    const tokens = await oidc.authorizationCodeGrant(config, received, checks);
    const claims = tokens.claims();
    assert.equal(claims.email, 'mary.jackson@partner.example', 'mail, lower-cased by the rules');
    assert.equal(claims.given_name, 'Mary');
    assert.equal(claims.family_name, 'Jackson');
    assert.ok(claims.amr?.includes('fed'), `amr says federated: ${JSON.stringify(claims.amr)}`);
    assert.equal(claims.acr, 'urn:gatehouse:aal2', 'the IdP\'s AuthnContextClassRef, mapped');
    const exported = JSON.parse(
      await server.cli(['users', 'export', '--email', 'mary.jackson@partner.example', '--operator', 'e2e']),
    );
    assert.deepEqual(exported.groups, ['emea'], 'sales-emea of a multi-valued attribute mapped to emea');
    assert.equal(exported.federated_identities[0]?.connection, 'partner');
    assert.equal(exported.federated_identities[0]?.subject, 'mary', 'linked by the persistent NameID');
  });

  step('an encrypted assertion (to the SP\'s certificate) signs in too', async () => {
    const spCertPem = await spCertificate();
    await idp.trustSp({ spCertPem, encryptAssertion: true });
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      let response;
      other.on('request', (request) => {
        if (request.method() === 'POST' && request.url().endsWith('/federation/partner/saml/acs')) {
          response = new URLSearchParams(request.postData()).get('SAMLResponse');
        }
      });
      await other.goto('/signin');
      await other.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await other.waitForURL((u) => u.origin === idp.baseUrl, { timeout: 15_000 });
      await other.fill('#username', 'mary');
      await other.fill('#password', USERS.mary.password);
      await other.click('#submit_button');
      await other.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/account');
      const xml = Buffer.from(response, 'base64').toString('utf8');
      assert.match(xml, /EncryptedAssertion/, 'the IdP encrypted the assertion');
      assert.doesNotMatch(xml, /Mary\.Jackson/i, 'nothing of it in the clear');
    } finally {
      await fresh.close();
      await idp.trustSp({ spCertPem, encryptAssertion: false });
    }
  });

  step('the IdP\'s response posted again is refused', async () => {
    assert.ok(posted, 'the IdP posted its response to the ACS');
    const replay = await fetch(`${server.baseUrl}/federation/partner/saml/acs`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: posted,
      redirect: 'manual',
    });
    assert.equal(replay.status, 400);
    assert.match(await replay.text(), /Reference: saml_state/);
  });


  step('IdP-initiated sign-in, once allowed, asks the person before it signs in', async () => {
    const shown = JSON.parse(await server.cli(['connections', 'show', '--slug', 'partner']));
    await server.cli([
      'connections', 'set', '--slug', 'partner', '--expected-version', String(shown.version),
      '--setting', 'allow_idp_initiated=true', '--operator', 'e2e',
    ]);
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      await other.goto(idp.idpInitiatedUrl(`${server.baseUrl}/federation/partner/saml/metadata`));
      await idpLogin(other);
      await other.getByRole('heading', { name: 'Continue signing in?' }).waitFor();
      const asked = other.url();
      assert.match(await other.locator('#confirm-message').innerText(), /mary\.jackson@partner\.example/);
      await other.goto('/account');
      assert.equal(new URL(other.url()).pathname, '/signin', 'the post alone signed nobody in');
      await other.goto(asked);
      await other.getByRole('button', { name: 'Continue', exact: true }).click();
      await other.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/account');
    } finally {
      await fresh.close();
    }
  });

  step('the HTTP-POST binding: an AuthnRequest signed inside the XML, which the IdP checks', async () => {
    const shown = JSON.parse(await server.cli(['connections', 'show', '--slug', 'partner']));
    await server.cli([
      'connections', 'set', '--slug', 'partner', '--expected-version', String(shown.version),
      '--setting', 'authn_request_binding="post"', '--operator', 'e2e',
    ]);
    const fresh = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB' });
    const other = await fresh.newPage();
    try {
      let posted;
      other.on('request', (request) => {
        if (request.method() === 'POST' && request.url().startsWith(idp.ssoRedirectUrl)) {
          posted = new URLSearchParams(request.postData()).get('SAMLRequest');
        }
      });
      await other.goto('/signin');
      await other.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
      await idpLogin(other);
      await other.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/account');
      const request = Buffer.from(posted, 'base64').toString('utf8');
      assert.match(request, /<ds:SignatureValue>/, 'signed inside the XML');
    } finally {
      await fresh.close();
      const now = JSON.parse(await server.cli(['connections', 'show', '--slug', 'partner']));
      await server.cli([
        'connections', 'set', '--slug', 'partner', '--expected-version', String(now.version),
        '--setting', 'authn_request_binding="redirect"', '--operator', 'e2e',
      ]);
    }
  });

  step('signing out here signs out at the IdP too (single logout)', async () => {
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/account', 'still signed in from the first step');
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    // Gatehouse's LogoutRequest, the IdP's LogoutResponse, and back.
    await page.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/signin');
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/signin', 'signed out here');
    // The IdP asks for a login again: its session ended as well.
    await page.getByRole('button', { name: `Sign in with ${PARTNER}` }).click();
    await idpLogin(page);
    await page.waitForURL((u) => u.origin === server.baseUrl && u.pathname === '/account');
  });

  step('the IdP signing its user out ends the Gatehouse session', async () => {
    const back = `${server.baseUrl}/signin?from=idp`;
    await page.goto(idp.logoutUrl(back));
    // The IdP's LogoutRequest reaches Gatehouse, whose signed LogoutResponse
    // sends the browser back to the IdP, which sends it on.
    await page.waitForURL((u) => u.href.startsWith(back));
    await page.goto('/account');
    assert.equal(new URL(page.url()).pathname, '/signin', 'the session ended here');
    const events = (await server.cli(['audit', 'list', '--action', 'session.signed_out']))
      .split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.ok(
      events.some((e) => JSON.stringify(e).includes('identity_provider')),
      `the IdP's sign-out is audited: ${JSON.stringify(events)}`,
    );
  });
});
