// What the journey tests share: steps that stop the journey at the first failure (with
// a screenshot and the server's last lines in the message), and form submission that
// fails fast with the server's answer.

import path from 'node:path';
import { it } from 'node:test';

/**
 * Returns `step(name, fn)`, an `it` for one step of a journey: once a step fails, the
 * later ones (which depend on it) are skipped, not failed again. A failure adds the
 * page's URL, a screenshot `failed-<step>.png` in `artifacts` and the server's output.
 *
 * @param {{artifacts: string, current: () => {page?: import('playwright-core').Page, server?: {tail: (n?: number) => string}}}} options
 *   `current` is called on failure, so the page and server may be created after this.
 */
export function journeySteps({ artifacts, current }) {
  let broken = null;
  const step = (name, fn) =>
    it(name, async (t) => {
      if (broken) return t.skip(`an earlier step failed: ${broken}`);
      try {
        await fn();
      } catch (err) {
        broken = name;
        // Client libraries wrap the reason (openid-client: "invalid response
        // encountered", the check that failed in `cause`): name it.
        for (let cause = err.cause, depth = 0; cause && depth < 3; cause = cause.cause, depth++) {
          err.message +=
            cause instanceof Error
              ? `\n  cause: ${cause.message}${cause.code ? ` (${cause.code})` : ''}`
              : `\n  cause: ${JSON.stringify(cause).slice(0, 1500)}`;
        }
        const { page, server } = current();
        if (page) {
          const file = path.join(artifacts, `failed-${slug(name)}.png`);
          await page.screenshot({ path: file, fullPage: true }).catch(() => {});
          err.message += `\n  page: ${page.url()}\n  screenshot: ${file}`;
        }
        if (server) err.message += `\n  server output (last lines):\n${indent(server.tail(20))}`;
        throw err;
      }
    });
  return step;
}

/**
 * Clicks a form's submit button and waits for the server's answer to the POST, so a
 * rejected form fails at once with the status and the error page's heading instead
 * of as a time-out further on. `refused: true` for a form expected to be refused.
 *
 * @param {import('playwright-core').Locator} button
 */
export async function submit(button, { refused = false } = {}) {
  const page = button.page();
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.request().isNavigationRequest()),
    button.click(),
  ]);
  if (!refused && response.status() >= 400) {
    const body = await response.text().catch(() => '');
    const heading = /<h1[^>]*>([\s\S]*?)<\/h1>/.exec(body)?.[1].replace(/<[^>]+>/g, '').trim();
    const sent = await response.request().allHeaders();
    throw new Error(
      `POST ${new URL(response.url()).pathname} answered ${response.status()} ("${heading ?? 'no heading'}"); ` +
        `the browser sent Origin: ${sent.origin ?? '(none)'}, Sec-Fetch-Site: ${sent['sec-fetch-site'] ?? '(none)'}`,
    );
  }
  return response;
}

export function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

export function indent(text) {
  return text.replace(/^/gm, '    ');
}

export function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
