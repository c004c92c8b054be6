// The mail catcher and MIME reader the journey test relies on, checked on their own
// (no server, no browser), so a failure to find a link is not blamed on the wrong side.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { decodeQuotedPrintable, dotUnstuff, linksIn, startSmtpCatcher, textParts } from './lib/smtp.js';

/**
 * Talks SMTP to the catcher one command at a time and returns every reply it got.
 * A command given as an array is written in pieces, a moment apart, as separate packets.
 */
async function send(port, commands) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('latin1');
  let pending = '';
  const replies = [];
  const queue = [];
  socket.on('data', (chunk) => {
    pending += chunk;
    // A reply is complete at a line whose code is followed by a space (not "250-").
    let match;
    while ((match = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(pending))) {
      pending = pending.slice(match[0].length);
      replies.push(match[0]);
      queue.shift()?.();
    }
  });
  const nextReply = () => new Promise((resolve) => queue.push(resolve));
  await nextReply(); // greeting
  for (const command of commands) {
    const got = nextReply();
    for (const piece of [command].flat()) {
      socket.write(piece);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await got;
  }
  socket.end();
  return replies;
}

describe('SMTP catcher', () => {
  let smtp;
  before(async () => {
    smtp = await startSmtpCatcher();
  });
  after(() => smtp.close());

  it('accepts a message, dot-unstuffed, with its envelope', async () => {
    const replies = await send(smtp.port, [
      'EHLO test\r\n',
      'MAIL FROM:<from@example.com> BODY=8BITMIME\r\n',
      'RCPT TO:<to@example.com>\r\n',
      'DATA\r\n',
      'Subject: hi\r\n\r\nline one\r\n..leading dot\r\n.\r\n',
      'QUIT\r\n',
    ]);
    assert.deepEqual(
      replies.map((r) => r.slice(0, 3)),
      ['220', '250', '250', '250', '354', '250', '221'],
    );
    const mail = await smtp.waitForMessage((m) => m.to.includes('to@example.com'), { timeoutMs: 2_000 });
    assert.equal(mail.from, 'from@example.com');
    assert.equal(mail.raw, 'Subject: hi\r\n\r\nline one\r\n.leading dot');
  });

  it('handles a terminator split across packets and RSET', async () => {
    const replies = await send(smtp.port, [
      'HELO test\r\n',
      'MAIL FROM:<a@example.com>\r\n',
      'RSET\r\n',
      'MAIL FROM:<b@example.com>\r\n',
      'RCPT TO:<split@example.com>\r\n',
      'DATA\r\n',
      ['Subject: x\r\n\r\nbody\r', '\n.', '\r\n'],
      'NOOP\r\n',
    ]);
    assert.equal(replies.length, 9);
    const mail = await smtp.waitForMessage((m) => m.to.includes('split@example.com'), { timeoutMs: 2_000 });
    assert.equal(mail.from, 'b@example.com');
    assert.equal(mail.raw, 'Subject: x\r\n\r\nbody');
  });

  it('times out naming what arrived', async () => {
    await assert.rejects(
      smtp.waitForMessage((m) => m.to.includes('nobody@example.com'), { timeoutMs: 50 }),
      /no matching mail within 50 ms \(received: to to@example.com/,
    );
  });
});

describe('MIME reader', () => {
  it('undoes dot-stuffing only at line starts', () => {
    assert.equal(dotUnstuff('a.b\r\n..c\r\n.'), 'a.b\r\n.c\r\n');
  });

  it('decodes quoted-printable soft breaks and escapes to UTF-8', () => {
    const decoded = decodeQuotedPrintable('http://localhost:1/verify?token=3Dab=\r\ncd=3Def =C3=BC=\n!');
    assert.equal(decoded.toString('utf8'), 'http://localhost:1/verify?token=abcd=ef ü!');
  });

  it('finds the link in a multipart mail, plain text first, HTML unescaped', () => {
    const link = 'http://localhost:4321/verify?token=Zm9v_YmFy-baz';
    const qp = link.replace(/=/g, '=3D');
    const long = `${qp.slice(0, 40)}=\r\n${qp.slice(40)}`;
    const html = Buffer.from(`<p><a href="${link}&amp;x=1">Verify</a></p>`).toString('base64');
    const raw = [
      'From: Gatehouse <no-reply@localhost>',
      'To: ada@example.com',
      'MIME-Version: 1.0',
      'Content-Type: multipart/alternative;',
      ' boundary="b-1"',
      '',
      'preamble',
      '--b-1',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      `Hello Ada, open ${long} to continue. Gr=C3=BC=C3=9Fe`,
      '--b-1',
      'Content-Type: text/html; charset="utf-8"',
      'Content-Transfer-Encoding: base64',
      '',
      html.slice(0, 30),
      html.slice(30),
      '--b-1--',
      'epilogue',
    ].join('\r\n');
    const parts = textParts(raw);
    assert.deepEqual(parts.map((p) => p.type), ['text/plain', 'text/html']);
    assert.match(parts[0].text, /Grüße/);
    assert.deepEqual(linksIn(raw), [link, `${link}&x=1`]);
  });

  it('reads a single-part 7bit mail, leaving sentence punctuation out of links', () => {
    const raw = 'Content-Type: text/plain\r\n\r\nGo to https://example.com/a?b=c.\r\n(or https://example.com/d)\r\n';
    assert.deepEqual(linksIn(raw), ['https://example.com/a?b=c', 'https://example.com/d']);
  });
});
