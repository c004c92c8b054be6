// SCIM 2.0 conformance, judged by a party that is not Gatehouse: scim2-tester
// (from PyPI, installed by `cargo xtask e2e` into a virtual environment) runs every
// check it has — discovery, methods, create, read, query with attributes, PUT,
// PATCH add/replace/remove on every attribute, delete — for Users (with the
// enterprise extension) and Groups against a real `gatehouse serve`, with a token
// of a client registered through the CLI. No check is left out; anything worse
// than ACCEPTABLE fails (see e2e/scim/conformance.py).
//
// The server log and the tester's report land in e2e/artifacts/scim-conformance/.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { clientCredentialsToken, startGatehouse } from './lib/server.js';
import { startSmtpCatcher } from './lib/smtp.js';
import { closeAll } from './lib/stage.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts', 'scim-conformance');

let smtp;
let server;

before(async () => {
  await rm(ARTIFACTS, { recursive: true, force: true });
  await mkdir(ARTIFACTS, { recursive: true });
  smtp = await startSmtpCatcher();
  server = await startGatehouse({ smtpPort: smtp.port, logFile: path.join(ARTIFACTS, 'server.log') });
});

after(async () => {
  await closeAll([server?.stop(), smtp?.close()]);
});


test('scim2-tester finds every check passing for Users and Groups', async () => {
  const python = process.env.GATEHOUSE_E2E_PYTHON;
  assert.ok(python, 'GATEHOUSE_E2E_PYTHON names the Python with scim2-tester (cargo xtask e2e sets it)');
  const { token } = await clientCredentialsToken(
    server,
    ['--scope', 'scim', '--audience', `${server.baseUrl}/scim/v2`],
    'HR sync',
  );
  const { code, stdout, stderr } = await new Promise((resolve) => {
    execFile(
      python,
      [path.join(HERE, 'scim', 'conformance.py'), `${server.baseUrl}/scim/v2`, token],
      { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      (error, out, err) => resolve({ code: error ? (error.code ?? 1) : 0, stdout: out, stderr: err }),
    );
  });
  await writeFile(path.join(ARTIFACTS, 'report.txt'), `${stdout}\n${stderr}`);
  const summary = stdout.trim().split('\n').at(-1) ?? '';
  assert.equal(code, 0, `scim2-tester reported failures (${summary}):\n${stdout}\n${stderr}`);
  // Both resource types were exercised, not only discovery.
  for (const kind of ['[User] check_replace_attribute', '[Group] check_remove_attribute']) {
    assert.ok(stdout.includes(`SUCCESS    ${kind}`), `${kind} ran and passed:\n${stdout}`);
  }
  assert.match(summary, /^\d+ checks: \{'SUCCESS': \d+\}$/, summary);
});
