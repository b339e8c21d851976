import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import fc from 'fast-check';
import { ImapSyntaxError } from '../src/errors.ts';
import { headerSection, headerText } from '../src/fetch-data.ts';
import {
  bodyStructureText,
  Cursor,
  envelopeText,
  parseFetch,
  partial,
  type Section,
  sectionBytes,
} from '../src/index.ts';

/** The section of `BODY.PEEK[spec]`, read by the FETCH parser as a client's command would be. */
function parseSection(spec: string): Section {
  const item = parseFetch(new Cursor([`BODY.PEEK[${spec}]`])).items[0]!;
  if (item.kind !== 'section') throw new Error('not a section');
  return item.section;
}

const raw = Buffer.from(
  [
    'From: "Ann" <ann@example.org>',
    'To: Team: c@x.org, d@x.org;, bob@example.net',
    'Subject: test',
    '  folded',
    'Date: Mon, 23 Nov 2026 10:00:00 +0000',
    'Message-ID: <1@x>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'hello',
    'world',
    '--b1',
    'Content-Type: message/rfc822',
    'Content-Disposition: attachment; filename="fwd.eml"',
    '',
    'Subject: inner',
    'From: x@y.org',
    '',
    'inner body',
    '--b1--',
    '',
  ].join('\r\n'),
);
const { root } = parseMessage(raw);
const get = (spec: string) => sectionBytes(raw, () => root, parseSection(spec))?.toString() ?? null;

describe('ENVELOPE', () => {
  it('lists the fields in RFC 3501 order, addresses back to back, groups marked', () => {
    assert.equal(
      envelopeText(root.envelope),
      '("Mon, 23 Nov 2026 10:00:00 +0000" "test  folded" (("Ann" NIL "ann" "example.org")) (("Ann" NIL "ann" "example.org")) ' +
        '(("Ann" NIL "ann" "example.org")) ((NIL NIL "Team" NIL)(NIL NIL "c" "x.org")(NIL NIL "d" "x.org")(NIL NIL NIL NIL)' +
        '(NIL NIL "bob" "example.net")) NIL NIL NIL "<1@x>")',
    );
  });
});

describe('BODYSTRUCTURE', () => {
  it('describes a multipart with a text part and an attached message, with extension data', () => {
    const inner =
      '(NIL "inner" ((NIL NIL "x" "y.org")) ((NIL NIL "x" "y.org")) ((NIL NIL "x" "y.org")) NIL NIL NIL NIL NIL)';
    assert.equal(
      bodyStructureText(root),
      '(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 12 2 NIL NIL NIL NIL)' +
        `("message" "rfc822" NIL NIL NIL "7bit" 43 ${inner} ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL) 4 NIL ("attachment" ("filename" "fwd.eml")) NIL NIL)` +
        ' "mixed" ("boundary" "b1") NIL NIL NIL)',
    );
  });

  it('leaves out extension data for BODY', () => {
    const simple = parseMessage(Buffer.from('Subject: s\r\n\r\nbody\r\n')).root;
    assert.equal(
      bodyStructureText(simple, false),
      '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)',
    );
  });
});

describe('BODY[section]', () => {
  const table: Array<[string, string | null]> = [
    ['', raw.toString()],
    ['1', 'hello\r\nworld'],
    [
      '1.MIME',
      'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n',
    ],
    ['2', 'Subject: inner\r\nFrom: x@y.org\r\n\r\ninner body'],
    ['2.HEADER', 'Subject: inner\r\nFrom: x@y.org\r\n\r\n'],
    ['2.TEXT', 'inner body'],
    ['2.1', 'inner body'],
    ['2.HEADER.FIELDS (from)', 'From: x@y.org\r\n\r\n'],
    ['HEADER.FIELDS (SUBJECT From)', 'From: "Ann" <ann@example.org>\r\nSubject: test\r\n  folded\r\n\r\n'],
    ['HEADER.FIELDS.NOT (From To Subject Date Message-ID Content-Type)', 'MIME-Version: 1.0\r\n\r\n'],
    ['TEXT', raw.toString().slice(raw.indexOf('\r\n\r\n') + 4)],
    ['3', null],
    ['1.HEADER', null],
    ['1.1', null],
  ];
  for (const [spec, want] of table) {
    it(`BODY[${spec}]`, () => assert.equal(get(spec), want));
  }
  it('gives a single-part message exactly one part, its body', () => {
    const one = Buffer.from('Subject: s\r\n\r\nonly body\r\n');
    const r = parseMessage(one).root;
    assert.equal(sectionBytes(one, () => r, parseSection('1'))?.toString(), 'only body\r\n');
    assert.equal(
      sectionBytes(one, () => r, parseSection('1.1')),
      null,
    );
    assert.equal(
      sectionBytes(one, () => r, parseSection('2')),
      null,
    );
  });

  it('starts with the header and its blank line for BODY[HEADER]', () => {
    assert.ok(get('HEADER')!.endsWith('boundary="b1"\r\n\r\n'));
  });
  it('applies partials', () => {
    const body = sectionBytes(raw, () => root, parseSection('1'))!;
    assert.equal(partial(body, 0, 5).toString(), 'hello');
    assert.equal(partial(body, 7).toString(), 'world');
    assert.equal(partial(body, 100, 5).toString(), '');
  });
  it('refuses malformed sections', () => {
    for (const bad of ['MIME', '0', '1..2', 'HEADER.FIELDS', 'HEADER.FIELDS ()', 'BOGUS', '1.TEXTX']) {
      assert.throws(() => parseSection(bad), ImapSyntaxError, bad);
    }
  });
});

describe('BODY[HEADER.FIELDS] and BODY[HEADER.FIELDS.NOT] of any header', () => {
  const name = fc.constantFrom('From', 'To', 'subject', 'X-Spam', 'Received', 'DATE');
  const value = fc.string({ maxLength: 30 }).map((v) => v.replace(/[\r\n]/g, ' '));
  const field = fc
    .tuple(name, value, fc.array(value, { maxLength: 2 }))
    .map(([n, v, folds]) => `${n}:${v}\r\n${folds.map((f) => ` ${f}\r\n`).join('')}`);
  it('split the header between them byte for byte, each field whole with its folded lines (property)', () => {
    fc.assert(
      fc.property(
        fc.array(field, { maxLength: 12 }),
        fc.subarray(['from', 'to', 'subject', 'x-spam']),
        (fields, wanted) => {
          const header = `${fields.join('')}\r\n`;
          const raw = Buffer.from(`${header}body\r\n`, 'latin1');
          assert.equal(headerText(raw), header);
          const kept = headerSection(header, { path: [], kind: 'HEADER.FIELDS', fields: wanted }).toString(
            'latin1',
          );
          const rest = headerSection(header, {
            path: [],
            kind: 'HEADER.FIELDS.NOT',
            fields: wanted,
          }).toString('latin1');
          const isWanted = (f: string) => wanted.includes(f.slice(0, f.indexOf(':')).toLowerCase());
          assert.equal(kept, `${fields.filter(isWanted).join('')}\r\n`);
          assert.equal(rest, `${fields.filter((f) => !isWanted(f)).join('')}\r\n`);
        },
      ),
      { numRuns: 300 },
    );
  });
});
