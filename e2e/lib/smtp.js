// A tiny SMTP server that accepts every message and keeps it in memory, so the tests
// can read the mail Gatehouse sends (verification links) without a real mail server.
// It speaks just enough ESMTP for a client without TLS or AUTH: EHLO/HELO, MAIL,
// RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT. Plus a small MIME reader below.

import net from 'node:net';

const CRLF = '\r\n';

/**
 * Starts the catcher on 127.0.0.1 at a free port.
 * @returns {Promise<{port: number, messages: Message[], waitForMessage: Function, close: Function}>}
 *
 * @typedef {{from: string, to: string[], raw: string, receivedAt: Date}} Message
 * `raw` holds the message bytes as a latin1 string (one char per byte), so nothing is
 * lost before the MIME decoding below turns the parts into UTF-8 text.
 */
export async function startSmtpCatcher() {
  const messages = [];
  const waiters = new Set();
  const sockets = new Set();

  const deliver = (message) => {
    messages.push(message);
    for (const waiter of [...waiters]) waiter(message);
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {}); // a client hanging up mid-session is not our failure
    serveSession(socket, deliver);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });

  return {
    port: server.address().port,
    messages,
    /**
     * Resolves with the first message (already received or arriving later) for which
     * `predicate` is true; rejects after `timeoutMs` naming what did arrive.
     */
    waitForMessage(predicate, { timeoutMs = 15_000 } = {}) {
      const found = messages.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = (message) => {
          if (!predicate(message)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(message);
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const seen = messages.map((m) => `to ${m.to.join(', ')}`).join('; ') || 'none';
          reject(new Error(`no matching mail within ${timeoutMs} ms (received: ${seen})`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function serveSession(socket, deliver) {
  socket.setEncoding('latin1');
  const reply = (text) => socket.write(text + CRLF);
  let buffer = '';
  let inData = false;
  let envelope = { from: null, to: [] };

  reply('220 gatehouse-e2e ESMTP mail catcher');

  const command = (line) => {
    const verb = line.split(' ', 1)[0].toUpperCase();
    const arg = line.slice(verb.length).trim();
    switch (verb) {
      case 'EHLO':
        reply('250-gatehouse-e2e');
        reply('250-8BITMIME');
        reply('250-SMTPUTF8');
        return reply('250 PIPELINING');
      case 'HELO':
        return reply('250 gatehouse-e2e');
      case 'MAIL':
        envelope = { from: angleAddress(arg), to: [] };
        return reply('250 2.1.0 OK');
      case 'RCPT':
        if (envelope.from === null) return reply('503 5.5.1 MAIL first');
        envelope.to.push(angleAddress(arg));
        return reply('250 2.1.5 OK');
      case 'DATA':
        if (envelope.to.length === 0) return reply('503 5.5.1 RCPT first');
        inData = true;
        return reply('354 end data with <CR><LF>.<CR><LF>');
      case 'RSET':
        envelope = { from: null, to: [] };
        return reply('250 2.0.0 OK');
      case 'NOOP':
        return reply('250 2.0.0 OK');
      case 'QUIT':
        reply('221 2.0.0 bye');
        return socket.end();
      case 'STARTTLS':
        return reply('454 4.7.0 TLS not available');
      default:
        return reply('502 5.5.2 command not recognized');
    }
  };

  socket.on('data', (chunk) => {
    buffer += chunk;
    for (;;) {
      if (inData) {
        // The terminator is CRLF "." CRLF; the CRLF before it belongs to the data, and
        // a message whose data is empty ends at a "." CRLF right after the 354.
        // Searching CRLF + buffer finds both; `end` is then where that CRLF starts in
        // the buffer plus 2, and the data is everything before it.
        const end = (CRLF + buffer).indexOf('\r\n.\r\n');
        if (end === -1) return;
        const data = end >= 2 ? buffer.slice(0, end - 2) : '';
        buffer = buffer.slice(end + 3);
        inData = false;
        deliver({ from: envelope.from, to: envelope.to, raw: dotUnstuff(data), receivedAt: new Date() });
        envelope = { from: null, to: [] };
        reply('250 2.0.0 OK: queued');
        continue;
      }
      const eol = buffer.indexOf(CRLF);
      if (eol === -1) return;
      const line = buffer.slice(0, eol);
      buffer = buffer.slice(eol + 2);
      command(line);
    }
  });
}

/** `FROM:<a@b> SIZE=12` → `a@b`. */
function angleAddress(arg) {
  const match = /<([^>]*)>/.exec(arg);
  return match ? match[1] : arg.replace(/^(FROM|TO):/i, '').trim();
}

/** RFC 5321 §4.5.2: a line of the data that starts with "." had one more "." added. */
export function dotUnstuff(data) {
  return data
    .split(CRLF)
    .map((line) => (line.startsWith('.') ? line.slice(1) : line))
    .join(CRLF);
}

// ---- MIME: just enough to read the text of a mail -------------------------------

/**
 * Splits a message (or one part of it) into headers and body.
 * Header names are lower-cased; folded lines are unfolded; values keep their order.
 */
export function parseHeaders(raw) {
  const match = /\r?\n\r?\n/.exec(raw);
  const head = match ? raw.slice(0, match.index) : raw;
  const body = match ? raw.slice(match.index + match[0].length) : '';
  const headers = new Map();
  for (const line of head.replace(/\r?\n(?=[ \t])/g, '').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const values = headers.get(name) ?? [];
    values.push(line.slice(colon + 1).trim());
    headers.set(name, values);
  }
  return { headers, body };
}

/** `text/plain; charset="utf-8"` → `{ type: 'text/plain', params: { charset: 'utf-8' } }`. */
export function parseContentType(value) {
  const [type, ...rest] = (value ?? 'text/plain').split(';');
  const params = {};
  for (const param of rest) {
    const eq = param.indexOf('=');
    if (eq === -1) continue;
    const key = param.slice(0, eq).trim().toLowerCase();
    let val = param.slice(eq + 1).trim();
    if (val.startsWith('"') && val.endsWith('"')) val = val.slice(1, -1).replace(/\\(.)/g, '$1');
    params[key] = val;
  }
  return { type: type.trim().toLowerCase(), params };
}

/** Quoted-printable (RFC 2045 §6.7) to bytes: `=\r\n` is a soft break, `=XX` a byte. */
export function decodeQuotedPrintable(text) {
  const unfolded = text.replace(/=[ \t]*\r?\n/g, '');
  const bytes = [];
  for (let i = 0; i < unfolded.length; i++) {
    const hex = unfolded.slice(i + 1, i + 3);
    if (unfolded[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(unfolded.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

/**
 * Every text leaf of a message, decoded to a string, depth-first in message order:
 * `[{ type: 'text/plain', text }, { type: 'text/html', text }]`.
 */
export function textParts(raw) {
  const { headers, body } = parseHeaders(raw);
  const { type, params } = parseContentType(headers.get('content-type')?.[0]);
  if (type.startsWith('multipart/') && params.boundary) {
    const delimiter = '--' + params.boundary;
    const parts = [];
    // Everything before the first delimiter is preamble, after the closing one epilogue.
    const sections = ('\r\n' + body).split(new RegExp(`\\r?\\n${escapeRegExp(delimiter)}`));
    for (const section of sections.slice(1)) {
      if (section.startsWith('--')) break;
      // The rest of the delimiter line (transport padding) ends at the first line break.
      parts.push(...textParts(section.replace(/^[ \t]*\r?\n/, '')));
    }
    return parts;
  }
  if (!type.startsWith('text/')) return [];
  const encoding = (headers.get('content-transfer-encoding')?.[0] ?? '7bit').toLowerCase();
  let bytes;
  if (encoding === 'quoted-printable') bytes = decodeQuotedPrintable(body);
  else if (encoding === 'base64') bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  else bytes = Buffer.from(body, 'latin1');
  const charset = (params.charset ?? 'utf-8').toLowerCase();
  const text = new TextDecoder(charset === 'us-ascii' ? 'utf-8' : charset).decode(bytes);
  return [{ type, text }];
}

/** Every http(s) link in the mail's text parts, plain text first, HTML entities undone. */
export function linksIn(raw) {
  const parts = textParts(raw).sort((a, b) => rank(a.type) - rank(b.type));
  const links = [];
  for (const { type, text } of parts) {
    for (const [match] of text.matchAll(/https?:\/\/[^\s"'<>]+/g)) {
      // A link at the end of a sentence or in parentheses does not own the punctuation.
      const link = match.replace(/[.,;:!?)\]]+$/, '');
      const clean = type === 'text/html' ? unescapeHtml(link) : link;
      if (!links.includes(clean)) links.push(clean);
    }
  }
  return links;
}

const rank = (type) => (type === 'text/plain' ? 0 : 1);

function unescapeHtml(text) {
  return text
    .replace(/&amp;/g, '&')
    .replace(/&#x([0-9a-f]+);/gi, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec) => String.fromCodePoint(Number(dec)));
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
