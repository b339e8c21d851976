import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { countHeaderFields, editHeader, foldLongLines, receivedHeader } from '../src/index.ts';

describe('message reading', () => {
  it('counts header fields only in the header block', () => {
    const msg = Buffer.from('Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: not a header\r\n');
    assert.equal(countHeaderFields(msg, 'Received'), 2);
  });

  it('writes a Received: header without control characters from the client', () => {
    const h = receivedHeader({
      helo: 'evil\r\nX-Injected: 1',
      clientAddress: '127.0.0.1',
      by: 'mx.example.org',
      protocol: 'ESMTPS',
      id: 'Q1',
      tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
      date: new Date(Date.UTC(2026, 10, 23, 10, 0, 0)),
    });
    assert.equal(
      h,
      'Received: from evil??X-Injected:?1 ([127.0.0.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\tby mx.example.org (Mailwerk) with ESMTPS id Q1;\r\n\tMon, 23 Nov 2026 10:00:00 +0000\r\n',
    );
  });
});

test('foldLongLines breaks lines over 998 octets with CRLF and a space, and leaves others alone', () => {
  const ok = Buffer.from(`Subject: x\r\n\r\n${'a'.repeat(998)}\r\n`);
  assert.equal(foldLongLines(ok), ok);
  const long = Buffer.from(`Subject: x\r\n\r\n${'b'.repeat(2500)}\r\nend\r\n`);
  const folded = foldLongLines(long).toString();
  const lines = folded.split('\r\n');
  assert.ok(lines.every((l) => l.length <= 998));
  assert.equal(lines[2], 'b'.repeat(998));
  assert.equal(lines[3], ` ${'b'.repeat(997)}`);
  assert.equal(lines[4], ` ${'b'.repeat(505)}`);
  assert.equal(lines[5], 'end');
  assert.equal(folded.replace(/\r\n /g, ''), long.toString());
});

test('editHeader drops, replaces and keeps fields, folding included, and leaves the body alone', () => {
  const msg = Buffer.from(
    'Received: from a\r\n\tby b\r\nX-Spam: Yes\r\nSubject: hello\r\n world\r\nX-Spam-Score: 99\r\n\r\nX-Spam: body line\r\n',
  );
  const out = editHeader(msg, (name, raw) =>
    name.startsWith('x-spam') ? null : name === 'subject' ? 'Subject: [SPAM] hello world\r\n' : raw,
  ).toString();
  assert.equal(out, 'Received: from a\r\n\tby b\r\nSubject: [SPAM] hello world\r\n\r\nX-Spam: body line\r\n');
  assert.equal(
    editHeader(msg, (_n, raw) => raw),
    msg,
  );
  const noBody = Buffer.from('Subject: x\r\nX-Spam: Yes\r\n');
  assert.equal(editHeader(noBody, (n, raw) => (n === 'x-spam' ? null : raw)).toString(), 'Subject: x\r\n');
});
