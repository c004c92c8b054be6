// The admin API's contract, checked by parties that are not Gatehouse.
//
// 1. The document at /admin/v1/openapi.json must be valid OpenAPI 3.1:
//    @seriousme/openapi-schema-validator checks it against the specification's own
//    JSON Schema.
// 2. A recorded sequence of requests — the successes and the refusals an operator's
//    tooling meets — is replayed against a real `gatehouse serve`. Every answer
//    (status, content type, body) must be one the document describes for that
//    operation, and every body sent must match the document's request schema; ajv
//    judges both in JSON Schema 2020-12, the dialect of OpenAPI 3.1. Every
//    operation the document lists must be exercised, so none goes unchecked.
//
// The server log lands in e2e/artifacts/admin-openapi/ (not committed).

import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

import { clientCredentialsToken, startGatehouse } from './lib/server.js';
import { startSmtpCatcher } from './lib/smtp.js';
import { closeAll } from './lib/stage.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts', 'admin-openapi');
const REASON = { 'Gatehouse-Reason': 'contract test' };

/** The requests, in order; `{name}` in a path or header is filled from `seen`. */
const RECORDED = [
  { method: 'GET', path: '/tenant', status: 200 },
  { method: 'POST', path: '/users', status: 201, save: 'user',
    body: { email: 'ada.lovelace@example.com', given_name: 'Ada', family_name: 'Lovelace', invite: false } },
  { method: 'POST', path: '/users', status: 409, body: { email: 'ada.lovelace@example.com', invite: false } },
  { method: 'POST', path: '/users', status: 400, invalid: true, body: { email: 'grace@example.com', admin: true } },
  { method: 'GET', path: '/users?limit=10', status: 200 },
  { method: 'GET', path: `/users?limit=10&filter=${encodeURIComponent('emails.value co "@example.com" and active eq true')}`, status: 200 },
  { method: 'GET', path: `/users?filter=${encodeURIComponent('emails.value co')}`, status: 400 },
  { method: 'GET', path: '/users?limit=0', status: 400 },
  { method: 'GET', path: '/users?colour=blue', status: 400 },
  { method: 'GET', path: '/users/{user}', status: 200, saveHeader: ['etag', 'etag'] },
  { method: 'GET', path: '/users/not-a-user-id', status: 404 },
  { method: 'PATCH', path: '/users/{user}', status: 428, body: { locale: 'en-GB' },
    headers: { 'Content-Type': 'application/merge-patch+json' } },
  { method: 'PATCH', path: '/users/{user}', status: 200, body: { locale: 'en-GB', timezone: null },
    headers: { 'If-Match': '{etag}', 'Content-Type': 'application/merge-patch+json' } },
  { method: 'PATCH', path: '/users/{user}', status: 412, body: { locale: 'de-DE' },
    headers: { 'If-Match': '{etag}', 'Content-Type': 'application/merge-patch+json' } },
  { method: 'GET', path: '/users/{user}/sessions', status: 200 },
  { method: 'POST', path: '/users/{user}/disable', status: 400 },
  { method: 'POST', path: '/users/{user}/disable', status: 200, headers: REASON },
  { method: 'POST', path: '/users/{user}/enable', status: 200, headers: REASON },
  { method: 'POST', path: '/roles', status: 201, body: { name: 'auditor', description: 'reads the log' } },
  { method: 'POST', path: '/roles', status: 400, body: { name: 'two words' } },
  { method: 'GET', path: '/roles', status: 200 },
  { method: 'PUT', path: '/users/{user}/roles/auditor', status: 200 },
  { method: 'PUT', path: '/users/{user}/roles/nobody', status: 404 },
  { method: 'DELETE', path: '/users/{user}/roles/auditor', status: 200 },
  { method: 'POST', path: '/groups', status: 201, body: { display_name: 'Engineering' } },
  { method: 'GET', path: '/groups', status: 200 },
  { method: 'PUT', path: '/users/{user}/groups/Engineering', status: 200 },
  { method: 'DELETE', path: '/users/{user}/groups/Engineering', status: 200 },
  { method: 'POST', path: '/clients', status: 201, save: 'client',
    body: { name: 'Billing portal', redirect_uris: ['https://billing.example.com/callback'] } },
  { method: 'POST', path: '/clients', status: 400,
    body: { name: 'Loose', redirect_uris: ['http://evil.example.com/cb'] } },
  { method: 'GET', path: '/clients', status: 200 },
  { method: 'GET', path: '/clients/{client}', status: 200, saveHeader: ['etag', 'clientEtag'] },
  { method: 'PATCH', path: '/clients/{client}', status: 428, body: { name: 'Billing' } },
  { method: 'PATCH', path: '/clients/{client}', status: 400, body: { redirect_uris: ['http://evil.example.com/cb'] },
    headers: { 'If-Match': '{clientEtag}' } },
  { method: 'PATCH', path: '/clients/{client}', status: 200,
    body: { name: 'Billing', cors_origins: ['https://billing.example.com'], backchannel_logout_uri: null },
    headers: { 'If-Match': '{clientEtag}' } },
  { method: 'PATCH', path: '/clients/{client}', status: 412, body: { name: 'Late' },
    headers: { 'If-Match': '{clientEtag}' } },
  { method: 'POST', path: '/clients/{client}/secret', status: 200 },
  { method: 'DELETE', path: '/clients/{client}', status: 204 },
  { method: 'GET', path: '/clients/{client}', status: 404 },
  { method: 'GET', path: '/users/{user}/export', status: 200 },
  { method: 'GET', path: '/users/{user}/consents', status: 200 },
  { method: 'GET', path: '/users/{user}/audit', status: 200 },
  { method: 'GET', path: '/theme', status: 200 },
  { method: 'PUT', path: '/theme', status: 200, body: { primary_color: '#0a7a55', display_name: 'Acme' } },
  { method: 'PUT', path: '/theme', status: 400, body: { primary_colour: '#000000' } },
  { method: 'DELETE', path: '/theme', status: 200 },
  { method: 'GET', path: '/keys', status: 200 },
  { method: 'POST', path: '/keys/rotate', status: 200, body: { alg: 'ES256' } },
  { method: 'POST', path: '/keys/rotate', status: 400, body: { alg: 'HS256' } },
  { method: 'PUT', path: '/policies', status: 400, body: 'permit(principal, action, resource',
    headers: { 'Content-Type': 'text/plain' } },
  { method: 'PUT', path: '/policies', status: 201, body: '@id("everyone")\npermit(principal, action, resource);',
    headers: { 'Content-Type': 'text/plain' } },
  { method: 'GET', path: '/policies', status: 200 },
  { method: 'POST', path: '/policies/test?client={adminClient}', status: 200,
    body: { subject: { type: 'user', id: '{user}' }, action: { name: 'read' }, resource: { type: 'document', id: 'd1' } } },
  { method: 'GET', path: '/decisions?limit=5', status: 200 },
  { method: 'GET', path: '/decisions?limit=0', status: 400 },
  { method: 'POST', path: '/purposes', status: 201,
    body: { slug: 'newsletter', name: 'Newsletter', description: 'Monthly news', scopes: ['newsletter'], legal_basis: 'consent' } },
  { method: 'POST', path: '/purposes', status: 409,
    body: { slug: 'newsletter', name: 'Newsletter', description: 'Monthly news', legal_basis: 'consent' } },
  { method: 'GET', path: '/purposes', status: 200 },
  { method: 'PATCH', path: '/purposes/newsletter', status: 200, body: { version: 1, name: 'News' } },
  { method: 'PATCH', path: '/purposes/newsletter', status: 409, body: { version: 1, name: 'Old news' } },
  { method: 'DELETE', path: '/users/{user}/consents/{adminClient}/newsletter', status: 400 },
  { method: 'DELETE', path: '/users/{user}/consents/{adminClient}/newsletter', status: 200, headers: REASON },
  { method: 'DELETE', path: '/users/{user}/consents/{adminClient}/nonsense', status: 404, headers: REASON },
  { method: 'DELETE', path: '/users/{user}/consents/{adminClient}', status: 200, headers: REASON },
  { method: 'DELETE', path: '/users/{user}/consents/nobody', status: 404, headers: REASON },
  { method: 'GET', path: '/scopes', status: 200 },
  { method: 'PUT', path: '/scopes/staff', status: 200, body: { claims: ['roles', 'groups', 'department'] } },
  { method: 'PUT', path: '/scopes/staff', status: 400, body: { claims: ['aud'] } },
  { method: 'PUT', path: '/scopes/openid', status: 400, body: { claims: ['email'] } },
  { method: 'DELETE', path: '/scopes/staff', status: 200 },
  { method: 'GET', path: '/user-extension', status: 404 },
  { method: 'PUT', path: '/user-extension', status: 200,
    body: { id: 'urn:acme:params:scim:schemas:extension:acme:2.0:User', name: 'AcmeUser',
      attributes: [{ name: 'badgeNumber', type: 'integer', required: true }] } },
  { method: 'GET', path: '/user-extension', status: 200 },
  { method: 'PUT', path: '/user-extension', status: 400,
    body: { id: 'nope', name: 'X', attributes: [{ name: 'a', type: 'string' }] } },
  { method: 'DELETE', path: '/user-extension', status: 204 },
  { method: 'POST', path: '/connections', status: 201,
    body: { slug: 'partner', display_name: 'Partner Corp', client_secret: 'partner-secret', domains: ['Partner.Example'],
      settings: { issuer: 'https://partner.example', client_id: 'gatehouse', scopes: ['email', 'groups'] } } },
  { method: 'POST', path: '/connections', status: 409,
    body: { slug: 'partner', display_name: 'Again', client_secret: 's', settings: { issuer: 'https://again.example', client_id: 'g' } } },
  { method: 'POST', path: '/connections', status: 400,
    body: { slug: 'broken', display_name: 'Broken', client_secret: 's', settings: { issuer: 'not a URL', client_id: 'g' } } },
  { method: 'POST', path: '/connections', status: 400,
    body: { slug: 'rules', display_name: 'Rules', client_secret: 's', settings: { issuer: 'https://rules.example', client_id: 'g' },
      mapping: { rules: [{ from: 'groups', to: 'owner' }] } } },
  { method: 'GET', path: '/connections', status: 200 },
  { method: 'GET', path: '/connections/partner', status: 200, saveHeader: ['etag', 'connectionEtag'] },
  { method: 'PATCH', path: '/connections/partner', status: 428, body: { enabled: false } },
  { method: 'PATCH', path: '/connections/partner', status: 200,
    body: { display_name: 'Partner', logo_url: null, mapping: { rules: [{ from: 'groups', to: 'group', transforms: [{ regex: '^sales-(.+)$' }] }] } },
    headers: { 'If-Match': '{connectionEtag}', 'Content-Type': 'application/merge-patch+json' } },
  { method: 'PATCH', path: '/connections/partner', status: 412, body: { enabled: false },
    headers: { 'If-Match': '{connectionEtag}' } },
  { method: 'POST', path: '/connections/partner/mapping/test', status: 200,
    body: { claims: { groups: ['sales-emea', 'staff'] } } },
  { method: 'POST', path: '/connections/partner/mapping/test', status: 400, invalid: true, body: { claims: 'groups' } },
  { method: 'GET', path: '/users/{user}/identities', status: 200 },
  { method: 'DELETE', path: '/users/{user}/identities/01900000-0000-7000-8000-000000000000', status: 404, headers: REASON },
  { method: 'DELETE', path: '/connections/partner', status: 400 },
  { method: 'DELETE', path: '/connections/partner', status: 204, headers: REASON },
  { method: 'GET', path: '/connections/partner', status: 404 },
  { method: 'POST', path: '/users/{user}/reset', status: 200, headers: REASON },
  { method: 'DELETE', path: '/users/{user}/sessions', status: 200, headers: REASON },
  { method: 'GET', path: '/audit?action=user.&limit=50', status: 200 },
  { method: 'GET', path: '/audit?action=user.', status: 200, headers: { Accept: 'application/x-ndjson' } },
  { method: 'GET', path: '/audit?since=yesterday', status: 400 },
  { method: 'DELETE', path: '/users/{user}', status: 204, headers: REASON },
  { method: 'GET', path: '/users/{user}', status: 404 },
  { method: 'POST', path: '/tenants', status: 201, token: 'platform',
    body: { slug: 'acme', display_name: 'Acme', settings: { registration: { enabled: false } } } },
  { method: 'POST', path: '/tenants', status: 409, token: 'platform', body: { slug: 'acme', display_name: 'Acme' } },
  { method: 'GET', path: '/tenants', status: 200, token: 'platform' },
  { method: 'GET', path: '/tenants', status: 403 },
  { method: 'GET', path: '/tenants/acme', status: 200, token: 'platform', saveHeader: ['etag', 'tenantEtag'] },
  { method: 'PATCH', path: '/tenants/acme', status: 428, token: 'platform', body: { display_name: 'Acme Corp' } },
  { method: 'PATCH', path: '/tenants/acme', status: 200, token: 'platform', body: { display_name: 'Acme Corp' },
    headers: { 'If-Match': '{tenantEtag}' } },
  { method: 'PATCH', path: '/tenants/acme', status: 412, token: 'platform', body: { display_name: 'Acme Inc' },
    headers: { 'If-Match': '{tenantEtag}' } },
  { method: 'GET', path: '/tenants/acme', status: 200, token: 'platform', saveHeader: ['etag', 'tenantEtag'] },
  { method: 'PATCH', path: '/tenants/acme', status: 400, token: 'platform', body: { settings: { mfa: { required: 'often' } } },
    headers: { 'If-Match': '{tenantEtag}' } },
  { method: 'POST', path: '/tenants/acme/disable', status: 400, token: 'platform' },
  { method: 'DELETE', path: '/tenants/acme', status: 409, token: 'platform', headers: REASON },
  { method: 'POST', path: '/tenants/acme/disable', status: 200, token: 'platform', headers: REASON },
  { method: 'POST', path: '/tenants/default/disable', status: 400, token: 'platform', headers: REASON },
  { method: 'POST', path: '/tenants/acme/enable', status: 200, token: 'platform', headers: REASON },
  { method: 'POST', path: '/tenants', status: 201, token: 'platform', body: { slug: 'gone', display_name: 'Gone' } },
  { method: 'POST', path: '/tenants/gone/disable', status: 200, token: 'platform', headers: REASON },
  { method: 'DELETE', path: '/tenants/gone', status: 400, token: 'platform' },
  { method: 'DELETE', path: '/tenants/default', status: 400, token: 'platform', headers: REASON },
  { method: 'DELETE', path: '/tenants/gone', status: 204, token: 'platform', headers: REASON },
  { method: 'GET', path: '/tenants/gone', status: 404, token: 'platform' },
  { method: 'GET', path: '/tenant', status: 401, token: 'none' },
  { method: 'GET', path: '/tenant', status: 401, token: 'forged' },
  { method: 'GET', path: '/tenant', status: 403, token: 'unscoped' },
];

describe('the admin API contract (OpenAPI 3.1)', { timeout: 120_000 }, () => {
  let smtp;
  let server;
  let doc;
  let resolved;
  const tokens = {};
  let adminClientId;

  before(async () => {
    await rm(ARTIFACTS, { recursive: true, force: true });
    await mkdir(ARTIFACTS, { recursive: true });
    smtp = await startSmtpCatcher();
    server = await startGatehouse({ smtpPort: smtp.port, logFile: path.join(ARTIFACTS, 'server.log') });
    const audience = `${server.baseUrl}/admin/v1`;
    ({ token: tokens.admin, id: adminClientId } = await clientCredentialsToken(server, ['--scope', 'admin', '--audience', audience]));
    ({ token: tokens.unscoped } = await clientCredentialsToken(server, ['--scope', 'reports', '--audience', audience]));
    ({ token: tokens.platform } = await clientCredentialsToken(server, ['--scope', 'platform', '--audience', audience]));
    tokens.forged = `${tokens.admin.slice(0, -4)}AAAA`;
  });

  after(() => closeAll([server?.stop(), smtp?.close()]));

  test('the document is valid OpenAPI 3.1, needs no token, and names this issuer', async () => {
    const answer = await fetch(`${server.baseUrl}/admin/v1/openapi.json`);
    assert.equal(answer.status, 200);
    doc = await answer.json();
    const validator = new Validator();
    const verdict = await validator.validate(structuredClone(doc));
    assert.ok(verdict.valid, JSON.stringify(verdict.errors, null, 2));
    assert.equal(validator.version, '3.1');
    resolved = validator.resolveRefs();
    assert.equal(doc.servers[0].url, `${server.baseUrl}/admin/v1`);
    const flow = doc.components.securitySchemes.admin_token.flows.clientCredentials;
    assert.equal(flow.tokenUrl, `${server.baseUrl}/oauth2/token`);
    assert.ok('admin' in flow.scopes);
  });

  test('recorded requests get answers the document describes', async () => {
    assert.ok(resolved, 'the document was read');
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    addFormats(ajv);
    // OpenAPI's numeric format hints (int32, int64, …) constrain nothing JSON Schema
    // would check; integer-ness is the `type`'s job.
    for (const hint of ['int32', 'int64', 'uint16', 'uint32', 'uint64', 'double', 'float']) {
      ajv.addFormat(hint, true);
    }
    const seen = { adminClient: adminClientId };
    const exercised = new Set();
    for (const recorded of RECORDED) {
      const fill = (text) => text.replace(/\{(\w+)\}/g, (_, name) => {
        assert.ok(name in seen, `${name} was saved before ${recorded.method} ${recorded.path}`);
        return encodeURIComponent(seen[name]);
      });
      const url = `${server.baseUrl}/admin/v1${fill(recorded.path)}`;
      const label = `${recorded.method} ${recorded.path} → ${recorded.status}`;
      const headers = { ...(recorded.headers ?? {}) };
      for (const [name, value] of Object.entries(headers)) headers[name] = value.replace(/\{(\w+)\}/g, (_, n) => seen[n]);
      if (recorded.body !== undefined) headers['Content-Type'] ??= 'application/json';
      const token = tokens[recorded.token ?? 'admin'];
      if (token) headers.Authorization = `Bearer ${token}`;

      const body = typeof recorded.body === 'object'
        ? JSON.parse(JSON.stringify(recorded.body).replace(/\{(\w+)\}/g, (_, n) => seen[n]))
        : recorded.body;
      const { template, operation } = operationFor(resolved, recorded.method, recorded.path);
      exercised.add(`${recorded.method} ${template}`);
      if (recorded.body !== undefined) {
        const media = operation.requestBody?.content?.[headers['Content-Type']];
        assert.ok(media, `${label}: the document takes ${headers['Content-Type']}`);
        const valid = ajv.validate(media.schema, body);
        assert.equal(valid, !recorded.invalid, `${label}: request body against the schema: ${ajv.errorsText()}`);
      }

      const answer = await fetch(url, {
        method: recorded.method,
        headers,
        body: typeof body === 'string' ? body : body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await answer.text();
      assert.equal(answer.status, recorded.status, `${label}: got ${answer.status} ${text}`);
      const described = operation.responses[String(answer.status)] ?? operation.responses.default;
      assert.ok(described, `${label}: the document lists status ${answer.status}`);
      for (const header of Object.keys(described.headers ?? {})) {
        assert.ok(answer.headers.has(header), `${label}: the document promises the header ${header}`);
      }
      const contentType = (answer.headers.get('content-type') ?? '').split(';')[0].trim();
      if (!text) {
        assert.ok(!described.content, `${label}: an empty answer where the document describes a body`);
        continue;
      }
      const media = described.content?.[contentType];
      assert.ok(media, `${label}: the document describes ${contentType} (it has ${Object.keys(described.content ?? {})})`);
      const bodies = contentType === 'application/x-ndjson'
        ? text.trim().split('\n').map((line) => JSON.parse(line))
        : [JSON.parse(text)];
      assert.ok(bodies.length > 0, `${label}: some content`);
      for (const body of bodies) {
        assert.ok(ajv.validate(media.schema, body), `${label}: ${ajv.errorsText()}\n${JSON.stringify(body, null, 2)}`);
      }
      if (recorded.save === 'user') seen.user = bodies[0].id;
      if (recorded.save === 'client') seen.client = bodies[0].client_id;
      if (recorded.saveHeader) seen[recorded.saveHeader[1]] = answer.headers.get(recorded.saveHeader[0]);
    }
    const listed = [];
    for (const [template, item] of Object.entries(resolved.paths)) {
      for (const method of ['get', 'put', 'post', 'delete', 'patch']) {
        if (item[method]) listed.push(`${method.toUpperCase()} ${template}`);
      }
    }
    const missed = listed.filter((operation) => !exercised.has(operation));
    assert.deepEqual(missed, [], 'every operation of the document is replayed');
  });
});

/** The operation of the document that `concrete` (a path with `{name}`s unfilled) is. */
function operationFor(doc, method, concrete) {
  const bare = concrete.split('?')[0];
  const verb = method.toLowerCase();
  // An exact template first: `/users/{user}` is the template itself.
  if (doc.paths[bare]?.[verb]) return { template: bare, operation: doc.paths[bare][verb] };
  for (const [template, item] of Object.entries(doc.paths)) {
    const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (item[verb] && pattern.test(bare)) return { template, operation: item[verb] };
  }
  assert.fail(`${method} ${concrete} is not in the document`);
}
