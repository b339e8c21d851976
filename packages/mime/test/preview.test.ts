// The preview kept with each message (IMAP PREVIEW, RFC 8970): which part, decoded how, cut where;
// and, for any bytes, a string of at most 200 characters.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PREVIEW_CHARS, parseMessage } from '../src/index.ts';

const preview = (text: string) => parseMessage(Buffer.from(text.replace(/\n/g, '\r\n'))).preview;

describe('message preview', () => {
  const table: Array<[string, string, string]> = [
    ['plain text', 'Subject: x\n\nHello,\n\nsee you.\n', 'Hello, see you.'],
    ['no body', 'Subject: x\n', ''],
    [
      'quoted-printable, quoted lines left out',
      'Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain; charset=utf-8\n\nJa=C3=A4\n> old\n>> older\nok\n',
      'Jaä ok',
    ],
    [
      'base64 in ISO-8859-1',
      `Content-Transfer-Encoding: base64\nContent-Type: text/plain; charset=iso-8859-1\n\n${Buffer.from('Gr\xfc\xdfe', 'latin1').toString('base64')}\n`,
      'Grüße',
    ],
    [
      'the text part before an HTML alternative',
      'Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b\nContent-Type: text/plain\n\nplain\n--b--\n',
      'plain',
    ],
    [
      'HTML alone, without markup, style and entities',
      'Content-Type: text/html\n\n<style>b{}</style><p>A&lt;B&gt; &#233;&#x263A;</p>\n',
      'A<B> é☺',
    ],
    [
      'an attachment is no preview',
      'Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Disposition: attachment\n\nsecret.txt\n--b--\n',
      '',
    ],
  ];
  for (const [what, message, want] of table) it(what, () => assert.equal(preview(message), want));

  it(`cuts at ${PREVIEW_CHARS} characters, not bytes, and reads only the start of a large part`, () => {
    assert.equal(
      preview(`Content-Type: text/plain; charset=utf-8\n\n${'ä'.repeat(500)}\n`),
      'ä'.repeat(PREVIEW_CHARS),
    );
    const t = Date.now();
    assert.equal(preview(`Subject: x\n\n${'x '.repeat(5_000_000)}\n`)!.length, PREVIEW_CHARS - 1);
    assert.ok(Date.now() - t < 2000, `${Date.now() - t} ms`);
  });

  it('property: any bytes give a string of at most 200 characters', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const p = parseMessage(
          Buffer.concat([Buffer.from('Content-Type: text/html\r\n\r\n'), Buffer.from(bytes)]),
        ).preview!;
        assert.equal(typeof p, 'string');
        assert.ok([...p].length <= PREVIEW_CHARS);
      }),
      { numRuns: 300 },
    );
  });
});
