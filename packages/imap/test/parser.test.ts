// The protocol layer alone: framing, arguments, sequence sets, SEARCH and FETCH grammar, LIST patterns.
// Tables of input → result or BAD, hostile input, and a bounded property test that no input throws past a BAD.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ImapSyntaxError, ImapUserError } from '../src/errors.ts';
import {
  Cursor,
  compilePattern,
  type Frame,
  FrameError,
  Framer,
  parseFetch,
  parseSearch,
  readSequenceSet,
  type SearchKey,
  UidList,
} from '../src/index.ts';

const cursor = (line: string) => new Cursor([line]);
const search = (line: string) => parseSearch(cursor(line), (raw) => raw).key;

function framer(opts: { maxLine?: number; limit?: number } = {}) {
  const sent: string[] = [];
  const refused: string[] = [];
  const f = new Framer({
    maxLine: opts.maxLine ?? 1024,
    onLiteral: (r) =>
      r.size > (opts.limit ?? 100) ? `${String(r.head[0]).split(' ')[0]} NO [TOOBIG] too big` : null,
    onContinue: () => sent.push('+'),
    onRefused: (r) => refused.push(r),
  });
  return { f, sent, refused };
}

describe('Framer: commands out of the byte stream', () => {
  it('cuts lines, joins literals and answers synchronising literals with a continuation', () => {
    const { f, sent } = framer();
    const frames: Frame[] = [];
    frames.push(...f.push(Buffer.from('a NOOP\r\nb LOGIN {3}\r\n')));
    assert.equal(frames.length, 1);
    assert.deepEqual(sent, ['+']);
    frames.push(...f.push(Buffer.from('bo')));
    frames.push(...f.push(Buffer.from('b {2+}\r\npw\r\nc NOOP\n')));
    assert.deepEqual(
      frames.map((x) => x.parts.map((p) => (Buffer.isBuffer(p) ? `<${p.toString()}>` : p))),
      [['a NOOP'], ['b LOGIN {3}', '<bob>', ' {2+}', '<pw>', ''], ['c NOOP']],
    );
    // The non-synchronising literal got no continuation.
    assert.deepEqual(sent, ['+']);
  });

  it('refuses a synchronising literal that is too large without reading it, and goes on', () => {
    const { f, sent, refused } = framer({ limit: 10 });
    assert.deepEqual(f.push(Buffer.from('a APPEND INBOX {4294967296}\r\n')), []);
    assert.deepEqual(refused, ['a NO [TOOBIG] too big']);
    assert.deepEqual(sent, []);
    assert.equal(f.push(Buffer.from('b NOOP\r\n')).length, 1);
  });

  it('ends the session for a non-synchronising literal that is too large (its bytes are already coming)', () => {
    const { f } = framer({ limit: 10 });
    assert.throws(() => f.push(Buffer.from('a APPEND INBOX {999999+}\r\n')), FrameError);
  });

  it('bounds a line without LF: 10 MB is refused after the limit, not buffered', () => {
    const { f } = framer({ maxLine: 64 * 1024 });
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    assert.throws(() => {
      for (let i = 0; i < 10; i++) f.push(chunk);
    }, FrameError);
  });

  it('bounds the number of literals in one command', () => {
    const f = new Framer({
      maxLine: 1 << 20,
      maxLiterals: 5,
      onLiteral: () => null,
      onContinue: () => {},
      onRefused: () => {},
    });
    assert.throws(
      () => f.push(Buffer.from('a X {0}\r\n {0}\r\n {0}\r\n {0}\r\n {0}\r\n {0}\r\n {0}\r\n')),
      FrameError,
    );
  });
});

describe('Cursor: arguments', () => {
  it('reads atoms, quoted strings with escapes, literals, NIL and numbers', () => {
    const c = new Cursor(['a "q \\"x\\" \\\\" {3}', Buffer.from('lit'), ' NIL 42']);
    assert.equal(c.astring(), 'a');
    c.space();
    assert.equal(c.astring(), 'q "x" \\');
    c.space();
    assert.equal(c.astring(), 'lit');
    c.space();
    assert.equal(c.nstring(), null);
    c.space();
    assert.equal(c.number(), 42);
    c.end();
  });

  const bads = ['"unterminated', '"bad \\q escape"', '(', 'a b', ')'];
  for (const line of bads)
    it(`refuses ${JSON.stringify(line)} with BAD`, () => {
      assert.throws(() => {
        const c = cursor(line);
        c.astring();
        c.end();
      }, ImapSyntaxError);
    });

  it('refuses numbers beyond 32 bits where a UID or count is expected', () => {
    assert.throws(() => cursor('4294967296').number(), ImapSyntaxError);
    assert.equal(cursor('4294967295').number(), 4294967295);
  });
});

describe('Sequence sets', () => {
  const list = new UidList([3, 5, 7, 9, 100]);
  const table: Array<[string, boolean, number[] | 'BAD']> = [
    ['1', false, [3]],
    ['1,*', false, [3, 100]],
    ['*:3', false, [7, 9, 100]],
    ['2:4,3:5', false, [5, 7, 9, 100]],
    ['6', false, 'BAD'],
    ['1:4294967295', true, [3, 5, 7, 9, 100]],
    ['4:8', true, [5, 7]],
    ['101:*', true, [100]],
    ['*', true, [100]],
    ['50:60', true, []],
  ];
  for (const [set, byUid, want] of table)
    it(`${byUid ? 'UID ' : ''}${set}`, () => {
      const ranges = readSequenceSet(cursor(set));
      const run = () => (byUid ? list.byUid(ranges) : list.bySeq(ranges));
      if (want === 'BAD') assert.throws(run, ImapSyntaxError);
      else assert.deepEqual(run(), want);
    });

  it('reads `$` (RFC 5182) only as a whole set, never as one element of a list', () => {
    const c = cursor('$,1');
    assert.deepEqual(readSequenceSet(c), [[-2, -2]]);
    assert.throws(() => c.end(), ImapSyntaxError);
    assert.throws(() => readSequenceSet(cursor('1,$')), ImapSyntaxError);
    const d = cursor('$:3');
    readSequenceSet(d);
    assert.throws(() => d.end(), ImapSyntaxError);
  });

  it('resolves a giant set in time proportional to the mailbox, not to the numbers named', () => {
    const set = Array.from({ length: 2000 }, (_, i) => `${i * 1000 + 1}:${i * 1000 + 999999}`).join(',');
    const t = Date.now();
    assert.deepEqual(new UidList([1, 2, 3]).byUid(readSequenceSet(cursor(set))), [1, 2, 3]);
    assert.ok(Date.now() - t < 500);
    assert.throws(
      () => readSequenceSet(cursor(Array.from({ length: 10_001 }, () => '1').join(','))),
      ImapSyntaxError,
    );
  });

  it('keeps the UID list ordered through additions and removals', () => {
    const l = new UidList([]);
    for (const u of [5, 1, 9, 3, 9]) l.add(u);
    assert.deepEqual(l.toArray(), [1, 3, 5, 9]);
    l.removeAll(new Set([3, 9]));
    assert.deepEqual(l.toArray(), [1, 5]);
    assert.equal(l.seqOf(5), 2);
    assert.equal(l.seqOf(4), 0);
  });
});

describe('SEARCH grammar', () => {
  it('parses keys, OR, NOT, parentheses and sets', () => {
    assert.deepEqual(search('SUBJECT NIL'), { op: 'header', field: 'subject', value: 'NIL' });
    assert.deepEqual(search('FLAGGED NOT SEEN'), {
      op: 'and',
      keys: [
        { op: 'flag', flag: '\\Flagged', set: true },
        { op: 'not', key: { op: 'flag', flag: '\\Seen', set: true } },
      ],
    });
    assert.deepEqual(search('OR (FROM a TO b) 2:3'), {
      op: 'or',
      keys: [
        {
          op: 'and',
          keys: [
            { op: 'header', field: 'from', value: 'a' },
            { op: 'header', field: 'to', value: 'b' },
          ],
        },
        { op: 'seq', ranges: [[2, 3]] },
      ],
    });
    assert.deepEqual(search('*:3'), { op: 'seq', ranges: [[-1, 3]] });
    assert.deepEqual(search('SENTSINCE 1-Feb-2026'), { op: 'date', sent: true, cmp: '>=', day: 20260201 });
    assert.deepEqual(search('HEADER X-Spam yes'), { op: 'header', field: 'x-spam', value: 'yes' });
    assert.deepEqual(search('NOT NOT SEEN'), { op: 'flag', flag: '\\Seen', set: true });
    assert.equal(parseSearch(cursor('CHARSET UTF-8 ALL'), (r) => r).charset, 'UTF-8');
    assert.equal(parseSearch(cursor('MODSEQ 5'), (r) => r).usesModseq, true);
    assert.deepEqual(search('$'), { op: 'seq', ranges: [[-2, -2]] });
    assert.deepEqual(search('UID $'), { op: 'uid', ranges: [[-2, -2]] });
    assert.deepEqual(search('OLDER 3600'), { op: 'within', older: true, seconds: 3600 });
    assert.deepEqual(search('YOUNGER 1'), { op: 'within', older: false, seconds: 1 });
    assert.deepEqual(search('EMAILID M1f_x-2'), { op: 'emailid', id: 'M1f_x-2' });
    assert.deepEqual(search('THREADID T9'), { op: 'threadid', id: 'T9' });
    assert.deepEqual(search('SAVEDSINCE 2-Jan-2026'), {
      op: 'date',
      sent: false,
      saved: true,
      cmp: '>=',
      day: 20260102,
    });
    assert.deepEqual(search('SAVEDATESUPPORTED'), { op: 'all' });
  });

  it('flattens 3,000 ORs into one list, without recursion', () => {
    const line = `${'OR ALL '.repeat(3000)}ALL`;
    const key = search(line);
    assert.equal(key.op, 'or');
    assert.equal((key as Extract<SearchKey, { op: 'or' }>).keys.length, 3001);
  });

  it('answers 10,000 nested parentheses (they hold one key) and refuses what stays deeper than the bound with NO [LIMIT]', () => {
    assert.deepEqual(search(`${'('.repeat(10_000)}ALL${')'.repeat(10_000)}`), { op: 'all' });
    assert.throws(() => search(`${'NOT OR ALL '.repeat(200)}ALL`), ImapUserError);
    assert.throws(() => search(`${'('.repeat(10_000)}ALL`), ImapSyntaxError);
  });

  const bads = [
    '',
    'OR ALL',
    'NOT',
    '(ALL',
    'ALL)',
    '()',
    'BOGUS',
    'SINCE 32-Feb-2026x',
    'UID',
    'LARGER x',
    'HEADER Subject',
    'OLDER 0',
    'YOUNGER',
    'OLDER x',
    'YOUNGER 4294967296',
    'EMAILID',
    'THREADID a.b',
  ];
  for (const line of bads)
    it(`refuses ${JSON.stringify(line)} with BAD`, () => assert.throws(() => search(line), ImapSyntaxError));
});

describe('FETCH grammar', () => {
  const labels = (line: string) =>
    parseFetch(cursor(line)).items.map((i) =>
      i.kind === 'section' ? `${i.label}${i.peek ? ' peek' : ''}` : i.kind,
    );
  it('reads macros, single items, lists, sections, partials and CHANGEDSINCE', () => {
    assert.deepEqual(labels('FAST'), ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE']);
    assert.deepEqual(labels('UID'), ['UID']);
    assert.deepEqual(
      labels('(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From "To")] BODY[1.2.MIME] BODY[]<0.100>)'),
      ['UID', 'RFC822.SIZE', 'BODY[HEADER.FIELDS (From To)] peek', 'BODY[1.2.MIME]', 'BODY[]<0>'],
    );
    assert.deepEqual(labels('(RFC822 RFC822.HEADER RFC822.TEXT BODY BODYSTRUCTURE ENVELOPE)'), [
      'RFC822',
      'RFC822.HEADER peek',
      'RFC822.TEXT',
      'BODY',
      'BODYSTRUCTURE',
      'ENVELOPE',
    ]);
    assert.equal(parseFetch(cursor('(FLAGS) (CHANGEDSINCE 12345)')).changedSince, 12345);
  });
  const bads = [
    '()',
    'BODY[',
    'BODY[MIME]',
    'BODY[HEADER.FIELDS ()]',
    'BODY[]<5>',
    'BODY[1..2]',
    'FOO',
    '(FLAGS) (NOPE 1)',
    'BODY[0]',
  ];
  for (const line of bads)
    it(`refuses ${JSON.stringify(line)} with BAD`, () =>
      assert.throws(() => parseFetch(cursor(line)), ImapSyntaxError));
});

describe('LIST patterns', () => {
  const table: Array<[string, string, boolean]> = [
    ['*', 'a/b/c', true],
    ['%', 'a/b', false],
    ['%', 'a', true],
    ['a/%', 'a/b', true],
    ['a/%', 'a/b/c', false],
    ['a*c', 'abbbc', true],
    ['a%c', 'a/c', false],
    ['INBOX', 'INBOX', true],
    ['Entw*', 'Entwürfe', true],
    ['*x', 'yyy', false],
  ];
  for (const [pattern, name, want] of table)
    it(`${pattern} ${want ? 'matches' : 'does not match'} ${name}`, () =>
      assert.equal(compilePattern(pattern)(name), want));

  it('matches a pattern of 200 "*%" pairs in linear time (a backtracking regex takes minutes)', () => {
    const m = compilePattern(`${'*%'.repeat(200)}x`);
    const name = 'a/'.repeat(500);
    const t = Date.now();
    for (let i = 0; i < 100; i++) assert.equal(m(name), false);
    assert.ok(Date.now() - t < 500, `${Date.now() - t} ms`);
    const alternating = compilePattern(`${'a*'.repeat(500)}b`);
    const t2 = Date.now();
    assert.equal(alternating('a'.repeat(1000)), false);
    assert.ok(Date.now() - t2 < 500, `${Date.now() - t2} ms`);
  });
});

describe('Property: any command line gives a parse or a BAD, never another exception', () => {
  const token = fc.constantFrom(
    'FETCH',
    'SEARCH',
    'UID',
    'OR',
    'NOT',
    'ALL',
    '(',
    ')',
    '[',
    ']',
    '<',
    '>',
    '.',
    '*',
    ':',
    ',',
    '%',
    ' ',
    '"',
    '\\',
    'BODY',
    'BODY.PEEK[',
    'HEADER.FIELDS',
    '1',
    '4294967296',
    '{5}',
    'NIL',
    'SUBJECT',
    'SINCE',
    '1-Jan-2026',
    'CHANGEDSINCE',
    '$',
    'RETURN',
    'OLDER',
    'YOUNGER',
    'EMAILID',
    'THREADID',
    'BINARY[',
    'BINARY.SIZE[',
    'PREVIEW',
    '(LAZY)',
  );
  const line = fc
    .array(fc.oneof(token, fc.string({ maxLength: 8 })), { maxLength: 40 })
    .map((a) => a.join(''));
  const expected = (e: unknown) => e instanceof ImapSyntaxError || e instanceof ImapUserError;
  const runs = Number(process.env.FUZZ_RUNS ?? 3000);

  it('for SEARCH, FETCH, sequence sets and plain arguments', () => {
    fc.assert(
      fc.property(line, (l) => {
        for (const parse of [
          () => search(l),
          () => parseFetch(cursor(l)),
          () => readSequenceSet(cursor(l)),
          () => {
            const c = cursor(l);
            c.astring();
            c.space();
            c.listMailbox();
            c.end();
          },
        ]) {
          try {
            parse();
          } catch (e) {
            if (!expected(e)) throw e;
          }
        }
      }),
      { numRuns: runs },
    );
  });

  it('for the framer, fed random bytes in random pieces', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
        const { f } = framer({ maxLine: 256, limit: 50 });
        try {
          for (const c of chunks) f.push(Buffer.from(c));
        } catch (e) {
          if (!(e instanceof FrameError)) throw e;
        }
      }),
      { numRuns: runs },
    );
  });
});
