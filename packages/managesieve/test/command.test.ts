import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CommandError, encodeString, Framer, parseCommand } from '../src/index.ts';

const frames = (input: string | Buffer, limits = { maxLine: 1000, maxLiteral: 1000 }) =>
  new Framer(limits).push(Buffer.from(input)).map((c) => parseCommand(c.parts));

describe('ManageSieve command syntax (RFC 5804 §4)', () => {
  it('reads names, quoted strings with their escapes, literals of both forms, numbers, pipelined', () => {
    assert.deepEqual(
      frames(
        'authenticate "PLAIN" "AGJvYgBzZWNyZXQ="\r\nPUTSCRIPT "my \\"s\\"" {12+}\r\nkeep;\r\nstop;\r\nHAVESPACE "x" 500\r\nCHECKSCRIPT {5}\r\nkeep;\r\n',
      ),
      [
        { name: 'AUTHENTICATE', args: ['PLAIN', 'AGJvYgBzZWNyZXQ='] },
        { name: 'PUTSCRIPT', args: ['my "s"', 'keep;\r\nstop;'] },
        { name: 'HAVESPACE', args: ['x', 500] },
        { name: 'CHECKSCRIPT', args: ['keep;'] },
      ],
    );
  });

  it('waits for the rest of a command whose literal has not all arrived', () => {
    const f = new Framer({ maxLine: 100, maxLiteral: 100 });
    assert.deepEqual(f.push(Buffer.from('PUTSCRIPT "a" {10+}\r\nkee')), []);
    const [c] = f.push(Buffer.from('p; stop\r\nNOOP\r\n'));
    assert.deepEqual(parseCommand(c!.parts), { name: 'PUTSCRIPT', args: ['a', 'keep; stop'] });
  });

  const bad: Array<[string, string, RegExp]> = [
    ['an open quote', 'GETSCRIPT "abc\r\n', /not closed/],
    ['an unknown escape', 'GETSCRIPT "a\\bc"\r\n', /may be escaped/],
    ['a bare word as argument', 'GETSCRIPT abc\r\n', /Unexpected "abc"/],
    ['no command name', '"x"\r\n', /command name/],
  ];
  for (const [name, input, want] of bad)
    it(name, () =>
      assert.throws(
        () => frames(input),
        (e: unknown) => e instanceof CommandError && want.test(e.message),
      ),
    );

  it('refuses a line or a literal over the limits, before reading it all', () => {
    assert.throws(() => frames(`NOOP "${'x'.repeat(2000)}`), /Line too long/);
    assert.throws(() => frames('PUTSCRIPT "a" {5000+}\r\n'), /Literal of 5000 octets is too large/);
  });

  it('writes strings quoted when it can, as a literal otherwise', () => {
    assert.equal(encodeString('plain'), '"plain"');
    assert.equal(encodeString('needs "fileinto" \\o/'), '"needs \\"fileinto\\" \\\\o/"');
    assert.equal(encodeString('line 3: "x"\r\n'), '{13}\r\nline 3: "x"\r\n');
  });

  it('never throws anything but CommandError, for any bytes in any chunks (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), (chunks) => {
        const f = new Framer({ maxLine: 300, maxLiteral: 300 });
        try {
          for (const c of chunks) for (const cmd of f.push(Buffer.from(c))) parseCommand(cmd.parts);
        } catch (err) {
          assert.ok(err instanceof CommandError, String(err));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
