// The MAIL and RCPT argument parser (src/command.ts): a table of what clients send, right and wrong,
// and a property over arbitrary lines: it always answers (an address or the reply), never throws,
// in time linear in the line.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeXtext, parsePath, SmtpError } from '../src/index.ts';

const ok = (kind: 'MAIL' | 'RCPT', arg: string) => {
  const r = parsePath(kind, arg);
  assert.ok(!(r instanceof SmtpError), `${arg}: ${r instanceof SmtpError ? r.message : ''}`);
  return r;
};
const refused = (kind: 'MAIL' | 'RCPT', arg: string) => {
  const r = parsePath(kind, arg);
  assert.ok(r instanceof SmtpError, `${arg} should be refused`);
  return `${r.responseCode} ${r.enhanced}`;
};

describe('MAIL and RCPT arguments', () => {
  it('reads addresses, with and without parameters', () => {
    const table: Array<
      [kind: 'MAIL' | 'RCPT', arg: string, address: string, params: Record<string, string | true>]
    > = [
      ['MAIL', 'FROM:<a@b.example>', 'a@b.example', {}],
      ['MAIL', 'from: <a@b.example>', 'a@b.example', {}],
      ['MAIL', 'FROM:<>', '', {}],
      [
        'MAIL',
        'FROM:<a@b.example> SIZE=1000 BODY=8bitmime',
        'a@b.example',
        { SIZE: '1000', BODY: '8BITMIME' },
      ],
      ['MAIL', 'FROM:<ü@b.example> SMTPUTF8', 'ü@b.example', { SMTPUTF8: true }],
      ['MAIL', 'FROM:<a@b.example> RET=hdrs ENVID=Q+2B1', 'a@b.example', { RET: 'HDRS', ENVID: 'Q+1' }],
      ['MAIL', 'FROM:<a@b.example> AUTH=<>', 'a@b.example', { AUTH: '<>' }],
      // Old clients leave the brackets out; Postfix takes that too.
      ['MAIL', 'FROM:a@b.example', 'a@b.example', {}],
      // A quoted local part may hold spaces and angle brackets.
      ['RCPT', 'TO:<"x y>z"@b.example>', '"x y>z"@b.example', {}],
      ['RCPT', 'TO:<"a\\"b"@b.example>', '"a\\"b"@b.example', {}],
      // RFC 5321 §4.1.2: a source route is accepted and ignored.
      ['RCPT', 'TO:<@relay.example,@other.example:c@d.example>', 'c@d.example', {}],
      [
        'RCPT',
        'TO:<c@d.example> NOTIFY=success,failure ORCPT=rfc822;c+40d.example',
        'c@d.example',
        { NOTIFY: 'SUCCESS,FAILURE', ORCPT: 'rfc822;c@d.example' },
      ],
      ['RCPT', 'TO:<postmaster>', 'postmaster', {}],
    ];
    for (const [kind, arg, address, params] of table) {
      const r = ok(kind, arg);
      assert.equal(r.address, address, arg);
      assert.deepEqual(r.params, params, arg);
    }
  });

  it('refuses what is wrong with the reply RFC 5321 and RFC 3463 name', () => {
    const table: Array<[kind: 'MAIL' | 'RCPT', arg: string, reply: string]> = [
      ['MAIL', 'TO:<a@b>', '501 5.5.4'],
      ['MAIL', 'FROM <a@b>', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b', '501 5.1.7'],
      ['MAIL', 'FROM:<a b@c>', '501 5.1.7'],
      ['MAIL', 'FROM:<a@b>x', '501 5.1.7'],
      ['MAIL', 'FROM:<a\u0000@b>', '501 5.1.7'],
      ['RCPT', 'TO:<>', '501 5.1.3'],
      ['RCPT', 'TO:<<a@b>>', '501 5.1.3'],
      ['MAIL', 'FROM:<a@b> FOO=1', '555 5.5.4'],
      ['MAIL', 'FROM:<a@b> NOTIFY=NEVER', '555 5.5.4'],
      ['RCPT', 'TO:<a@b> SIZE=1', '555 5.5.4'],
      ['MAIL', 'FROM:<a@b> SIZE=1 SIZE=2', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b> SIZE=lots', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b> SIZE', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b> SMTPUTF8=yes', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b> BODY=BINARYMIME', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b> RET=ALL', '501 5.5.4'],
      // xtext that hides a line break (header and log injection) or is not xtext at all.
      ['MAIL', 'FROM:<a@b> ENVID=x+0D+0Ay', '501 5.5.4'],
      ['MAIL', 'FROM:<a@b> ENVID=x+G1', '501 5.5.4'],
      ['MAIL', `FROM:<a@b> ENVID=${'e'.repeat(101)}`, '501 5.5.4'],
      ['RCPT', 'TO:<a@b> NOTIFY=NEVER,SUCCESS', '501 5.5.4'],
      ['RCPT', 'TO:<a@b> NOTIFY=SOMETIMES', '501 5.5.4'],
      ['RCPT', 'TO:<a@b> ORCPT=c@d', '501 5.5.4'],
    ];
    for (const [kind, arg, reply] of table) assert.equal(refused(kind, arg), reply, arg);
  });

  it('decodes xtext (RFC 3461 §4)', () => {
    assert.equal(decodeXtext('a+2Bb+3Dc'), 'a+b=c');
    assert.equal(decodeXtext('plain'), 'plain');
    assert.equal(decodeXtext('bad+'), null);
    assert.equal(decodeXtext('bad+4'), null);
  });

  it('answers any line with an address or a reply, never throwing, in linear time (property)', () => {
    const unit = fc.constantFrom('<', '>', '"', '\\', '@', ' ', ':', '=', '+', 'A', 'x', ',', '\u0000', 'ü');
    fc.assert(
      fc.property(
        fc.constantFrom('MAIL' as const, 'RCPT' as const),
        fc.string({ unit, maxLength: 200 }),
        (kind, rest) => {
          const arg = `${kind === 'MAIL' ? 'FROM' : 'TO'}:${rest}`;
          const r = parsePath(kind, arg);
          if (r instanceof SmtpError) {
            assert.match(`${r.responseCode}`, /^5\d\d$/);
            return;
          }
          // What it returns is a part of the line, with no control characters or bare spaces outside quotes.
          assert.doesNotMatch(r.address, /[\u0000-\u001f]/);
          for (const v of Object.values(r.params))
            if (typeof v === 'string') assert.doesNotMatch(v, /[\r\n]/);
        },
      ),
      { numRuns: 2000 },
    );
    // A long hostile line costs time in proportion to its length.
    for (const n of [20_000, 200_000]) {
      const line = `FROM:<${'"\\'.repeat(n)}`;
      const started = performance.now();
      parsePath('MAIL', line);
      assert.ok(performance.now() - started < 200, `${n}`);
    }
  });
});
