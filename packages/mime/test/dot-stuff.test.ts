import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { dotStuff } from '../src/index.ts';

const wire = (s: string, lastLine: 'lf' | 'crlf') =>
  dotStuff(Buffer.from(s, 'latin1'), lastLine).toString('latin1');

/** What a receiver rebuilds (RFC 5321 §4.5.2): lines split after LF, up to the `.` line, one leading dot removed. */
function unstuff(w: string): string {
  const lines = w.split(/(?<=\n)/);
  const end = lines.indexOf('.\r\n');
  assert.notEqual(end, -1, 'the terminating line is there');
  assert.equal(end, lines.length - 1, 'and nothing after it');
  return lines
    .slice(0, end)
    .map((l) => (l.startsWith('.') ? l.slice(1) : l))
    .join('');
}

describe('dotStuff: a message for a dot-terminated transfer', () => {
  it('doubles a dot that starts a line, keeps every other byte, ends with the terminating line', () => {
    const table: Array<[string, 'lf' | 'crlf', string]> = [
      ['', 'crlf', '.\r\n'],
      ['a\r\n', 'crlf', 'a\r\n.\r\n'],
      ['a', 'crlf', 'a\r\n.\r\n'],
      ['.a\r\n..b\r\nc.d\r\n', 'crlf', '..a\r\n...b\r\nc.d\r\n.\r\n'],
      ['a\n.b\n', 'crlf', 'a\n..b\n\r\n.\r\n'],
      ['a\n.b\n', 'lf', 'a\n..b\n.\r\n'],
      ['x\r.y\r\n', 'crlf', 'x\r.y\r\n.\r\n'],
      ['.\r\n', 'lf', '..\r\n.\r\n'],
    ];
    for (const [input, lastLine, want] of table)
      assert.equal(wire(input, lastLine), want, JSON.stringify(input));
  });

  it('gives back the message byte for byte to a receiver that unstuffs (property)', () => {
    const text = fc.string({ unit: fc.constantFrom('.', '\r', '\n', 'a', ' '), maxLength: 200 });
    fc.assert(
      fc.property(text, (s) => {
        const ended = s === '' || s.endsWith('\r\n');
        assert.equal(unstuff(wire(s, 'crlf')), ended ? s : `${s}\r\n`);
      }),
      { numRuns: 500 },
    );
  });
});
