// SRS (src/srs.ts): the forms a forwarder writes, a bounce turned back, and what must be refused:
// another secret's hash, a changed part, an expired day, malformed and oversized addresses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isSrsAddress, SrsError, srsForward, srsReverse } from '../src/index.ts';

const secret = Buffer.alloc(32, 7);
const now = new Date('2026-12-01T12:00:00Z');
const o = { secret, now };
const days = (n: number) => new Date(now.getTime() + n * 86_400_000);

describe('SRS', () => {
  it('rewrites a sender to SRS0 at our domain, and a bounce to it back to the sender', () => {
    const srs = srsForward('alice@sender.example', 'example.org', o);
    assert.match(srs, /^SRS0=[A-Z2-7]{6}=[A-Z2-7]{2}=sender\.example=alice@example\.org$/);
    assert.ok(isSrsAddress(srs));
    assert.equal(srsReverse(srs, o), 'alice@sender.example');
    // Some MTAs lower-case what they pass on: still ours.
    assert.equal(srsReverse(srs.toLowerCase(), o), 'alice@sender.example');
    // A local part with the separators in it survives.
    const odd = srsForward('a=b+c-d@x.example', 'example.org', o);
    assert.equal(srsReverse(odd, o), 'a=b+c-d@x.example');
  });

  it('leaves <> and addresses without a domain alone', () => {
    assert.equal(srsForward('', 'example.org', o), '');
    assert.equal(srsForward('postmaster', 'example.org', o), 'postmaster');
  });

  it('wraps an SRS0 address of another forwarder as SRS1 that bounces straight back to that forwarder', () => {
    const first = srsForward('alice@sender.example', 'forwarder.example', {
      secret: Buffer.alloc(32, 1),
      now,
    });
    const second = srsForward(first, 'example.org', o);
    assert.match(
      second,
      /^SRS1=[A-Z2-7]{6}=forwarder\.example==[A-Z2-7]{6}=[A-Z2-7]{2}=sender\.example=alice@example\.org$/,
    );
    assert.equal(srsReverse(second, o), first);
    // Forwarded once more: still SRS1 with the first forwarder's part, signed by us again.
    const third = srsForward(second, 'example.net', o);
    assert.match(third, /^SRS1=[A-Z2-7]{6}=forwarder\.example==.*@example\.net$/);
    assert.equal(srsReverse(third, o), first);
  });

  it('refuses what we did not make, what was changed, and what has expired', () => {
    const srs = srsForward('alice@sender.example', 'example.org', o);
    const other = { secret: Buffer.alloc(32, 8), now };
    assert.throws(() => srsReverse(srs, other), SrsError);
    assert.throws(() => srsReverse(srs.replace('alice', 'mallory'), o), /hash/);
    assert.throws(() => srsReverse(srs.replace('sender.example', 'evil.example'), o), /hash/);
    assert.equal(srsReverse(srs, { secret, now: days(21) }), 'alice@sender.example');
    assert.throws(() => srsReverse(srs, { secret, now: days(22) }), /expired/);
    // A day ahead (the forwarding host's clock ahead of ours) is honoured; more is not.
    assert.equal(srsReverse(srs, { secret, now: days(-1) }), 'alice@sender.example');
    assert.throws(() => srsReverse(srs, { secret, now: days(-2) }), /expired/);
    for (const bad of [
      'SRS0=@example.org',
      'SRS0=abc@example.org',
      'SRS0=AAAAAA=AA=host@example.org',
      'SRS1=AAAAAA@example.org',
      'SRS1=AAAAAA=host=@example.org',
      `SRS0=${'='.repeat(600)}@example.org`,
      'SRS0=x=y=z=w',
    ])
      assert.throws(() => srsReverse(bad, o), SrsError, bad);
    assert.throws(() => srsForward(`${'a'.repeat(600)}@x.example`, 'example.org', o), SrsError);
  });

  it('turns back every address it rewrote, through one and two forwarders (property)', () => {
    const local = fc.stringMatching(/^[A-Za-z0-9._=+-]{1,40}$/).filter((l) => !isSrsAddress(l));
    const domain = fc.stringMatching(/^[a-z0-9]{1,12}(\.[a-z0-9]{1,8}){1,2}$/);
    fc.assert(
      fc.property(local, domain, domain, domain, fc.integer({ min: 0, max: 21 }), (l, d, f1, f2, age) => {
        const sender = `${l}@${d}`;
        const a = srsForward(sender, f1, o);
        const b = srsForward(a, f2, o);
        const later = { secret, now: days(age) };
        assert.equal(srsReverse(a, later), sender);
        assert.equal(srsReverse(b, later), a);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws anything but SrsError on any input, in time linear in its length (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 700 }), (s) => {
        for (const address of [s, `SRS0=${s}@example.org`, `SRS1=${s}@example.org`]) {
          try {
            srsReverse(address, o);
          } catch (err) {
            assert.ok(err instanceof SrsError, String(err));
          }
        }
      }),
      { numRuns: 500 },
    );
    const start = performance.now();
    assert.throws(() => srsReverse(`SRS0=${'=a'.repeat(250)}@example.org`, o), SrsError);
    assert.ok(performance.now() - start < 50);
  });
});
