import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthThrottle } from '../src/throttle.ts';

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('failures beyond the free ones delay, doubling up to the cap', () => {
  const c = clock();
  const th = new AuthThrottle({ freeFailures: 2, baseDelayMs: 100, maxDelayMs: 350, now: c.now });
  assert.deepEqual(th.check('192.0.2.1', 'bob@example.org'), { blocked: false, delayMs: 0 });
  th.failed('192.0.2.1', 'bob@example.org');
  th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(th.check('192.0.2.1', 'x@example.org'), { blocked: false, delayMs: 100 });
  th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(th.check('192.0.2.1', 'x@example.org'), { blocked: false, delayMs: 200 });
  th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(th.check('192.0.2.1', 'x@example.org'), { blocked: false, delayMs: 350 });
});

test('the account is throttled from another address too, case-insensitively', () => {
  const c = clock();
  const th = new AuthThrottle({ freeFailures: 1, baseDelayMs: 100, now: c.now });
  th.failed('192.0.2.1', 'Bob@example.org');
  th.failed('192.0.2.2', 'bob@example.org');
  assert.deepEqual(th.check('198.51.100.7', 'BOB@example.org'), { blocked: false, delayMs: 200 });
  assert.deepEqual(th.check('198.51.100.7', 'alice@example.org'), { blocked: false, delayMs: 0 });
});

test('an address is blocked after many failures, until the window ends', () => {
  const c = clock();
  const th = new AuthThrottle({ blockAfter: 5, windowMs: 60_000, now: c.now });
  for (let i = 0; i < 5; i++) th.failed('192.0.2.9', `user${i}@example.org`);
  const v = th.check('192.0.2.9', 'someone@example.org');
  assert.equal(v.blocked, true);
  assert.equal(th.check('192.0.2.10', 'someone@example.org').blocked, false);
  c.advance(60_001);
  assert.deepEqual(th.check('192.0.2.9', 'someone@example.org'), { blocked: false, delayMs: 0 });
});

test('a success clears the count', () => {
  const c = clock();
  const th = new AuthThrottle({ freeFailures: 0, baseDelayMs: 100, now: c.now });
  th.failed('192.0.2.1', 'bob@example.org');
  assert.equal(th.check('192.0.2.1', 'bob@example.org').blocked, false);
  th.succeeded('192.0.2.1', 'bob@example.org');
  assert.deepEqual(th.check('192.0.2.1', 'bob@example.org'), { blocked: false, delayMs: 0 });
});
