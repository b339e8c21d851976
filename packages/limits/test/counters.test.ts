// The same contract for the in-process counters and the Redis ones (a real redis-server on loopback).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Counters, clientNetwork, Greylist, InProcessCounters } from '../src/index.ts';
import { RedisCounters } from '../src/redis-counters.ts';
import { type RedisServer, startRedis } from './redis-server.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function suite(name: string, make: () => Promise<Counters>) {
  describe(`counters: ${name}`, () => {
    let c: Counters;
    let n = 0;
    const key = (k: string) => `${k}:${process.pid}:${++n}`;
    before(async () => {
      c = await make();
    });
    after(() => c.close());

    it('counts hits within a window that the first hit starts', async () => {
      const k = key('hits');
      assert.equal(await c.hit(k, 300), 1);
      assert.equal(await c.hit(k, 300), 2);
      assert.equal(await c.count(k), 2);
      const ttl = await c.ttl(k);
      assert.ok(ttl > 0 && ttl <= 300, `ttl ${ttl}`);
      await sleep(350);
      assert.equal(await c.count(k), 0);
      assert.equal(await c.hit(k, 300), 1);
      await c.reset(k);
      assert.equal(await c.count(k), 0);
    });

    it('stores values that expire, keeping the first one when asked to', async () => {
      const k = key('val');
      assert.equal(await c.put(k, 'first', 300, true), 'first');
      assert.equal(await c.put(k, 'second', 300, true), 'first');
      assert.equal(await c.get(k), 'first');
      assert.equal(await c.put(k, 'third', 300), 'third');
      await sleep(350);
      assert.equal(await c.get(k), null);
    });

    it('greylists a new triplet, passes its retry after the delay, and remembers it', async () => {
      const g = new Greylist(c, { delayMs: 200 });
      const sender = `s${n}@sender.example`;
      const wait = await g.check('198.51.100.7', sender, 'bob@example.org');
      assert.ok(wait !== null && wait > 0 && wait <= 200);
      assert.notEqual(await g.check('198.51.100.7', sender, 'bob@example.org'), null);
      // Another host of the same /24 is the same sender pool; another recipient is another triplet.
      assert.notEqual(await g.check('198.51.100.8', sender, 'bob@example.org'), null);
      await sleep(250);
      assert.equal(await g.check('198.51.100.8', sender, 'bob@example.org'), null);
      assert.equal(await g.check('198.51.100.7', sender, 'BOB@example.org'), null);
      assert.notEqual(await g.check('198.51.100.7', sender, 'ann@example.org'), null);
    });
  });
}

suite('in process', async () => new InProcessCounters());

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});
suite('redis', async () => new RedisCounters(redis.url));

describe('client networks for greylisting', () => {
  it('are /24 for IPv4 and /64 for IPv6', () => {
    assert.equal(clientNetwork('192.0.2.77'), '192.0.2.0/24');
    assert.equal(clientNetwork('::ffff:192.0.2.77'), '192.0.2.0/24');
    assert.equal(clientNetwork('2001:db8:1:2:3::4'), '2001:db8:1:2::/64');
    assert.equal(clientNetwork('2001:db8::1'), '2001:db8:0:0::/64');
  });
});

describe('connection limiter', () => {
  it('admits up to the total and the per-address limit, and frees places on release', async () => {
    const { ConnectionLimiter } = await import('../src/index.ts');
    const l = new ConnectionLimiter(3, 2);
    assert.equal(l.admit('192.0.2.1'), null);
    assert.equal(l.admit('192.0.2.1'), null);
    assert.equal(l.admit('192.0.2.1'), 'address');
    assert.equal(l.admit('192.0.2.2'), null);
    assert.equal(l.admit('192.0.2.3'), 'total');
    l.release('192.0.2.1');
    assert.equal(l.admit('192.0.2.3'), null);
    // Releasing an address that holds no place changes nothing.
    l.release('198.51.100.9');
    assert.equal(l.admit('192.0.2.4'), 'total');
  });
});
