import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findPart, parseMessage } from '../src/index.ts';

const crlf = (s: string) => Buffer.from(s.replace(/\r?\n/g, '\r\n'));
const slice = (buf: Buffer, a: number, b: number) => buf.subarray(a, b).toString();

describe('parseMessage', () => {
  it('parses a simple text message with its envelope', () => {
    const raw = crlf(
      'From: "Ann Example" <ann@example.org>\nTo: bob@example.net, Team: c@x.org, d@x.org;\n' +
        'Subject: =?utf-8?q?Hi?=\n  folded\nMessage-ID: <1@x>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\nline1\nline2\n',
    );
    const { root, size } = parseMessage(raw);
    assert.equal(size, raw.length);
    assert.equal(root.contentType.value, 'text/plain');
    assert.equal(root.contentType.params.charset, 'us-ascii');
    assert.equal(slice(raw, root.bodyStart, root.end), 'line1\r\nline2\r\n');
    assert.equal(root.bodyLines, 2);
    const env = root.envelope!;
    assert.equal(env.subject, '=?utf-8?q?Hi?=  folded');
    assert.deepEqual(env.from, [{ name: 'Ann Example', address: 'ann@example.org' }]);
    assert.deepEqual(env.sender, env.from);
    assert.deepEqual(env.to, [
      { name: '', address: 'bob@example.net' },
      {
        name: 'Team',
        group: [
          { name: '', address: 'c@x.org' },
          { name: '', address: 'd@x.org' },
        ],
      },
    ]);
    assert.equal(env.cc, null);
    assert.equal(env.messageId, '<1@x>');
  });

  it('finds multipart children by byte offsets, nested and with an attached message', () => {
    const raw = crlf(
      [
        'Content-Type: multipart/mixed; boundary="outer"',
        '',
        'preamble',
        '--outer',
        'Content-Type: multipart/alternative; boundary=inner',
        '',
        '--inner',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'plain body',
        '--inner',
        'Content-Type: text/html',
        '',
        '<p>html</p>',
        '--inner--',
        '--outer',
        'Content-Type: message/rfc822',
        'Content-Disposition: attachment; filename="fwd.eml"',
        '',
        'Subject: inner message',
        'From: x@y.org',
        '',
        'inner body',
        '--outer--  ',
        'epilogue',
      ].join('\n'),
    );
    const { root } = parseMessage(raw);
    assert.equal(root.children?.length, 2);
    const plain = findPart(root, [1, 1])!;
    assert.equal(plain.contentType.params.charset, 'utf-8');
    assert.equal(slice(raw, plain.bodyStart, plain.end), 'plain body');
    assert.equal(slice(raw, findPart(root, [1, 2])!.bodyStart, findPart(root, [1, 2])!.end), '<p>html</p>');
    const fwd = findPart(root, [2])!;
    assert.equal(fwd.disposition?.params.filename, 'fwd.eml');
    assert.equal(fwd.message?.envelope?.subject, 'inner message');
    assert.equal(slice(raw, fwd.message!.bodyStart, fwd.message!.end), 'inner body');
    assert.equal(findPart(root, [3]), null);
  });

  it('keeps a boundary-looking string inside a line from splitting a part', () => {
    const raw = crlf('Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx --b y\n--b--\n');
    const { root } = parseMessage(raw);
    assert.equal(root.children?.length, 1);
    assert.equal(slice(raw, root.children![0]!.bodyStart, root.children![0]!.end), 'x --b y');
  });

  it('handles LF-only messages, messages without a body and an unterminated multipart', () => {
    const lf = Buffer.from('Subject: a\n\nbody\n');
    assert.equal(slice(lf, parseMessage(lf).root.bodyStart, lf.length), 'body\n');
    const headOnly = Buffer.from('Subject: only headers\r\n');
    const r = parseMessage(headOnly).root;
    assert.equal(r.bodyStart, headOnly.length);
    assert.equal(r.envelope?.subject, 'only headers');
    const open = crlf('Content-Type: multipart/mixed; boundary=z\n\n--z\n\npart\n');
    assert.equal(parseMessage(open).root.children?.length, 1);
  });

  it('stops descending at a bounded depth', () => {
    let msg = 'Subject: leaf\n\nleaf\n';
    for (let i = 0; i < 200; i++) msg = `Content-Type: message/rfc822\n\n${msg}`;
    let node = parseMessage(Buffer.from(msg)).root;
    let depth = 0;
    while (node.message) {
      node = node.message;
      depth++;
    }
    assert.ok(depth <= 64, `depth ${depth}`);
  });
});

describe('withPrependedHeaders', () => {
  it('gives the same structure as parsing the message with the header in front', async () => {
    const { withPrependedHeaders } = await import('../src/index.ts');
    const raw = crlf(
      'Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: in\n\nhi\n--b--\n',
    );
    const prefix = Buffer.from('Return-Path: <a@b.org>\r\nDelivered-To: c@d.org\r\n');
    const shifted = withPrependedHeaders(parseMessage(raw), prefix.length);
    const reparsed = parseMessage(Buffer.concat([prefix, raw]));
    assert.deepEqual(shifted, reparsed);
  });
});

describe('findPart: RFC 3501 §6.4.5 part numbers', () => {
  it('numbers a message/rfc822 body as part 1 of its message, and the inner parts below it', () => {
    const raw = crlf(
      'Subject: outer\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b--\n',
    );
    const { root } = parseMessage(raw);
    // BODY[1] of a non-multipart message is its body: here the whole inner message.
    const one = findPart(root, [1])!;
    assert.ok(slice(raw, one.bodyStart, one.end).startsWith('Subject: inner'));
    assert.equal(slice(raw, findPart(root, [1, 1])!.bodyStart, findPart(root, [1, 1])!.end), 'one');
    assert.equal(slice(raw, findPart(root, [1, 2])!.bodyStart, findPart(root, [1, 2])!.end), 'two');
    assert.equal(findPart(root, [1, 3]), null);
    assert.equal(findPart(root, [2]), null);
    // A plain text message has only part 1.
    const plain = parseMessage(crlf('Subject: x\n\nbody\n')).root;
    assert.equal(findPart(plain, [1]), plain);
    assert.equal(findPart(plain, [1, 1]), null);
  });
});

describe('parseMessage: bounded work on hostile messages', () => {
  const countParts = (n: { children?: unknown[]; message?: unknown }): number => {
    let total = 0;
    const stack: Array<{ children?: unknown[]; message?: unknown }> = [n];
    while (stack.length) {
      const x = stack.pop()!;
      total++;
      for (const c of x.children ?? []) stack.push(c as typeof x);
      if (x.message) stack.push(x.message as typeof x);
    }
    return total;
  };

  it('describes at most MAX_PARTS parts; the last one runs to the end of its multipart', async () => {
    const { MAX_PARTS } = await import('../src/index.ts');
    const body = Array.from({ length: 80_000 }, (_, i) => `--b\r\n\r\n${i}\r\n`).join('');
    const raw = Buffer.from(`Content-Type: multipart/mixed; boundary=b\r\n\r\n${body}--b--\r\n`);
    const t = Date.now();
    const { root } = parseMessage(raw);
    assert.ok(Date.now() - t < 2000, `${Date.now() - t} ms`);
    assert.ok(countParts(root) <= MAX_PARTS + 1, `${countParts(root)} nodes`);
    const last = root.children![root.children!.length - 1]!;
    assert.ok(slice(raw, last.bodyStart, last.end).includes('\r\n79999\r\n--b--'));
  });

  it('keeps the first MAX_ADDRESSES of a Cc: with 100,000 addresses, in linear time', async () => {
    const { MAX_ADDRESSES } = await import('../src/index.ts');
    const cc = Array.from({ length: 100_000 }, (_, i) => `u${i}@example.org`).join(', ');
    const raw = Buffer.from(`From: a@b.org\r\nSubject: many\r\nCc: ${cc}\r\n\r\nhi\r\n`);
    const t = Date.now();
    const env = parseMessage(raw).root.envelope!;
    assert.ok(Date.now() - t < 1000, `${Date.now() - t} ms`);
    assert.equal(env.cc?.length, MAX_ADDRESSES);
    assert.equal(env.subject, 'many');
  });

  it('never throws, and every offset stays inside the message, for random and mutated input (property)', async () => {
    const fc = (await import('fast-check')).default;
    const piece = fc.constantFrom(
      'Content-Type: multipart/mixed; boundary=b\r\n',
      'Content-Type: message/rfc822\r\n',
      '\r\n',
      '--b\r\n',
      '--b--\r\n',
      'Subject: x\r\n',
      ' folded\r\n',
      'text\n',
      'From: <a@b>\r\n',
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(piece, fc.string({ maxLength: 20 })), { maxLength: 40 }), (parts) => {
        const raw = Buffer.from(parts.join(''));
        const { root } = parseMessage(raw);
        const stack = [root];
        while (stack.length) {
          const n = stack.pop()!;
          assert.ok(0 <= n.start && n.start <= n.bodyStart && n.bodyStart <= n.end && n.end <= raw.length);
          stack.push(...(n.children ?? []), ...(n.message ? [n.message] : []));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
