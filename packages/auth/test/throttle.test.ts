import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InProcessCounters } from '@mailwerk/limits';
import { checkLogin } from '../src/login.ts';
import { hashPassword } from '../src/passwords.ts';
import { type AuthFailure, AuthThrottle } from '../src/throttle.ts';

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('failures beyond the free ones delay, doubling up to the cap', async () => {
  const c = clock();
  const th = new AuthThrottle({
    counters: new InProcessCounters(c.now),
    freeFailures: 2,
    baseDelayMs: 100,
    maxDelayMs: 350,
  });
  assert.deepEqual(await th.check('192.0.2.1', 'bob@example.org'), { blocked: false, delayMs: 0 });
  await th.failed('192.0.2.1', 'bob@example.org');
  await th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(await th.check('192.0.2.1', 'x@example.org'), { blocked: false, delayMs: 100 });
  await th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(await th.check('192.0.2.1', 'x@example.org'), { blocked: false, delayMs: 200 });
  await th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(await th.check('192.0.2.1', 'x@example.org'), { blocked: false, delayMs: 350 });
});

test('the real user from their own address is not slowed by a guesser elsewhere, until many failures', async () => {
  const c = clock();
  const th = new AuthThrottle({
    counters: new InProcessCounters(c.now),
    freeFailures: 2,
    accountFreeFailures: 10,
    baseDelayMs: 100,
  });
  for (let i = 0; i < 5; i++) await th.failed('203.0.113.66', 'Bob@example.org');
  assert.deepEqual(await th.check('198.51.100.7', 'bob@example.org'), { blocked: false, delayMs: 0 });
  for (let i = 0; i < 5; i++) await th.failed(`203.0.113.${i}`, 'bob@example.org');
  // Ten failures for the account, from all over: now everyone trying it waits.
  assert.deepEqual(await th.check('198.51.100.7', 'BOB@example.org'), { blocked: false, delayMs: 100 });
});

test('an address is blocked after many failures, until the window ends', async () => {
  const c = clock();
  const th = new AuthThrottle({ counters: new InProcessCounters(c.now), blockAfter: 5, windowMs: 60_000 });
  for (let i = 0; i < 5; i++) await th.failed('192.0.2.9', `user${i}@example.org`);
  const v = await th.check('192.0.2.9', 'someone@example.org');
  assert.equal(v.blocked, true);
  assert.equal((await th.check('192.0.2.10', 'someone@example.org')).blocked, false);
  c.advance(60_001);
  assert.deepEqual(await th.check('192.0.2.9', 'someone@example.org'), { blocked: false, delayMs: 0 });
});

test('a success clears the count', async () => {
  const c = clock();
  const th = new AuthThrottle({ counters: new InProcessCounters(c.now), freeFailures: 0, baseDelayMs: 100 });
  await th.failed('192.0.2.1', 'bob@example.org');
  assert.deepEqual(await th.check('192.0.2.1', 'bob@example.org'), { blocked: false, delayMs: 200 });
  await th.succeeded('192.0.2.1', 'bob@example.org');
  assert.deepEqual(await th.check('192.0.2.1', 'bob@example.org'), { blocked: false, delayMs: 0 });
});

test('checkLogin reports each refusal once, with the address as fail2ban bans it; a success reports nothing', async () => {
  const reported: AuthFailure[] = [];
  const th = new AuthThrottle({
    baseDelayMs: 1,
    maxDelayMs: 1,
    blockAfter: 3,
    onFailure: (f) => reported.push(f),
  });
  const account = { passwordHash: await hashPassword('right'), disabled: false };
  const attempt = (ip: string, user: string, password: string) =>
    checkLogin({
      throttle: th,
      service: 'pop3',
      session: 's1',
      ip,
      user,
      password,
      find: async () => account,
    });
  assert.equal((await attempt('::ffff:192.0.2.9', 'bob', 'right')).ok, true);
  assert.equal(reported.length, 0);
  const table: Array<[string, string, AuthFailure]> = [
    [
      '::ffff:192.0.2.9',
      'bob',
      { service: 'pop3', ip: '192.0.2.9', user: 'bob', reason: 'invalid', session: 's1' },
    ],
    [
      '2001:db8::7',
      'b'.repeat(300),
      { service: 'pop3', ip: '2001:db8::7', user: 'b'.repeat(256), reason: 'invalid', session: 's1' },
    ],
  ];
  for (const [ip, user, want] of table) {
    reported.length = 0;
    assert.deepEqual(await attempt(ip, user, 'wrong'), { ok: false, reason: 'invalid' });
    assert.deepEqual(reported, [want]);
  }
  // Past blockAfter failures from one address: refused without a check, and reported as blocked.
  await attempt('198.51.100.1', 'bob', 'wrong');
  await attempt('198.51.100.1', 'bob', 'wrong');
  await attempt('198.51.100.1', 'bob', 'wrong');
  reported.length = 0;
  assert.deepEqual(await attempt('198.51.100.1', 'bob', 'right'), { ok: false, reason: 'blocked' });
  assert.deepEqual(
    reported.map((f) => [f.ip, f.reason]),
    [['198.51.100.1', 'blocked']],
  );
});
