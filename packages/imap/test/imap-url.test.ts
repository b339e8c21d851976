// IMAP URLs as CATENATE takes them (RFC 5092 §6, RFC 4469 §5): what each form names, what is refused,
// and for any text either a message URL or UrlError, nothing else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseMessageUrl, UrlError } from '../src/imap-url.ts';

const USER = 'bob@example.org';
const HOST = 'mail.example.org';
const parse = (url: string) => parseMessageUrl(url, USER, HOST);

describe('IMAP URLs (CATENATE)', () => {
  it('reads the forms RFC 5092 gives', () => {
    assert.deepEqual(parse('/INBOX;UIDVALIDITY=785799047/;UID=113330/;SECTION=1.5.9'), {
      mailbox: 'INBOX',
      uidValidity: 785799047,
      uid: 113330,
      section: { path: [1, 5, 9], kind: '' },
      partial: null,
    });
    assert.deepEqual(parse('/Drafts/;UID=20/;section=HEADER.FIELDS%20(SUBJECT%20From)/;PARTIAL=0.1024'), {
      mailbox: 'Drafts',
      uidValidity: null,
      uid: 20,
      section: { path: [], kind: 'HEADER.FIELDS', fields: ['SUBJECT', 'From'] },
      partial: { start: 0, length: 1024 },
    });
    // Percent-encoded UTF-8 names, and a hierarchy.
    assert.equal(parse('/Arbeit%2FB%C3%BCro/;UID=1').mailbox, 'Arbeit/Büro');
    assert.equal(parse('/Archive/2026/;UID=7').mailbox, 'Archive/2026');
    // Absolute, on this server, as this user (or no user).
    assert.equal(parse('imap://bob%40example.org@MAIL.example.org:993/INBOX/;UID=3').uid, 3);
    assert.equal(parse('imap://mail.example.org/INBOX/;UID=4/;SECTION=2.MIME').section?.kind, 'MIME');
  });

  const refused: Array<[string, RegExp]> = [
    ['imap://other.example.net/INBOX/;UID=1', /another server/],
    ['imap://eve%40example.org@mail.example.org/INBOX/;UID=1', /another user/],
    ['/INBOX', /no message/],
    ['/INBOX;UIDVALIDITY=0/;UID=1', /UIDVALIDITY/],
    ['/INBOX/;UID=0', /UID/],
    ['/INBOX/;UID=1;EXPIRE=2026-01-01T00:00:00Z;URLAUTH=anonymous:internal:abc', /URLAUTH/],
    ['/INBOX/;UID=1/;URLAUTH=x', /URLAUTH/],
    ['/INBOX/;SECTION=1/;UID=1', /out of place/],
    ['/INBOX/;UID=1/;SECTION=BODY', /SECTION/],
    ['/INBOX/;UID=1/;PARTIAL=x', /PARTIAL/],
    ['/IN%ZZBOX/;UID=1', /percent/],
    ['/%FF/;UID=1', /UTF-8/],
    ['/IN BOX/;UID=1', /percent-encoded/],
    ['INBOX/;UID=1', /not an IMAP URL/],
    ['http://mail.example.org/INBOX/;UID=1', /not an IMAP URL/],
    [`/${'a'.repeat(5000)}/;UID=1`, /too long/],
  ];
  for (const [url, why] of refused)
    it(`refuses ${url.slice(0, 60)}`, () => {
      assert.throws(
        () => parse(url),
        (err: unknown) => err instanceof UrlError && why.test(err.message),
      );
    });

  it('for any text: a message URL or UrlError (property)', () => {
    const pieces = fc.constantFrom(
      '/',
      ';',
      'UID=',
      'SECTION=',
      'PARTIAL=',
      '%',
      '1',
      '.',
      'INBOX',
      'imap://',
      '@',
      ':',
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(pieces, fc.string({ maxLength: 5 })), { maxLength: 20 }), (parts) => {
        try {
          const u = parse(parts.join(''));
          assert.ok(u.uid > 0 && u.mailbox.length > 0);
        } catch (err) {
          assert.ok(err instanceof UrlError, String(err));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
