// Starts a real `gatehouse serve` for one test file: its own temporary working
// directory (so its SQLite data and generated master key are thrown away), a port of
// its own, mail sent to the test's SMTP catcher, and cheap password hashing.

import { execFile, spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A port nobody listens on right now: bind to 0, read the port, let it go. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The binary under test; `cargo xtask e2e` builds it and sets GATEHOUSE_BIN. */
export function gatehouseBinary() {
  const bin = process.env.GATEHOUSE_BIN;
  if (!bin) {
    throw new Error('GATEHOUSE_BIN is not set: run the browser tests with `cargo xtask e2e`, which builds the server and sets it');
  }
  if (!existsSync(bin)) throw new Error(`GATEHOUSE_BIN=${bin} does not exist; build it with \`cargo xtask e2e\``);
  return bin;
}

/**
 * Starts the server and resolves once `/readyz` answers 200.
 * The browser must use `baseUrl` (http://localhost:PORT): it is the configured public
 * URL, which links in mails use and which WebAuthn needs to be `localhost`.
 *
 * @param {{smtpPort: number, logFile: string, env?: Record<string, string>, readyTimeoutMs?: number}} options
 */
export async function startGatehouse({ smtpPort, logFile, env = {}, readyTimeoutMs = 60_000 }) {
  const bin = gatehouseBinary();
  const port = await freePort();
  const baseUrl = `http://localhost:${port}`;
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-e2e-'));

  // Unknown GATEHOUSE_* variables stop the server, and a developer's own settings
  // (a database URL, a config file) must not leak into the test: pass none of them on.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('GATEHOUSE_')),
  );
  const childEnv = {
    ...inherited,
    GATEHOUSE_SERVER__LISTEN: `127.0.0.1:${port}`,
    GATEHOUSE_SERVER__PUBLIC_URL: baseUrl,
    GATEHOUSE_MAIL__SMTP_HOST: '127.0.0.1',
    GATEHOUSE_MAIL__SMTP_PORT: String(smtpPort),
    GATEHOUSE_MAIL__TLS: 'none',
    GATEHOUSE_PASSWORDS__MEMORY_KIB: '8192',
    GATEHOUSE_PASSWORDS__ITERATIONS: '1',
    ...env,
  };

  const log = createWriteStream(logFile);
  const lines = [];
  const child = spawn(bin, ['serve'], { cwd: workDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      log.write(chunk);
      lines.push(...chunk.split('\n').filter(Boolean));
    });
  }
  let done = false;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // Spawning failed (not executable, say): there will be no 'exit'.
    child.once('error', (err) => {
      lines.push(`failed to start ${bin}: ${err.message}`);
      resolve({ code: null, signal: null });
    });
  }).finally(() => {
    done = true;
  });
  // Last resort if the test process dies without running its `after` hook.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const tail = (n = 40) => lines.slice(-n).join('\n') || '(no output)';
  let stopped = false;
  const stop = async () => {
    if (stopped) return exited;
    stopped = true;
    process.removeListener('exit', killOnExit);
    if (!done) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    const status = await exited;
    await new Promise((resolve) => log.end(resolve));
    await rm(workDir, { recursive: true, force: true });
    return status;
  };

  // Ask 127.0.0.1 directly: the server listens there only, and "localhost" may
  // resolve to ::1 first in node.
  const readyUrl = `http://127.0.0.1:${port}/readyz`;
  const deadline = Date.now() + readyTimeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (done) {
      const { code, signal } = await exited;
      await stop();
      throw new Error(`gatehouse exited before it was ready (code ${code}, signal ${signal}); its output:\n${tail()}`);
    }
    try {
      const response = await fetch(readyUrl, { signal: AbortSignal.timeout(2_000) });
      if (response.status === 200) break;
      last = `HTTP ${response.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`gatehouse was not ready within ${readyTimeoutMs} ms (last /readyz: ${last}); its output:\n${tail()}`);
    }
    await sleep(100);
  }

  /**
   * Runs `gatehouse ARGS…` as an administrator would next to this server: same
   * working directory and environment, so the same SQLite database. `input` goes to
   * its standard input (a password for `--password-stdin`). Resolves with its
   * stdout; rejects with its output when it exits non-zero.
   */
  const cli = (args, { timeoutMs = 30_000, input } = {}) =>
    new Promise((resolve, reject) => {
      const child = execFile(bin, args, { cwd: workDir, env: childEnv, timeout: timeoutMs }, (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`gatehouse ${args.join(' ')} failed (${err.code ?? err.signal}):\n${stdout}${stderr}`));
        } else {
          resolve(stdout);
        }
      });
      child.stdin.end(input ?? '');
    });

  return { port, baseUrl, workDir, tail, stop, cli };
}

/**
 * Registers a client-credentials client with `gatehouse clients create` (extra
 * `args` such as `--scope`, `--audience`) and returns a token of it and its id.
 */
export async function clientCredentialsToken(server, args, name = 'Provisioning job') {
  const created = await server.cli([
    'clients', 'create', '--name', name, '--grant', 'client_credentials', ...args,
  ]);
  const id = created.match(/^client_id:\s*(\S+)/m)?.[1];
  const secret = created.match(/^client_secret:\s*(\S+)/m)?.[1];
  if (!id || !secret) throw new Error(`no client_id and secret in:\n${created}`);
  const answer = await fetch(`${server.baseUrl}/oauth2/token`, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
      'Content-Type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
  });
  const body = await answer.json();
  if (!body.access_token) throw new Error(`no token: ${JSON.stringify(body)}`);
  return { token: body.access_token, id };
}
