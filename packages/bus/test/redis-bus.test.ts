// The shared bus over a real redis-server on loopback: two buses stand for two processes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisServer, startRedis } from '../../limits/test/redis-server.ts';
import type { MailEvent } from '../src/index.ts';
import { RedisBus } from '../src/redis.ts';

const until = async (check: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('not in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('RedisBus', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  it("carries an account's events from one process to another, and only to that account's subscribers", async () => {
    const mda = new RedisBus(redis.url);
    const access = new RedisBus(redis.url);
    try {
      const bob: MailEvent[] = [];
      const ann: MailEvent[] = [];
      access.subscribe('bob', (e) => bob.push(e));
      const stopAnn = access.subscribe('ann', (e) => ann.push(e));
      await access.ready();
      await mda.publish({ type: 'message.new', accountId: 'bob', mailboxId: 'm1', uid: 7, modseq: 9 });
      await until(() => bob.length === 1);
      assert.deepEqual(bob[0], { type: 'message.new', accountId: 'bob', mailboxId: 'm1', uid: 7, modseq: 9 });
      assert.equal(ann.length, 0);
      stopAnn();
      await access.ready();
      await mda.publish({ type: 'mailbox.change', accountId: 'ann', mailboxId: 'm2' });
      await mda.publish({
        type: 'message.expunge',
        accountId: 'bob',
        mailboxId: 'm1',
        uids: [7],
        modseq: 10,
      });
      await until(() => bob.length === 2);
      assert.equal(ann.length, 0);
    } finally {
      await mda.close();
      await access.close();
    }
  });
});
