// Headless Debian Chromium, driven by playwright-core. No browser is downloaded: the
// machine has no network beyond its package registries, so the tests use the system
// package (`apt-get install chromium`).

import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

// Everything Chromium would otherwise try to reach on its own (updates, sync, field
// trials, QUIC probes) is off: on a closed network those connections only fail, slowly.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install chromium (apt-get install -y chromium)`);
  }
  // playwright-core gives every launch a fresh, empty user data directory.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
}

/**
 * Collects what a person would notice as broken while the pages are used: console
 * errors (a Content-Security-Policy violation shows up there), uncaught page errors,
 * and subresources (stylesheets, images) that failed or answered 4xx/5xx. Documents
 * are left out: a rejected sign-in may well answer 401 on purpose.
 */
export function watchForProblems(page) {
  const problems = [];
  page.on('console', (message) => {
    // "Failed to load resource" repeats a 4xx/5xx that the response check below judges.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(`console error on ${page.url()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error on ${page.url()}: ${error.message}`));
  page.on('requestfailed', (request) => {
    // ERR_ABORTED: the page navigated on (the test clicked) before an icon had loaded.
    if (request.resourceType() !== 'document' && request.failure()?.errorText !== 'net::ERR_ABORTED') {
      problems.push(`${request.resourceType()} ${request.url()} failed: ${request.failure()?.errorText}`);
    }
  });
  page.on('response', (response) => {
    const request = response.request();
    if (request.resourceType() !== 'document' && response.status() >= 400) {
      problems.push(`${request.resourceType()} ${response.url()} answered ${response.status()}`);
    }
  });
  return problems;
}
