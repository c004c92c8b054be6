// What the relying-party tests share: the client application's redirect URI, the
// wait for the browser to arrive there, and the credentials `gatehouse clients
// create` prints.

import assert from 'node:assert/strict';
import http from 'node:http';

/** The client_id and client_secret lines of `gatehouse clients create`. */
export function cliCredentials(output) {
  const clientId = /^client_id:\s+(\S+)$/m.exec(output)?.[1];
  const clientSecret = /^client_secret:\s+(\S+)$/m.exec(output)?.[1];
  assert.ok(clientId && clientSecret, `client_id and client_secret in:\n${output}`);
  return { clientId, clientSecret };
}

/**
 * The client application's redirect URI: a plain HTTP server on a free port that
 * records every request and answers with a small page. `next()` resolves with the URL
 * of the next request.
 */
export async function startCallbackServer() {
  const waiting = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://localhost:${server.address().port}`);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Compiler Notes</title><h1>Signed in</h1>');
    waiting.shift()?.(url);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The redirect to the client, or a failure that says where the browser got stuck. */
export async function waitForCallback(arrived, page, problems, timeoutMs = 15_000) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, timeoutMs, null);
  });
  const url = await Promise.race([arrived, timeout]);
  clearTimeout(timer);
  if (!url) {
    throw new Error(
      `the redirect to the client's callback did not arrive within ${timeoutMs} ms; the browser is at ${page.url()}` +
        (problems.length ? `; problems seen:\n    ${problems.join('\n    ')}` : ''),
    );
  }
  return url;
}
