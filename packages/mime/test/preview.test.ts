// The preview kept with each message (IMAP PREVIEW, RFC 8970): which part, decoded how, cut where;
// and, for any bytes, a string of at most 200 characters.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { messagePreview, PREVIEW_CHARS, parseMessage } from '../src/index.ts';

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

  it('counts characters as code points: a pair of surrogates is one, a lone one is one', () => {
    assert.equal(
      preview(`Content-Type: text/plain; charset=utf-8\n\n${'\u{1F600}'.repeat(300)}\n`),
      '\u{1F600}'.repeat(PREVIEW_CHARS),
    );
    // A lone surrogate decodes from no charset; an HTML character reference can name one.
    assert.equal(
      preview(`Content-Type: text/html; charset=utf-8\n\n<p>&#xD83D;a${'\u{1F600}'.repeat(300)}</p>\n`),
      `\ud83da${'\u{1F600}'.repeat(PREVIEW_CHARS - 2)}`,
    );
  });

  it('leaves out what a window cut in two: a quoted-printable escape at the 200th character', () => {
    // 199 four-byte characters, then é: a window ending inside its escape (=C3=A9) decodes "=C" there.
    const text = `${'\u{1F600}'.repeat(PREVIEW_CHARS - 1)}é and more`;
    const qp = [...Buffer.from(text)]
      .map((b) => (b > 126 ? `=${b.toString(16).toUpperCase()}` : String.fromCharCode(b)))
      .join('');
    const head =
      'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n';
    const raw = Buffer.from(`${head}${qp}\r\n`, 'latin1');
    const root = parseMessage(raw).root;
    const window = qp.indexOf('=C3') + 2;
    assert.equal(messagePreview(raw, root, window), `${'\u{1F600}'.repeat(PREVIEW_CHARS - 1)}é`);
  });

  it('property: decoded a window at a time or all at once, a text part gives the same preview', () => {
    // Lines of words, quoted lines, white space and characters of every UTF-8 length, in any encoding,
    // decoded first up to a window that ends anywhere (in a line, a character, a quantum, an escape).
    const line = fc.oneof(
      fc.string({
        unit: fc.constantFrom('a', 'é', '€', '\u{1F600}', ' ', '\t', 'x', '>'),
        maxLength: 90,
        size: 'max',
      }),
      fc.constant(''),
    );
    const encode = (text: string, enc: string, charset: string) => {
      const bytes = Buffer.from(text, charset === 'utf-8' ? 'utf8' : 'latin1');
      if (enc === 'base64') return bytes.toString('base64').replace(/.{76}/g, '$&\r\n');
      if (enc === 'quoted-printable')
        return [...bytes]
          .map(
            (b, i) =>
              `${i % 25 === 24 ? '=\r\n' : ''}${b > 126 || b === 61 ? `=${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b)}`,
          )
          .join('');
      return bytes.toString('latin1');
    };
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 80, size: 'max' }),
        fc.constantFrom('7bit', '8bit', 'base64', 'quoted-printable'),
        fc.constantFrom('utf-8', 'iso-8859-1'),
        fc.integer({ min: 1, max: 3000 }),
        (lines, enc, charset, window) => {
          const text = lines.join('\r\n');
          const raw = Buffer.from(
            `Content-Type: text/plain; charset=${charset}\r\nContent-Transfer-Encoding: ${enc}\r\n\r\n${encode(text, enc, charset)}\r\n`,
            'latin1',
          );
          const root = parseMessage(raw).root;
          assert.equal(
            messagePreview(raw, root, window),
            messagePreview(raw, root, Number.POSITIVE_INFINITY),
          );
        },
      ),
      { numRuns: 400 },
    );
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
