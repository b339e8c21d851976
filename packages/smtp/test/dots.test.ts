// The DATA reader (src/dots.ts) on smtp-server's real SMTPStream: the bytes of a case go in as the
// wire would bring them, cut into chunks anywhere, and what comes out is the message and its flag.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { installDotReader, REQUIRED_MEMBERS } from '../src/index.ts';

installDotReader();

interface Result {
  data: Buffer;
  smuggling: boolean;
  /** The commands that came after the data ended. */
  after: string[];
}

/** Feeds `DATA` then `wire` (cut into `cuts`) to a fresh stream. */
function feed(wire: Buffer, cuts: number[] = []): Promise<Result> {
  return new Promise((resolve, reject) => {
    const parser = new SMTPStream();
    const after: string[] = [];
    const parts: Buffer[] = [];
    let ended = false;
    parser.oncommand = (line: Buffer, next?: () => void) => {
      const text = line.toString('latin1');
      if (text === 'DATA') {
        const stream = parser.startDataMode() as unknown as NodeJS.ReadableStream & { smuggling?: boolean };
        stream.on('data', (b: Buffer) => parts.push(b));
        stream.on('end', () => {
          ended = true;
          parser.continue();
          setImmediate(() =>
            resolve({ data: Buffer.concat(parts), smuggling: Boolean(stream.smuggling), after }),
          );
        });
      } else after.push(text);
      next?.();
    };
    parser.on('error', reject);
    parser.write(Buffer.from('DATA\r\n'));
    let at = 0;
    for (const cut of [...cuts.filter((c) => c > 0 && c < wire.length)].sort((a, b) => a - b)) {
      parser.write(wire.subarray(at, cut));
      at = cut;
    }
    parser.write(wire.subarray(at));
    setTimeout(() => {
      if (!ended) reject(new Error('the data never ended'));
    }, 2000).unref();
  });
}

describe('DATA reader', () => {
  it('still finds what it replaces and calls in smtp-server', () => {
    for (const m of REQUIRED_MEMBERS)
      assert.equal(typeof (SMTPStream.prototype as unknown as Record<string, unknown>)[m], 'function', m);
  });

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
    assert.deepEqual(r.after, ['QUIT']);
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
