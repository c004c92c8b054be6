// The stage every journey test starts from: its artifacts directory emptied, an SMTP
// catcher, a real `gatehouse serve` sending to it, and Chromium with one page whose
// problems (console errors, broken subresources) are collected.

import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';

import { launchChromium, watchForProblems } from './browser.js';
import { startGatehouse } from './server.js';
import { startSmtpCatcher } from './smtp.js';

/**
 * @param {{artifacts: string, contextOptions?: object, env?: object}} options `env`: extra
 *   server settings (GATEHOUSE_* variables); `contextOptions` are
 *   added to the browser context's (base URL the server's, locale en-GB).
 */
export async function openStage({ artifacts, contextOptions = {}, env = {} }) {
  await rm(artifacts, { recursive: true, force: true });
  await mkdir(artifacts, { recursive: true });
  const smtp = await startSmtpCatcher();
  const server = await startGatehouse({ smtpPort: smtp.port, logFile: path.join(artifacts, 'server.log'), env });
  const browser = await launchChromium();
  const context = await browser.newContext({ baseURL: server.baseUrl, locale: 'en-GB', ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(20_000);
  const problems = watchForProblems(page);
  return { smtp, server, browser, context, page, problems };
}

/** Runs every closer even when another fails, so nothing outlives the test. */
export async function closeAll(closers) {
  const results = await Promise.allSettled(closers);
  for (const result of results) {
    if (result.status === 'rejected') console.error('cleanup failed:', result.reason);
  }
}
