// SORT and THREAD's pure parts (packages/imap/src/sort.ts): sort order with ties, both threading algorithms on known trees, the response's notation, and hostile
// references (loops, self-references, deep chains) that must neither hang nor lose a message.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  formatThreads,
  type SortFacts,
  sortMessages,
  threadOrderedSubject,
  threadReferences,
} from '../src/sort.ts';

const msg = (seq: number, o: Partial<SortFacts> = {}): SortFacts => ({
  seq,
  uid: seq * 10,
  size: 100,
  arrival: seq * 1000,
  sent: seq * 1000,
  subject: '',
  from: null,
  to: null,
  cc: null,
  messageId: null,
  references: [],
  ...o,
});
const bySeq = (f: SortFacts) => f.seq;

describe('SORT order (RFC 5256 §3, RFC 5957)', () => {
  const a = (address: string, name = '') => ({ address, name });
  const facts = [
    msg(1, { subject: 'Re: beta', from: a('zed@x.org', 'Anna'), size: 300, sent: 5000, arrival: 1000 }),
    msg(2, { subject: 'alpha', from: a('bob@x.org'), size: 100, sent: 4000, arrival: 2000 }),
    msg(3, { subject: 'Beta', from: a('Bob@y.org', 'Carl'), size: 100, sent: 4000, arrival: 3000 }),
    msg(4, { subject: '[x] ALPHA (fwd)', from: null, size: 200, sent: 1000, arrival: 4000 }),
  ];
  const order = (keys: Array<[string, boolean?]>) =>
    sortMessages(
      facts,
      keys.map(([key, reverse]) => ({ key, reverse: reverse ?? false })),
      (s) => s,
    ).map(bySeq);
  it('orders by each key, ties by sequence number, REVERSE per key', () => {
    assert.deepEqual(order([['SUBJECT']]), [2, 4, 1, 3]);
    assert.deepEqual(order([['SIZE']]), [2, 3, 4, 1]);
    assert.deepEqual(order([['SIZE', true]]), [1, 4, 2, 3], 'ties stay in sequence order');
    assert.deepEqual(order([['DATE']]), [4, 2, 3, 1]);
    assert.deepEqual(order([['ARRIVAL', true]]), [4, 3, 2, 1]);
    // FROM is the local part: "" (none) < bob = Bob < zed.
    assert.deepEqual(order([['FROM']]), [4, 2, 3, 1]);
    // DISPLAYFROM: the name, else the address: "" < Anna < bob@x.org < Carl.
    assert.deepEqual(order([['DISPLAYFROM']]), [4, 1, 2, 3]);
    assert.deepEqual(order([['SUBJECT'], ['SIZE', true]]), [4, 2, 1, 3]);
  });
});

describe('THREAD (RFC 5256 §3)', () => {
  it('ORDEREDSUBJECT: groups by base subject, the first by date the parent of the rest', () => {
    const facts = [
      msg(1, { subject: 'b', sent: 3000 }),
      msg(2, { subject: 'a', sent: 1000 }),
      msg(3, { subject: 'Re: a', sent: 2000 }),
      msg(4, { subject: 'Re: b', sent: 4000 }),
      msg(5, { subject: 'a', sent: 5000 }),
      msg(6, { subject: 'c', sent: 6000 }),
    ];
    assert.equal(formatThreads(threadOrderedSubject(facts), bySeq), '(2 (3)(5))(1 4)(6)');
  });

  it('REFERENCES: links by ids, keeps dummies at the root only with two children or more, sorts by date', () => {
    const facts = [
      msg(1, { messageId: 'a', subject: 'root', sent: 1000 }),
      msg(2, { messageId: 'b', references: ['a'], subject: 'Re: root', sent: 2000 }),
      msg(3, { messageId: 'c', references: ['a', 'b'], subject: 'Re: root', sent: 3000 }),
      msg(4, { messageId: 'd', references: ['a'], subject: 'Re: root', sent: 2500 }),
      // Two replies to a message that is not here: a dummy at the root holds them.
      msg(5, { messageId: 'e', references: ['gone'], subject: 'other', sent: 4000 }),
      msg(6, { messageId: 'f', references: ['gone'], subject: 'Re: other', sent: 4500 }),
      // One reply to a missing message: promoted, no dummy.
      msg(7, { messageId: 'g', references: ['lost'], subject: 'alone', sent: 5000 }),
      // Same base subject, no ids in common: gathered by subject under the original.
      msg(8, { messageId: 'h', subject: 'Re: alone', sent: 6000 }),
    ];
    assert.equal(formatThreads(threadReferences(facts), bySeq), '(1 (2 3)(4))((5)(6))(7 8)');
  });

  it('survives loops, self-references, duplicate ids and missing ids, each message once', () => {
    const facts = [
      msg(1, { messageId: 'a', references: ['b'] }),
      msg(2, { messageId: 'b', references: ['a'] }),
      msg(3, { messageId: 'c', references: ['c'] }),
      msg(4, { messageId: 'a', references: ['c'] }),
      msg(5, { references: ['a', 'b', 'a'] }),
    ];
    const out = formatThreads(threadReferences(facts), bySeq);
    assert.deepEqual(out.match(/\d+/g)!.map(Number).sort(), [1, 2, 3, 4, 5]);
  });

  it('threads 10,000 messages in one chain of 100 references each within a bound', () => {
    const facts: SortFacts[] = [];
    for (let i = 1; i <= 10_000; i++)
      facts.push(
        msg(i, {
          messageId: `m${i}`,
          references: Array.from(
            { length: Math.min(100, i - 1) },
            (_, k) => `m${i - Math.min(100, i - 1) + k}`,
          ),
          subject: 'deep',
        }),
      );
    const t = Date.now();
    const out = formatThreads(threadReferences(facts), bySeq);
    assert.ok(Date.now() - t < 3000, `${Date.now() - t} ms`);
    assert.equal(out.match(/\d+/g)!.length, 10_000);
  });

  it('property: any references give every message exactly once, in well-formed notation', () => {
    const id = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            messageId: fc.option(id, { nil: null }),
            references: fc.array(id, { maxLength: 5 }),
            subject: fc.constantFrom('x', 'Re: x', 'y', '', 'Fwd: y'),
            sent: fc.integer({ min: 0, max: 5 }),
          }),
          { maxLength: 30 },
        ),
        (rows) => {
          const facts = rows.map((r, i) => msg(i + 1, r));
          for (const threads of [threadReferences(facts), threadOrderedSubject(facts)]) {
            const out = formatThreads(threads, bySeq);
            const nums = (out.match(/\d+/g) ?? []).map(Number).sort((p, q) => p - q);
            assert.deepEqual(
              nums,
              facts.map((f) => f.seq),
            );
            let depth = 0;
            for (const ch of out) {
              depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
              assert.ok(depth >= 0);
            }
            assert.equal(depth, 0);
            assert.doesNotMatch(out, /\(\)|\( | \)/);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
