// "Partner SAML": an upstream SAML 2.0 Identity Provider that is not Gatehouse, for the
// SAML service-provider tests ("Sign in with Partner" over SAML). It is Debian's
// SimpleSAMLphp 1.19 (`/usr/share/simplesamlphp`), served by PHP's built-in web server
// on http://127.0.0.1:<free port>, with its whole configuration (config, metadata, keys,
// sessions, log) in a temporary folder of its own. It knows one service provider, the
// one described by the options.
//
// Needs (Debian 12): apt-get install -y --no-install-recommends simplesamlphp php8.2-cgi \
//   php-cli php-xml php-mbstring xmlsec1 mini-httpd
// (php8.2-cgi and mini-httpd are named only so that apt does not satisfy the package's
// `php` and `apache2 | httpd` dependencies with Apache, which would start on port 80;
// mini-httpd installs disabled and never starts. xmlsec1 is for tests that check
// signatures themselves; this module does not use it.)
//
// What a browser meets there (SimpleSAMLphp's classic templates, English):
//
//   sign-in page   <baseUrl>/module.php/core/loginuserpass.php?AuthState=..., title and
//                  heading "Enter your username and password": a text field `username`
//                  (id "username", label "Username"), a password field `password` (id
//                  "password", label "Password") and the submit button "Login" (id
//                  "submit_button"; it shows "Processing..." once clicked). E.g.
//                  page.fill('#username', 'alice'); page.fill('#password', 'secret');
//                  page.click('#submit_button'). A wrong password shows the same page
//                  again with "Incorrect username or password" above the form.
//   then           no consent page: a page "POST data" whose form posts SAMLResponse and
//                  RelayState to the SP's ACS URL and submits itself with JavaScript at
//                  once (a "Submit" button is there for browsers without it). So after
//                  "Login" the browser lands on the ACS.
//   again          a second sign-in in the same browser is silent (the IdP's session
//                  cookie): straight to the auto-posting page, unless the AuthnRequest
//                  says ForceAuthn="true".
//   sign-out       SP-initiated SLO (a signed LogoutRequest with NameID and
//                  SessionIndex, HTTP-Redirect, to `sloUrl`) shows no page: the IdP ends
//                  its session and redirects straight to the SP's sloUrl with a
//                  LogoutResponse (Status Success, InResponseTo the request, RelayState
//                  passed back), signed the HTTP-Redirect way: SigAlg (rsa-sha256) and
//                  Signature in the query, none inside the XML. `logoutUrl(returnTo)`
//                  is the IdP-initiated kind: the browser is redirected to the SP's
//                  sloUrl with a signed LogoutRequest (and an opaque RelayState that the
//                  SP's LogoutResponse must carry back to `sloUrl`), then to returnTo.
//                  After either, the next AuthnRequest meets the sign-in page again.
//   errors         a refused message (unsigned or wrongly signed AuthnRequest or
//                  LogoutRequest, unknown SP, ACS URL not the registered one) gives a
//                  page titled "Unhandled exception" with HTTP status 200; the reason
//                  ("Validation of received messages enabled, but no signature found on
//                  message.", "Unable to validate signature on query string.") is only
//                  in `logFile`.
//
// Redirects reach the SP as real requests: Playwright's page.route does not see the
// hops of a redirect chain (it does see the auto-posted form to the ACS), so whatever
// takes the LogoutResponse or LogoutRequest at sloUrl must listen.
//
// The accounts are exampleauth:UserPass users: `alice` / `secret` unless `users` says
// otherwise (see startSamlIdp). What the SP receives (in a Response signed twice,
// Response and Assertion, RSA-SHA256 and SHA-256 digests, exclusive c14n):
//   NameID         Format persistent, value = the user's `uid` (alice), with
//                  NameQualifier = this IdP's entityId and SPNameQualifier = the SP's.
//                  A NameIDPolicy Format in the AuthnRequest picks the format: persistent
//                  or unspecified give the uid, emailAddress the `mail`, transient a
//                  random value per sign-in; without one, `nameIdFormat` decides.
//   attributes     NameFormat basic, names uid, mail, givenName, sn,
//                  eduPersonAffiliation (multi-valued), as xs:string values; with
//                  `attributeNameFormat: 'uri'` the names are the usual OIDs instead
//                  (urn:oid:0.9.2342.19200300.100.1.1 for uid, see URI_NAMES below).
//   AuthnContext   urn:oasis:names:tc:SAML:2.0:ac:classes:Password (SimpleSAMLphp says
//                  PasswordProtectedTransport only over HTTPS), unless
//                  `authnContextClassRef` says otherwise.
//   encryption     with `encryptAssertion: true`, an EncryptedAssertion to the SP's
//                  certificate: AES-128-CBC content, key transported with RSA-OAEP
//                  (http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p, SHA-1). SimpleSAMLphp
//                  1.19 hard-codes both for public-key encryption (its
//                  `sharedkey_algorithm`, with AES-GCM, applies only to a pre-shared
//                  symmetric key); the Response and the inner Assertion are signed still.
//
// Its cookies (PartnerIdP<port>, PartnerIdPAuthToken<port>) are named after the port,
// so that two of these IdPs on 127.0.0.1 keep their sessions apart (cookies do not tell
// ports apart). They carry no SameSite attribute (browsers then treat them as Lax) and
// no Secure flag (plain HTTP): keep the SP on 127.0.0.1 too, so that SP and IdP are the
// same site and the IdP's session survives the SP's cross-port POSTs and redirects.

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SSP_ROOT = '/usr/share/simplesamlphp';

export const NAMEID_FORMATS = Object.freeze({
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  emailAddress: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  transient: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
  unspecified: 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
});

const ATTRNAME_FORMATS = {
  basic: 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
  uri: 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
};

// The names an IdP with NameFormat uri sends (the eduPerson / inetOrgPerson OIDs).
export const URI_NAMES = Object.freeze({
  uid: 'urn:oid:0.9.2342.19200300.100.1.1',
  mail: 'urn:oid:0.9.2342.19200300.100.1.3',
  givenName: 'urn:oid:2.5.4.42',
  sn: 'urn:oid:2.5.4.4',
  cn: 'urn:oid:2.5.4.3',
  displayName: 'urn:oid:2.16.840.1.113730.3.1.241',
  eduPersonAffiliation: 'urn:oid:1.3.6.1.4.1.5923.1.1.1.1',
  eduPersonPrincipalName: 'urn:oid:1.3.6.1.4.1.5923.1.1.1.6',
});

const BINDING = {
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
};

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';

export const DEFAULT_USERS = Object.freeze({
  alice: {
    password: 'secret',
    mail: 'alice@partner.example',
    givenName: 'Alice',
    sn: 'Partner',
    eduPersonAffiliation: ['member', 'sales-emea'],
  },
});

/**
 * Starts the IdP and resolves once it answers.
 *
 * @param {{
 *   spEntityId: string,
 *   acsUrl: string,
 *   sloUrl?: string,
 *   spCertPem?: string,
 *   signedRequests?: boolean,
 *   encryptAssertion?: boolean,
 *   nameIdFormat?: string,
 *   attributeNameFormat?: 'basic' | 'uri',
 *   authnContextClassRef?: string,
 *   users?: Record<string, {password: string} & Record<string, string | string[]>>,
 * }} options
 *   `acsUrl` takes the Response (HTTP-POST); `sloUrl` takes LogoutRequests and
 *   LogoutResponses (HTTP-Redirect), and without it the SP is left out of single logout.
 *   `spCertPem` is the SP's certificate: it checks the signatures of the SP's
 *   AuthnRequests and logout messages, and is what assertions are encrypted to.
 *   `signedRequests` (default: true when spCertPem is given) makes the IdP refuse an
 *   unsigned AuthnRequest or LogoutRequest from the SP. `nameIdFormat` is a URN or a
 *   key of NAMEID_FORMATS (default persistent); a NameIDPolicy Format in the request
 *   wins over it when the IdP can make that format. `users` maps login names to a
 *   password and attributes; `uid` defaults to the login name; string values become
 *   single-valued attributes.
 * @returns {Promise<{baseUrl: string, entityId: string, metadataUrl: string,
 *   metadataXml: string, ssoRedirectUrl: string, sloUrl: string,
 *   idpInitiatedUrl: (spEntityId: string, relayState?: string) => string,
 *   logoutUrl: (returnTo: string) => string, certPem: string,
 *   trustSp: (sp: {spCertPem: string, signedRequests?: boolean, encryptAssertion?: boolean})
 *     => Promise<void>,
 *   logFile: string,
 *   stop: () => Promise<void>}>}
 *   `ssoRedirectUrl` takes AuthnRequests, `sloUrl` LogoutRequests and LogoutResponses,
 *   each over HTTP-Redirect or HTTP-POST (the metadata lists both). `logFile` is SimpleSAMLphp's debug log,
 *   for a test's failure message; it goes away with stop().
 */
export async function startSamlIdp({
  spEntityId,
  acsUrl,
  sloUrl,
  spCertPem,
  signedRequests = Boolean(spCertPem),
  encryptAssertion = false,
  nameIdFormat = 'persistent',
  attributeNameFormat = 'basic',
  authnContextClassRef,
  users = DEFAULT_USERS,
}) {
  if (!spEntityId || !acsUrl) throw new TypeError('startSamlIdp: spEntityId and acsUrl are required');
  if ((signedRequests || encryptAssertion) && !spCertPem) {
    throw new TypeError('startSamlIdp: signedRequests and encryptAssertion need spCertPem');
  }
  if (!Object.hasOwn(ATTRNAME_FORMATS, attributeNameFormat)) {
    throw new TypeError(`startSamlIdp: attributeNameFormat is 'basic' or 'uri', not ${attributeNameFormat}`);
  }
  const nameIdFormatUrn = NAMEID_FORMATS[nameIdFormat] ?? nameIdFormat;

  const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-saml-idp-'));
  const dirs = {
    config: path.join(dir, 'config'),
    metadata: path.join(dir, 'metadata'),
    cert: path.join(dir, 'cert'),
    log: path.join(dir, 'log'),
    tmp: path.join(dir, 'tmp'),
    data: path.join(dir, 'data'),
    sessions: path.join(dir, 'sessions'),
  };
  try {
    for (const d of Object.values(dirs)) await mkdir(d);

    await run('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-sha256', '-nodes', '-days', '30',
      '-subj', '/O=Partner/CN=Partner SAML IdP',
      '-keyout', path.join(dirs.cert, 'idp.key'),
      '-out', path.join(dirs.cert, 'idp.crt'),
    ]);
    const certPem = await readFile(path.join(dirs.cert, 'idp.crt'), 'utf8');

    await writePhp(path.join(dirs.config, 'authsources.php'), 'config', authsources(users));
    await writePhp(path.join(dirs.metadata, 'saml20-sp-remote.php'), 'metadata', {
      [spEntityId]: spRemote({
        acsUrl, sloUrl, spCertPem, signedRequests, encryptAssertion, nameIdFormatUrn, attributeNameFormat,
      }),
    });

    // The port is in the base URL and so in every file that names the IdP: pick it,
    // write the rest, start. Another process may take the port in between; then php
    // exits at once and the next port is tried.
    let lastError;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const port = await freePort();
      const baseUrl = `http://127.0.0.1:${port}`;
      const entityId = `${baseUrl}/saml2/idp/metadata.php`;
      await writePhp(path.join(dirs.config, 'config.php'), 'config', sspConfig({ baseUrl, port, dirs }));
      await writePhp(path.join(dirs.metadata, 'saml20-idp-hosted.php'), 'metadata', {
        [entityId]: idpHosted({ nameIdFormatUrn, attributeNameFormat, authnContextClassRef }),
      });

      const php = await startPhp({ port, dirs });
      try {
        const metadataUrl = `${baseUrl}/saml2/idp/metadata.php`;
        const metadataXml = await waitForMetadata(metadataUrl, php);
        return {
          baseUrl,
          entityId,
          metadataUrl,
          metadataXml,
          ssoRedirectUrl: `${baseUrl}/saml2/idp/SSOService.php`,
          sloUrl: `${baseUrl}/saml2/idp/SingleLogoutService.php`,
          // SimpleSAMLphp 1.19's unsolicited SSO: the IdP signs the user in and posts a
          // Response with no InResponseTo to the SP's ACS, RelayState as given.
          idpInitiatedUrl: (sp, relayState) => {
            const url = new URL(`${baseUrl}/saml2/idp/SSOService.php`);
            url.searchParams.set('spentityid', sp);
            if (relayState !== undefined) url.searchParams.set('RelayState', relayState);
            return url.href;
          },
          logoutUrl: (returnTo) => {
            const url = new URL(`${baseUrl}/saml2/idp/SingleLogoutService.php`);
            url.searchParams.set('ReturnTo', returnTo);
            return url.href;
          },
          certPem,
          // Learns the SP's certificate once the SP exists (its key is made when its
          // connection is, from this IdP's metadata): from then on its requests must be
          // signed. SimpleSAMLphp reads metadata at every request, so no restart.
          trustSp: async (sp) => {
            const next = {
              spCertPem: sp.spCertPem,
              signedRequests: sp.signedRequests ?? true,
              encryptAssertion: sp.encryptAssertion ?? encryptAssertion,
            };
            await writePhp(path.join(dirs.metadata, 'saml20-sp-remote.php'), 'metadata', {
              [spEntityId]: spRemote({ acsUrl, sloUrl, nameIdFormatUrn, attributeNameFormat, ...next }),
            });
          },
          logFile: path.join(dirs.log, 'simplesamlphp.log'),
          stop: async () => {
            await php.stop();
            await rm(dir, { recursive: true, force: true });
          },
        };
      } catch (err) {
        // php that exited by itself could not listen (the port was taken meanwhile);
        // php that ran and did not answer has another problem, which retrying won't fix.
        const couldNotListen = php.exited();
        await php.stop();
        // The folder, logs included, goes away with the failure: keep what they said.
        const said = await logTail(dirs);
        lastError = said ? new Error(`${err.message}\n${said}`) : err;
        if (!couldNotListen) break;
      }
    }
    throw lastError;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function sspConfig({ baseUrl, port, dirs }) {
  return {
    // A full URL, not a path: every URL SimpleSAMLphp builds (entityID, endpoints,
    // Destination) then names 127.0.0.1:<port> whatever Host header a client sent.
    baseurlpath: `${baseUrl}/`,
    certdir: `${dirs.cert}/`,
    loggingdir: `${dirs.log}/`,
    datadir: `${dirs.data}/`,
    tempdir: dirs.tmp,
    metadatadir: `${dirs.metadata}/`,
    technicalcontact_name: 'Partner IT',
    technicalcontact_email: 'it@partner.example',
    secretsalt: randomBytes(24).toString('hex'),
    'auth.adminpassword': randomBytes(12).toString('hex'),
    'admin.protectindexpage': false,
    'admin.protectmetadata': false,
    'admin.checkforupdates': false, // no network here
    // Redirects after logout (ReturnTo) go to the SP on this machine, on any port.
    'trusted.url.domains': ['127\\.0\\.0\\.1(:[0-9]+)?', 'localhost(:[0-9]+)?'],
    'trusted.url.regex': true,
    timezone: 'UTC',
    'enable.saml20-idp': true,
    'enable.shib13-idp': false,
    'enable.adfs-idp': false,
    'module.enable': { exampleauth: true, core: true, saml: true },
    'logging.level': 7, // LOG_DEBUG: the reason for a refusal is only in the log
    'logging.handler': 'file',
    'logging.logfile': 'simplesamlphp.log',
    'logging.processname': `partner-idp-${port}`,
    'statistics.out': [],
    debug: { saml: false, backtraces: true, validatexml: false },
    showerrors: true,
    errorreporting: false,
    'store.type': 'phpsession',
    'session.phpsession.savepath': dirs.sessions,
    'session.phpsession.cookiename': `PartnerIdP${port}`,
    'session.authtoken.cookiename': `PartnerIdPAuthToken${port}`,
    // Plain HTTP: SimpleSAMLphp refuses to set a Secure cookie without HTTPS, and
    // SameSite=None needs Secure.
    'session.cookie.secure': false,
    'session.cookie.samesite': null,
    'language.cookie.secure': false,
    'language.cookie.samesite': null,
    'language.available': ['en'],
    'language.default': 'en',
    production: true, // false adds a "pre-production system" banner to every page
  };
}

function idpHosted({ nameIdFormatUrn, attributeNameFormat, authnContextClassRef }) {
  const nameId = (format, attribute) => ({
    class: 'saml:AttributeNameID',
    attribute,
    Format: format,
    NameQualifier: true, // the IdP's entity ID
  });
  const authproc = {
    // NameIDs for every format an SP may ask for; the Response carries the one asked
    // for (NameIDPolicy) or else the SP's configured format.
    10: nameId(NAMEID_FORMATS.persistent, 'uid'),
    11: nameId(NAMEID_FORMATS.emailAddress, 'mail'),
    12: nameId(NAMEID_FORMATS.unspecified, 'uid'),
    13: { class: 'saml:TransientNameID' },
  };
  if (authnContextClassRef) {
    authproc[20] = { class: 'saml:AuthnContextClassRef', AuthnContextClassRef: authnContextClassRef };
  }
  if (attributeNameFormat === 'uri') {
    // After the NameID filters, which read the attributes by their short names.
    authproc[90] = { class: 'core:AttributeMap', ...URI_NAMES };
  }
  return {
    host: '__DEFAULT__',
    privatekey: 'idp.key',
    certificate: 'idp.crt',
    auth: 'partner-users',
    'signature.algorithm': RSA_SHA256,
    'saml20.sign.response': true,
    'saml20.sign.assertion': true,
    'sign.logout': true,
    'redirect.sign': true,
    NameIDFormat: nameIdFormatUrn,
    'attributes.NameFormat': ATTRNAME_FORMATS[attributeNameFormat],
    SingleSignOnServiceBinding: [BINDING.redirect, BINDING.post],
    SingleLogoutServiceBinding: [BINDING.redirect, BINDING.post],
    // One redirect after another, not the iframe page: nothing for a test to wait on.
    logouttype: 'traditional',
    authproc,
  };
}

function spRemote({ acsUrl, sloUrl, spCertPem, signedRequests, encryptAssertion, nameIdFormatUrn, attributeNameFormat }) {
  const sp = {
    AssertionConsumerService: [{ Binding: BINDING.post, Location: acsUrl, index: 0 }],
    NameIDFormat: nameIdFormatUrn,
    'attributes.NameFormat': ATTRNAME_FORMATS[attributeNameFormat],
    'validate.authnrequest': signedRequests,
    'validate.logout': signedRequests,
    'sign.logout': true,
    'redirect.sign': true,
    'assertion.encryption': encryptAssertion,
  };
  if (sloUrl) sp.SingleLogoutService = [{ Binding: BINDING.redirect, Location: sloUrl }];
  if (spCertPem) sp.certData = pemBody(spCertPem);
  return sp;
}

function authsources(users) {
  const entries = {};
  for (const [login, { password, ...attributes }] of Object.entries(users)) {
    if (login.includes(':') || !password) {
      throw new TypeError(`startSamlIdp: user ${login}: no colon in a login name, and a password is required`);
    }
    const values = { uid: login, ...attributes };
    entries[`${login}:${password}`] = Object.fromEntries(
      Object.entries(values).map(([name, value]) => [name, (Array.isArray(value) ? value : [value]).map(String)]),
    );
  }
  return {
    // A list with a string first and named entries after it is a PHP array that JSON
    // cannot say; see writePhp.
    'partner-users': { 0: 'exampleauth:UserPass', ...entries },
  };
}

/**
 * Writes a PHP file that sets $config (or one $metadata entry per key) from JSON:
 * the values come from the test, and JSON needs no PHP quoting of them.
 * json_decode(..., true) turns objects into PHP arrays, {"0": "a", "k": ...} included.
 */
async function writePhp(file, kind, value) {
  const json = JSON.stringify(value, null, 2);
  const body =
    kind === 'config'
      ? `$config = json_decode(<<<'JSON'\n${json}\nJSON, true, 512, JSON_THROW_ON_ERROR);\n`
      : `foreach (json_decode(<<<'JSON'\n${json}\nJSON, true, 512, JSON_THROW_ON_ERROR) as $entityId => $entity) {\n` +
        `    $metadata[$entityId] = $entity;\n}\n`;
  await writeFile(file, `<?php\n// Written by e2e/lib/saml-idp.js for one test run.\n${body}`);
}

function pemBody(pem) {
  const match = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (!match) throw new TypeError('startSamlIdp: spCertPem is not a PEM certificate');
  return match[1].replace(/\s+/g, '');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startPhp({ port, dirs }) {
  // php -S routes /module.php/core/... and /saml2/idp/SSOService.php?... itself: it
  // finds the script in the path and hands the rest over as PATH_INFO.
  const out = createWriteStream(path.join(dirs.log, 'php-server.log'));
  await new Promise((resolve) => out.once('open', resolve));
  const child = spawn('php', ['-S', `127.0.0.1:${port}`, '-t', path.join(SSP_ROOT, 'www')], {
    env: { ...process.env, SIMPLESAMLPHP_CONFIG_DIR: dirs.config },
    stdio: ['ignore', out, out],
  });
  let exited = false;
  const exit = new Promise((resolve) => {
    child.once('exit', resolve);
    child.once('error', resolve); // php not installed: there is no 'exit' then
  }).then(() => {
    exited = true;
  });
  // A test that fails before its stop() must not leave php serving after the test
  // process is gone.
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  return {
    exited: () => exited,
    stop: async () => {
      process.off('exit', killOnExit);
      if (!exited) child.kill('SIGTERM');
      await exit;
      out.end();
    },
  };
}

async function waitForMetadata(url, php) {
  const deadline = Date.now() + 15_000;
  let last;
  while (Date.now() < deadline) {
    if (php.exited()) throw new Error(`php -S for the SAML IdP exited at start (${url}): port taken or php missing`);
    try {
      const res = await fetch(url);
      const text = await res.text();
      if (res.ok && text.includes('EntityDescriptor')) return text;
      // Anything else is SimpleSAMLphp's error page (HTTP 200 or 500): a configuration
      // error, not a slow start.
      last = `HTTP ${res.status} "${/<title>([^<]*)<\/title>/.exec(text)?.[1] ?? ''}"`;
      break;
    } catch (err) {
      last = err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`SAML IdP did not serve its metadata at ${url}: ${last}`);
}

/**
 * The end of SimpleSAMLphp's log, or else of php's own output: when SimpleSAMLphp fails
 * before its logger is set up, it writes to php's error log (stderr) instead. The
 * built-in server's access lines are left out.
 */
async function logTail(dirs) {
  const read = (name) => readFile(path.join(dirs.log, name), 'utf8').catch(() => '');
  const lines = (await read('simplesamlphp.log')).split('\n').filter(Boolean);
  const php = (await read('php-server.log')).split('\n').filter((line) => line && !/ (Accepted|Closing)$| \[\d{3}\]: /.test(line));
  const tail = (lines.length ? lines : php).slice(-20);
  return tail.length ? `${lines.length ? 'SimpleSAMLphp log' : 'php -S output'}:\n${tail.join('\n')}` : '';
}
