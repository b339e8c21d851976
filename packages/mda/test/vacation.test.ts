// The vacation reply (src/vacation.ts) alone: :from only when it is the user's, :subject and the
// "Auto:" subject encoded where not ASCII, :mime bodies, and a header that stays well formed whatever
// the original message and the script put into it (fast-check).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Vacation } from '@mailwerk/sieve';
import fc from 'fast-check';
import { type VacationContext, vacationReply } from '../src/index.ts';

const action = (over: Partial<Vacation> = {}): Vacation => ({
  type: 'vacation',
  reason: 'Away.',
  addresses: [],
  mime: false,
  handle: 'h',
  seconds: 86_400,
  ...over,
});
const ctx = (headers: Record<string, string>, over: Partial<VacationContext> = {}): VacationContext => {
  const all = { to: 'Bob <bob@example.org>', ...headers };
  return {
    sender: 'ann@ext.org',
    recipient: 'bob+work@example.org',
    account: 'bob@example.org',
    header: (name) =>
      all[name.toLowerCase() as keyof typeof all] !== undefined
        ? [all[name.toLowerCase() as keyof typeof all]!]
        : [],
    fieldNames: Object.keys(all),
    spam: false,
    hostname: 'mail.example.org',
    ...over,
  };
};
const replied = (a: Vacation, c: VacationContext) => {
  const d = vacationReply(a, c);
  assert.ok(!('skip' in d), JSON.stringify(d));
  return { ...d, text: d.message.toString() };
};

describe('vacation reply', () => {
  it("is from the recipient; :from only when it is one of the user's addresses", () => {
    assert.equal(replied(action(), ctx({})).from, 'bob+work@example.org');
    const own = replied(action({ from: 'Bob B. <bob@example.org>' }), ctx({}));
    assert.equal(own.from, 'bob@example.org');
    assert.match(own.text, /^From: Bob B\. <bob@example\.org>\r$/m);
    const forged = replied(action({ from: 'ceo@bank.example' }), ctx({}));
    assert.equal(forged.from, 'bob+work@example.org');
    assert.doesNotMatch(forged.text, /bank\.example/);
  });

  it('encodes a subject that is not ASCII, and says "Automated reply" when there was none', () => {
    assert.match(
      replied(action(), ctx({ subject: 'Grüße' })).text,
      /^Subject: Auto: =\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?=\r$/im,
    );
    assert.match(replied(action(), ctx({})).text, /^Subject: Automated reply\r$/m);
    assert.match(replied(action({ subject: 'Out' }), ctx({ subject: 'x' })).text, /^Subject: Out\r$/m);
  });

  it('takes a :mime reason as the body entity, and refuses one without a header', () => {
    const r = replied(action({ mime: true, reason: 'Content-Type: text/html\n\n<p>Away</p>' }), ctx({}));
    assert.match(r.text, /^Content-Type: text\/html\r\n\r\n<p>Away<\/p>\r\n$/m);
    assert.doesNotMatch(r.text, /quoted-printable/);
    assert.deepEqual(vacationReply(action({ mime: true, reason: 'no header here' }), ctx({})), {
      skip: 'the :mime reason has no header and body',
    });
  });

  it('matches the user in To/Cc without the +detail and without case', () => {
    assert.ok(!('skip' in vacationReply(action(), ctx({ to: 'BOB+other@Example.org' }))));
    assert.ok('skip' in vacationReply(action(), ctx({ to: 'bobby@example.org' })));
  });

  it('writes a well-formed header whatever the message and the script hold (property)', () => {
    const text = fc.string({ maxLength: 300, unit: 'binary' });
    fc.assert(
      fc.property(text, text, text, text, (subject, messageId, references, scriptSubject) => {
        const d = vacationReply(
          action({ ...(scriptSubject.length % 2 ? { subject: scriptSubject } : {}) }),
          ctx({ subject, 'message-id': messageId, references }),
        );
        if ('skip' in d) return;
        const s = d.message.toString();
        const head = s.slice(0, s.indexOf('\r\n\r\n') + 2);
        for (const line of head.split('\r\n').slice(0, -1)) {
          assert.ok(line.length <= 998, 'a header line over 998 octets');
          assert.ok(
            /^([A-Za-z-]+: |[ \t])/.test(line),
            `not a field or a continuation: ${JSON.stringify(line)}`,
          );
          assert.doesNotMatch(line, /[\r\n\0]/);
        }
      }),
      { numRuns: 300 },
    );
  });
});
