// The DATA reader (src/dots.ts): the bytes of a case go in as the wire would bring them, cut into
// chunks anywhere, and what comes out is the message, its flag and what followed the end.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DataReader } from '../src/index.ts';

interface Result {
  data: Buffer;
  smuggling: boolean;
  /** The bytes that came after the data ended. */
  after: string;
}

/** Feeds `wire` (cut into `cuts`) to a fresh reader. */
async function feed(wire: Buffer, cuts: number[] = [], limit = 1_000_000): Promise<Result> {
  const reader = new DataReader(limit);
  let at = 0;
  const pieces: Buffer[] = [];
  for (const cut of [...cuts.filter((c) => c > 0 && c < wire.length)].sort((a, b) => a - b)) {
    pieces.push(wire.subarray(at, cut));
    at = cut;
  }
  pieces.push(wire.subarray(at));
  for (const [i, piece] of pieces.entries()) {
    const rest = reader.feed(piece);
    if (rest === null) continue;
    const after = Buffer.concat([rest, ...pieces.slice(i + 1)]).toString('latin1');
    return { data: reader.message() ?? Buffer.alloc(0), smuggling: reader.smuggling, after };
  }
  throw new Error('the data never ended');
}

describe('DATA reader', () => {
  const cases: Array<[wire: string, data: string, smuggling: boolean]> = [
    ['a\r\n.\r\n', 'a\r\n', false],
    ['.\r\n', '', false],
    ['..\r\n.\r\n', '.\r\n', false],
    ['..x\r\n.\r\n', '.x\r\n', false],
    // RFC 5321 §4.5.2: the first dot of every line goes, whether or not another follows.
    ['.x\r\n.\r\n', 'x\r\n', false],
    ['a\r\n.b\r\n..c\r\n...\r\n.\r\n', 'a\r\nb\r\n.c\r\n..\r\n', false],
    // Stuffed lines that end in a bare CR are content, never an end.
    ['..\r\r\nz\r\n.\r\n', '.\r\r\nz\r\n', false],
    // Smuggling shapes: a lone dot with a bare line ending; kept as content, flagged, not an end.
    ['a\n.\nb\r\n.\r\n', 'a\n\nb\r\n', true],
    ['a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n', 'a\n\r\nMAIL FROM:<x@y>\r\n', true],
    ['a\r\n.\nb\r\n.\r\n', 'a\r\n\nb\r\n', true],
    ['a\r.\rb\r\n.\r\n', 'a\r.\rb\r\n', true],
    ['a\r.\r\nb\r\n.\r\n', 'a\r.\r\nb\r\n', true],
    // A dot after a bare LF but not alone on its line: harmless (".NET"), unstuffed like any line start.
    ['x\n.NET\r\n.\r\n', 'x\nNET\r\n', false],
    ['a.b\r\n.\r\n', 'a.b\r\n', false],
  ];
  for (const [wire, data, smuggling] of cases) {
    it(`reads ${JSON.stringify(wire)}`, async () => {
      // Every single cut position must give the same answer as the whole.
      for (let cut = 0; cut <= wire.length; cut++) {
        const r = await feed(Buffer.from(wire, 'latin1'), [cut]);
        assert.equal(r.data.toString('latin1'), data, `cut at ${cut}`);
        assert.equal(r.smuggling, smuggling, `cut at ${cut}`);
      }
    });
  }

  it('gives back the commands that follow the end', async () => {
    const r = await feed(Buffer.from('a\r\n.\r\nQUIT\r\n'));
    assert.equal(r.data.toString(), 'a\r\n');
    assert.equal(r.after, 'QUIT\r\n');
  });

  it('keeps no more than the limit, and still counts and finds the end', async () => {
    const body = `${'x'.repeat(98)}\r\n`.repeat(50);
    const reader = new DataReader(1000);
    assert.equal(reader.feed(Buffer.from(body)), null);
    assert.deepEqual(reader.feed(Buffer.from('.\r\nNOOP\r\n')), Buffer.from('NOOP\r\n'));
    assert.equal(reader.message(), null);
    assert.equal(reader.size, body.length);
    const fits = new DataReader(body.length);
    fits.feed(Buffer.from(`${body}.\r\n`));
    assert.equal(fits.message()?.toString(), body);
  });

  it('round-trips any message stuffed as RFC 5321 §4.5.2 says, however the wire cuts it', async () => {
    const line = fc.string({
      unit: fc.constantFrom('a', '.', ' ', 'x', '\r', 'é'),
      maxLength: 12,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 12 }),
        fc.array(fc.nat({ max: 200 }), { maxLength: 6 }),
        async (lines, cuts) => {
          // CRLF-ended lines (a bare CR inside one is fine); a line that starts with a dot gets another.
          const message = lines.map((l) => `${l}\r\n`).join('');
          const wire = `${lines.map((l) => `${l.startsWith('.') ? '.' : ''}${l}\r\n`).join('')}.\r\n`;
          const r = await feed(Buffer.from(wire, 'utf8'), cuts);
          assert.equal(r.data.toString('utf8'), message);
          // Only a bare CR next to a dot inside a line can look like smuggling; without one, never.
          if (!lines.some((l) => l.includes('\r'))) assert.equal(r.smuggling, false);
        },
      ),
      { numRuns: 300 },
    );
  });
});
