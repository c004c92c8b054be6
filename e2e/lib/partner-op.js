// "Partner": an upstream OpenID Provider that is not Gatehouse, for federation tests
// ("Sign in with Partner"). It is panva's `oidc-provider` (a certified OpenID
// Provider), run in this test process on http://127.0.0.1:<free port>, with one
// confidential client, `gatehouse`, and accounts made up on the spot.
//
// What a browser meets there (oidc-provider's development-only pages, `devInteractions`):
//
//   sign-in page   /interaction/<uid>, heading "Sign-in": a text field `login`
//                  (placeholder "Enter any login"), a password field `password`
//                  (placeholder "and password"; any value is accepted) and the
//                  button "Sign-in". The fields have no <label>: find them by name or
//                  placeholder, e.g. page.locator('input[name=login]') or
//                  page.getByPlaceholder('Enter any login'). A link "[ Cancel ]" ends
//                  the request with error=access_denied.
//   consent page   only with `consent: true` (see below): heading "Authorize", the
//                  requested scopes and claims listed, and the button "Continue".
//   sign-out page  (RP-initiated logout, /session/end) "Do you want to sign-out from
//                  127.0.0.1:<port>?" with the buttons "Yes, sign me out" and "No,
//                  stay signed in"; then a redirect to the post_logout_redirect_uri.
//
// By default there is no consent page: like a company's own IdP for its own partner
// app, the grant for `gatehouse` is given on sign-in with whatever it asked for. So a
// sign-in is: fill `login` and `password`, click "Sign-in", and the browser is sent
// back to the redirect URI. A second authorization in the same browser session needs
// no clicks at all (the OP's session cookie), unless the request says prompt=login.
//
// The login name picks the account: a key of `users`, or any other name, which gets
// `<name>@partner.example` (the name itself when it has an @), email_verified true and
// no groups. `sub` is the login name. `acr` is the first of the request's acr_values
// that this OP knows (urn:partner:pwd, urn:partner:mfa), else urn:partner:pwd; `amr`
// follows it (["pwd"] or ["pwd", "otp"]). devInteractions sets no acr of its own.
//
// The ID token carries the scopes' claims (email, email_verified, name, given_name,
// family_name, groups), not only UserInfo: `conformIdTokenClaims: false`.
//
// Nothing on its pages reaches off the machine: oidc-provider's built-in pages import a
// web font from a public host, which this module strips from every HTML answer.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

export const PARTNER_CLIENT_ID = 'gatehouse';
export const PARTNER_ACR_VALUES = Object.freeze(['urn:partner:pwd', 'urn:partner:mfa']);
export const PARTNER_SCOPES = Object.freeze(['openid', 'email', 'profile', 'groups']);

const CLAIMS = {
  // acr, amr and auth_time describe the sign-in, not the account. oidc-provider puts
  // them in an ID token only when the request asks (acr_values, max_age, prompt=login)
  // unless a granted scope names them: `openid` does, so every ID token has them.
  openid: ['sub', 'acr', 'amr', 'auth_time'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name'],
  groups: ['groups'],
  sid: null,
};

const WEB_FONT_IMPORT = /@import url\(https:\/\/fonts\.googleapis\.com\/[^)]*\);?/g;

/**
 * Starts the OP and resolves once it listens.
 *
 * @param {{
 *   redirectUris: string[],
 *   postLogoutRedirectUris?: string[],
 *   clientSecret?: string,
 *   users?: Record<string, {email?: string, email_verified?: boolean, name?: string,
 *     given_name?: string, family_name?: string, groups?: string[]}>,
 *   consent?: boolean,
 *   keyClients?: {clientId: string, jwksUri: string, redirectUris: string[]}[],
 * }} options `clientSecret` is made up when not given (read it from the result);
 *   `keyClients` are further clients that authenticate with private_key_jwt (ES256),
 *   their public keys read from `jwksUri` when they first call the token endpoint;
 *   `users` maps login names to their claims; `consent: true` shows the consent page
 *   (button "Continue") on a client's first authorization instead of granting at once.
 * @returns {Promise<{issuer: string, clientId: string, clientSecret: string,
 *   provider: import('oidc-provider').default, errors: object[], close: () => Promise<void>}>}
 *   `provider` is the oidc-provider instance, for a test that needs to look inside;
 *   `errors` collects what the partner refused ({event, error, description, detail}),
 *   for a test's failure message.
 */
export async function startPartnerOp({
  redirectUris,
  postLogoutRedirectUris = [],
  clientSecret = randomBytes(24).toString('base64url'),
  users = {},
  consent = false,
  keyClients = [],
}) {
  if (!Array.isArray(redirectUris) || redirectUris.length === 0) {
    throw new TypeError('startPartnerOp: redirectUris must name at least one redirect URI');
  }

  // Listen first, so that the issuer (which every token names) can carry the port.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = {
    ...privateKey.export({ format: 'jwk' }),
    kid: `partner-${randomBytes(6).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: PARTNER_CLIENT_ID,
        client_secret: clientSecret,
        client_name: 'Gatehouse',
        token_endpoint_auth_method: 'client_secret_basic',
        response_types: ['code'],
        grant_types: ['authorization_code'],
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutRedirectUris,
        id_token_signed_response_alg: 'RS256',
      },
      // Clients that authenticate with a signed JWT (private_key_jwt), their keys
      // fetched from their jwks_uri.
      ...keyClients.map(({ clientId, jwksUri, redirectUris: uris }) => ({
        client_id: clientId,
        client_name: 'Gatehouse (key)',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks_uri: jwksUri,
        response_types: ['code'],
        grant_types: ['authorization_code'],
        redirect_uris: uris,
        id_token_signed_response_alg: 'RS256',
      })),
    ],
    jwks: { keys: [signingKey] },
    // oidc-provider refuses to fetch from loopback addresses (its SSRF guard), and
    // in these tests every party is on loopback: clients' jwks_uri is Gatehouse.
    fetch: (url, options) => {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
    responseTypes: ['code'],
    scopes: [...PARTNER_SCOPES],
    claims: CLAIMS,
    acrValues: [...PARTNER_ACR_VALUES],
    // The scopes' claims in the ID token too (the default keeps them to UserInfo for
    // response_type=code).
    conformIdTokenClaims: false,
    // oidc-provider asks confidential clients for PKCE only under FAPI profiles; this
    // partner asks every client (S256 only, the default method).
    pkce: { required: () => true },
    findAccount: (_ctx, sub) => account(sub, users),
    ...(consent ? {} : { loadExistingGrant: grantEverythingAsked }),
    cookies: { keys: [randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
  });

  // devInteractions finishes a sign-in with the account alone; add what a real
  // partner's sign-in would say about itself (see the top of the file).
  const interactionResult = provider.interactionResult.bind(provider);
  provider.interactionResult = async (req, res, result, options) => {
    if (result?.login && !result.login.acr) {
      const { params } = await provider.interactionDetails(req, res);
      const acr = String(params.acr_values ?? '').split(' ').find((value) => PARTNER_ACR_VALUES.includes(value)) ?? PARTNER_ACR_VALUES[0];
      const amr = acr === 'urn:partner:mfa' ? ['pwd', 'otp'] : ['pwd'];
      result = { ...result, login: { ...result.login, acr, amr } };
    }
    return interactionResult(req, res, result, options);
  };

  provider.use(async (ctx, next) => {
    await next();
    if (typeof ctx.body === 'string' && ctx.body.includes('@import url(https://fonts.googleapis.com/')) {
      ctx.body = ctx.body.replace(WEB_FONT_IMPORT, '');
    }
  });

  // What the partner refused, and why (`error_detail` says more than the answer does):
  // for a test's failure message.
  const errors = [];
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'end_session.error', 'server_error']) {
    provider.on(event, (_ctx, err) => {
      errors.push({ event, error: err.error ?? err.name, description: err.error_description ?? err.message, detail: err.error_detail });
    });
  }

  server.on('request', provider.callback());

  return {
    issuer,
    clientId: PARTNER_CLIENT_ID,
    clientSecret,
    provider,
    errors,
    close: () =>
      new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Browsers keep connections open; without this, close waits for them.
        server.closeAllConnections();
      }),
  };
}

/** The account behind a login name, as oidc-provider's `findAccount` answers. */
function account(loginName, users) {
  if (!loginName) return undefined;
  const known = Object.hasOwn(users, loginName) ? users[loginName] : undefined;
  const profile = known ?? {
    email: loginName.includes('@') ? loginName : `${loginName}@partner.example`,
    email_verified: true,
    groups: [],
  };
  return {
    accountId: loginName,
    // oidc-provider keeps only the claims that the granted scopes and claims allow.
    claims: async () => ({ sub: loginName, ...profile }),
  };
}

/**
 * The partner trusts its `gatehouse` client: the grant is the session's grant, extended
 * to every scope and claim the request asks for, so no consent page is shown.
 */
async function grantEverythingAsked(ctx) {
  const { oidc } = ctx;
  const { accountId } = oidc.session;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  const existing = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  const grant = existing?.accountId === accountId ? existing : new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}
