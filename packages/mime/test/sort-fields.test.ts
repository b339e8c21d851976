// The sort fields kept with each message for IMAP SORT and THREAD (RFC 5256): what each header gives,
// and, for any bytes, fields within their bounds and a structure that survives being stored as JSON.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_REFERENCES, MAX_SORT_TEXT, parseMessage, withPrependedHeaders } from '../src/index.ts';

const fields = (header: string) =>
  parseMessage(Buffer.from(`${header.replace(/\n/g, '\r\n')}\r\n\r\nbody\r\n`)).sort!;

describe('sort fields', () => {
  it('takes the date as an instant, the subject decoded, the first addresses and the thread ancestry', () => {
    const f = fields(
      [
        'Date: Mon, 2 Mar 2026 12:00:00 +0200',
        'Subject: =?UTF-8?Q?Re:_=C3=9Cber?= plans',
        'From: Team: "Zoe Z" <zoe@a.example>, x@b.example;',
        'To: bob@example.org',
        'Message-ID: <own@a>',
        'In-Reply-To: <ignored@a>',
        'References: <r1@a> junk <r2@b>',
      ].join('\n'),
    );
    assert.equal(f.sent, Date.UTC(2026, 2, 2, 10));
    assert.equal(f.subject, 'Re: Über plans');
    // A group's first member is the first address (RFC 5256 §3).
    assert.deepEqual(f.from, { name: 'Zoe Z', address: 'zoe@a.example' });
    assert.deepEqual(f.to, { name: '', address: 'bob@example.org' });
    assert.equal(f.cc, null);
    assert.equal(f.messageId, 'own@a');
    assert.deepEqual(f.references, ['r1@a', 'r2@b']);
  });

  const table: Array<[string, string, Partial<ReturnType<typeof fields>>]> = [
    [
      'no fields at all',
      'X-Other: 1',
      { sent: null, subject: '', from: null, messageId: null, references: [] },
    ],
    ['a date that does not parse', 'Date: someday soon', { sent: null }],
    ['In-Reply-To when there is no References', 'In-Reply-To: <a@x> <b@x>', { references: ['a@x'] }],
    [
      'References without ids falls back to In-Reply-To',
      'References: none\nIn-Reply-To: <p@x>',
      { references: ['p@x'] },
    ],
    ['the first of two Subject fields', 'Subject: one\nSubject: two', { subject: 'one' }],
  ];
  for (const [name, header, want] of table)
    it(name, () => {
      const f = fields(header);
      for (const [k, v] of Object.entries(want)) assert.deepEqual(f[k as keyof typeof f], v, k);
    });

  it('is cut to its bounds: the subject and the references of a hostile header', () => {
    const refs = Array.from({ length: 5000 }, (_, i) => `<r${i}@x>`).join(' ');
    const f = fields(`Subject: ${'s'.repeat(50_000)}\nReferences: ${refs}`);
    assert.equal(f.subject.length, MAX_SORT_TEXT);
    assert.equal(f.references.length, MAX_REFERENCES);
    assert.equal(f.references[0], 'r0@x');
  });

  it('stays with the structure when header fields are put in front (delivery)', () => {
    const s = parseMessage(Buffer.from('Subject: kept\r\n\r\nx\r\n'));
    assert.deepEqual(withPrependedHeaders(s, 40).sort, s.sort);
  });

  it('for any header: bounded fields, and the same after a JSON round trip', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), fc.string({ maxLength: 400 }), (subject, refs) => {
        const raw = Buffer.from(`Subject: ${subject}\r\nReferences: ${refs}\r\nDate: ${subject}\r\n\r\nx`);
        const f = parseMessage(raw).sort!;
        assert.ok(f.subject.length <= MAX_SORT_TEXT);
        assert.ok(f.references.length <= MAX_REFERENCES);
        assert.ok(f.sent === null || Number.isFinite(f.sent));
        assert.deepEqual(JSON.parse(JSON.stringify(f)), f);
      }),
      { numRuns: 300 },
    );
  });
});
