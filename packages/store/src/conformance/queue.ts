/** The outbound queue: per-recipient state, attempts, leases; and the blob store. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStoreError } from '../errors.ts';
import { makeReply } from '../reply.ts';
import { newQueueEntry, newQueueId } from '../rules.ts';
import { contentId, type MailStore } from '../types.ts';
import { rejects, type StoreFactory, useStore } from './harness.ts';

async function enqueueOne(
  store: MailStore,
  recipients = ['a@x.org', 'b@y.org'],
  nextAttemptAt?: Date,
  lease?: { owner: string; until: Date },
) {
  const blobId = await store.blobs.put(Buffer.from('Subject: queued\r\n\r\nbody\r\n'));
  return store.enqueue({
    sender: 'sender@example.org',
    recipients: recipients.map((address) => ({ address, notify: ['FAILURE'] })),
    blobId,
    size: 25,
    meta: { envid: 'E1' },
    ...(nextAttemptAt ? { nextAttemptAt } : {}),
    ...(lease ? { lease } : {}),
  });
}

export function queueSuite(factory: StoreFactory): void {
  describe('queue', () => {
    const ctx = useStore(factory);

    it('quarantines an entry that cannot be read: never leased, listed as such, removable; the others go on', async () => {
      const bad = await enqueueOne(ctx.store);
      const good = await enqueueOne(ctx.store, ['c@z.org']);
      await ctx.damage.queueRecipients(bad.id);
      const listed = await ctx.store.listQueue();
      assert.equal(listed.length, 2);
      assert.match(listed.find((e) => e.id === bad.id)?.quarantined ?? '', /unreadable/);
      assert.equal(listed.find((e) => e.id === good.id)?.quarantined, undefined);
      const leased = await ctx.store.leaseQueue({ owner: 'w1', leaseMs: 60_000, limit: 10 });
      assert.deepEqual(
        leased.filter((e) => !e.quarantined).map((e) => e.id),
        [good.id],
      );
      assert.deepEqual(
        leased.filter((e) => e.quarantined).map((e) => e.id),
        [bad.id],
      );
      // Once set aside it is not offered again, even after the lease time.
      const later = await ctx.store.leaseQueue({
        owner: 'w2',
        leaseMs: 60_000,
        limit: 10,
        now: new Date(Date.now() + 3_600_000),
      });
      assert.deepEqual(
        later.map((e) => e.id),
        [good.id],
      );
      assert.match((await ctx.store.getQueueEntry(bad.id))?.quarantined ?? '', /unreadable/);
      await ctx.store.removeQueueEntry(bad.id);
      assert.equal(await ctx.store.getQueueEntry(bad.id), null);
    });

    it('remembers a key until its time, for every connection, and forgets it after', async () => {
      const other = await ctx.openAnother();
      const soon = new Date(Date.now() + 300);
      assert.equal(await ctx.store.remember('vacation:1:a@x.org', soon), true);
      assert.equal(await other.remember('vacation:1:a@x.org', new Date(Date.now() + 60_000)), false);
      assert.equal(await other.remember('vacation:1:b@x.org', new Date(Date.now() + 60_000)), true, 'by key');
      // Once its time has passed, the key is free again (and a second ask within the new time is not).
      const end = Date.now() + 5000;
      while (!(await other.remember('vacation:1:a@x.org', new Date(Date.now() + 60_000)))) {
        assert.ok(Date.now() < end, 'remembered past its time');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(await ctx.store.remember('vacation:1:a@x.org', new Date(Date.now() + 60_000)), false);
      assert.equal(await ctx.store.remember('short', new Date(Date.now() + 1)), true);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(await ctx.store.pruneRemembered(), 1, 'only the key whose time passed');
      assert.equal(await ctx.store.remember('vacation:1:b@x.org', new Date(Date.now() + 60_000)), false);
    });

    it('of many asking to remember one key at once, exactly one is first', async () => {
      const stores = [ctx.store, await ctx.openAnother(), await ctx.openAnother()];
      const until = new Date(Date.now() + 60_000);
      const got = await Promise.all(
        Array.from({ length: 12 }, (_, i) => stores[i % 3]!.remember('race', until)),
      );
      assert.equal(got.filter(Boolean).length, 1);
    });

    it('queues an entry with a once key one time only, and nothing when the key is remembered', async () => {
      const data = Buffer.from('Subject: auto\r\n\r\nreply\r\n');
      const entry = (key: string) => ({
        sender: '',
        recipients: [{ address: 'someone@x.org' }],
        blobId: contentId(data),
        data,
        size: data.length,
        once: { key, until: new Date(Date.now() + 60_000) },
      });
      const first = await ctx.store.enqueue(entry('redirect:K1'));
      await rejects(ctx.store.enqueue(entry('redirect:K1')), 'exists');
      assert.deepEqual(
        (await ctx.store.listQueue()).map((e) => e.id),
        [first.id],
      );
      assert.equal(await ctx.store.remember('redirect:K1', new Date(Date.now() + 60_000)), false);
      assert.equal(await ctx.store.remember('redirect:K2', new Date(Date.now() + 60_000)), true);
      await rejects(ctx.store.enqueue(entry('redirect:K2')), 'exists');
      assert.equal((await ctx.store.listQueue()).length, 1);
    });

    it('enqueues with per-recipient state and lists entries', async () => {
      const e = await enqueueOne(ctx.store);
      assert.equal(e.sender, 'sender@example.org');
      assert.deepEqual(
        e.recipients.map((r) => [r.address, r.state, r.attempts]),
        [
          ['a@x.org', 'pending', 0],
          ['b@y.org', 'pending', 0],
        ],
      );
      assert.deepEqual(e.recipients[0]!.notify, ['FAILURE']);
      assert.deepEqual(e.meta, { envid: 'E1' });
      assert.equal(e.leaseOwner, null);
      assert.equal((await ctx.store.listQueue()).length, 1);
      assert.equal((await ctx.store.getQueueEntry(e.id))?.blobId, e.blobId);
      await rejects(ctx.store.enqueue({ sender: '', recipients: [], blobId: e.blobId, size: 1 }), 'invalid');
    });

    it('queues an entry already leased: nobody else leases it until the lease ends, its owner records attempts', async () => {
      const now = new Date();
      const until = new Date(now.getTime() + 30_000);
      const entry = await enqueueOne(ctx.store, ['a@x.org'], undefined, { owner: 'mx1', until });
      assert.equal(entry.leaseOwner, 'mx1');
      assert.equal(entry.leaseUntil?.getTime(), until.getTime());
      assert.deepEqual(await ctx.store.leaseQueue({ owner: 'w2', leaseMs: 30_000, limit: 10, now }), []);
      await rejects(
        ctx.store.recordAttempt(entry.id, 'w2', {
          results: [{ address: 'a@x.org', state: 'delivered' }],
          nextAttemptAt: now,
        }),
        'lease_lost',
      );
      // After the lease, as any entry whose worker died.
      const later = new Date(until.getTime() + 1);
      assert.deepEqual(
        (await ctx.store.leaseQueue({ owner: 'w2', leaseMs: 30_000, limit: 10, now: later })).map(
          (e) => e.id,
        ),
        [entry.id],
      );
      await ctx.store.releaseLease(entry.id, 'w2');
      const done = await enqueueOne(ctx.store, ['b@x.org'], undefined, { owner: 'mx1', until });
      await ctx.store.recordAttempt(done.id, 'mx1', {
        results: [{ address: 'b@x.org', state: 'delivered' }],
        nextAttemptAt: now,
      });
      assert.equal(await ctx.store.getQueueEntry(done.id), null);
    });

    it('queues an entry under the id it is given, read back as newQueueEntry makes it', async () => {
      const id = newQueueId();
      const data = Buffer.from('Subject: given id\r\n\r\nbody\r\n');
      const input = {
        id,
        sender: 's@example.org',
        recipients: [{ address: 'a@x.org', notify: ['NEVER' as const] }, { address: 'b@x.org' }],
        blobId: contentId(data),
        data,
        size: data.length,
        meta: { envid: 'E2' },
      };
      const entry = await ctx.store.enqueue(input);
      assert.equal(entry.id, id);
      const { data: _, ...stored } = input;
      assert.deepEqual(await ctx.store.getQueueEntry(id), newQueueEntry(stored, id, entry.createdAt));
      // Ids made apart from each other differ, and sort by time.
      const ids = Array.from({ length: 50 }, (_, i) => newQueueId(1_700_000_000_000 + i));
      assert.equal(new Set(ids).size, 50);
      assert.deepEqual([...ids].sort(), ids);
    });
    it('leases only due, unheld, unleased entries, and records attempts per recipient', async () => {
      const now = new Date('2026-11-23T10:00:00Z');
      const due = await enqueueOne(ctx.store, ['a@x.org', 'b@y.org'], new Date(now.getTime() - 1000));
      await enqueueOne(ctx.store, ['later@x.org'], new Date(now.getTime() + 60_000));
      const held = await enqueueOne(ctx.store, ['held@x.org'], new Date(now.getTime() - 1000));
      await ctx.store.setQueueHeld(held.id, true);
      const leased = await ctx.store.leaseQueue({ owner: 'w1', leaseMs: 30_000, limit: 10, now });
      assert.deepEqual(
        leased.map((e) => e.id),
        [due.id],
      );
      assert.equal(leased[0]!.leaseOwner, 'w1');
      assert.deepEqual(await ctx.store.leaseQueue({ owner: 'w2', leaseMs: 30_000, limit: 10, now }), []);
      const next = new Date(now.getTime() + 300_000);
      const after = await ctx.store.recordAttempt(due.id, 'w1', {
        results: [
          { address: 'a@x.org', state: 'delivered', reply: makeReply(250, '2.0.0', 'ok') },
          { address: 'b@y.org', state: 'pending', reply: makeReply(451, '4.3.0', 'try later') },
        ],
        nextAttemptAt: next,
        meta: { delayNotified: true },
      });
      assert.equal(after.attempts, 1);
      assert.equal(after.meta.delayNotified, true);
      assert.equal(after.meta.envid, 'E1');
      assert.equal((await ctx.store.getQueueEntry(due.id))!.meta.delayNotified, true);
      assert.equal(after.leaseOwner, null);
      assert.equal(after.nextAttemptAt.getTime(), next.getTime());
      assert.deepEqual(
        after.recipients.map((r) => [r.state, r.attempts, r.lastReply]),
        [
          ['delivered', 1, { code: 250, enhanced: '2.0.0', text: 'ok' }],
          ['pending', 1, { code: 451, enhanced: '4.3.0', text: 'try later' }],
        ],
      );
      await rejects(
        ctx.store.recordAttempt(due.id, 'w1', { results: [], nextAttemptAt: next }),
        'lease_lost',
      );
      // Released entries become due again at nextAttemptAt; held ones after release.
      const later = new Date(next.getTime() + 1);
      await ctx.store.setQueueHeld(held.id, false);
      const again = await ctx.store.leaseQueue({ owner: 'w2', leaseMs: 1000, limit: 10, now: later });
      assert.equal(again.length, 3);
    });

    it('stores the body with the entry when given, and removes an entry with nothing left to do', async () => {
      const data = Buffer.from('Subject: inline\r\n\r\nbody\r\n');
      const e = await ctx.store.enqueue({
        sender: 's@example.org',
        recipients: [{ address: 'a@x.org' }],
        blobId: contentId(data),
        data,
        size: data.length,
      });
      assert.ok((await ctx.store.blobs.get(e.blobId)).equals(data));
      await rejects(
        ctx.store.enqueue({
          sender: '',
          recipients: [{ address: 'a@x.org' }],
          blobId: 'f'.repeat(64),
          data,
          size: 1,
        }),
        'invalid',
      );
      const [leased] = await ctx.store.leaseQueue({ owner: 'w', leaseMs: 1000, limit: 1 });
      const done = await ctx.store.recordAttempt(leased!.id, 'w', {
        results: [{ address: 'a@x.org', state: 'failed', reply: makeReply(550, '5.1.1', 'no') }],
        nextAttemptAt: new Date(),
      });
      assert.equal(done.recipients[0]!.state, 'failed');
      assert.equal(await ctx.store.getQueueEntry(e.id), null);
    });

    it('lets an expired lease be taken over, and the old owner then loses it', async () => {
      const now = new Date('2026-11-23T10:00:00Z');
      const e = await enqueueOne(ctx.store, ['a@x.org'], now);
      await ctx.store.leaseQueue({ owner: 'w1', leaseMs: 1000, limit: 1, now });
      const stolen = await ctx.store.leaseQueue({
        owner: 'w2',
        leaseMs: 1000,
        limit: 1,
        now: new Date(now.getTime() + 1001),
      });
      assert.equal(stolen[0]?.id, e.id);
      await rejects(
        ctx.store.recordAttempt(e.id, 'w1', {
          results: [{ address: 'a@x.org', state: 'delivered' }],
          nextAttemptAt: now,
        }),
        'lease_lost',
      );
      await ctx.store.releaseLease(e.id, 'w2');
      assert.equal((await ctx.store.getQueueEntry(e.id))?.leaseOwner, null);
    });

    it('holds, releases, retries and removes entries', async () => {
      const e = await enqueueOne(ctx.store, ['a@x.org'], new Date(Date.now() + 3_600_000));
      assert.equal((await ctx.store.setQueueHeld(e.id, true)).held, true);
      const retried = await ctx.store.retryQueueEntry(e.id);
      assert.ok(retried.nextAttemptAt.getTime() <= Date.now());
      assert.equal((await ctx.store.leaseQueue({ owner: 'w', leaseMs: 1000, limit: 5 })).length, 0);
      await ctx.store.setQueueHeld(e.id, false);
      assert.equal((await ctx.store.leaseQueue({ owner: 'w', leaseMs: 1000, limit: 5 })).length, 1);
      await ctx.store.removeQueueEntry(e.id);
      assert.equal(await ctx.store.getQueueEntry(e.id), null);
      await rejects(ctx.store.removeQueueEntry(e.id), 'not_found');
      await rejects(ctx.store.setQueueHeld(e.id, true), 'not_found');
    });

    it('never leases an entry twice to concurrent workers', async () => {
      const now = new Date();
      for (let i = 0; i < 30; i++) await enqueueOne(ctx.store, [`r${i}@x.org`], new Date(now.getTime() - 1));
      const other = await ctx.openAnother();
      const workers = [];
      for (let w = 0; w < 6; w++) {
        const s = w % 2 ? other : ctx.store;
        workers.push(
          (async () => {
            const got: string[] = [];
            for (let k = 0; k < 5; k++) {
              for (const e of await s.leaseQueue({ owner: `w${w}`, leaseMs: 60_000, limit: 2, now }))
                got.push(e.id);
            }
            return got;
          })(),
        );
      }
      const all = (await Promise.all(workers)).flat();
      assert.equal(all.length, 30);
      assert.equal(new Set(all).size, 30);
    });
  });

  describe('blobs', () => {
    const ctx = useStore(factory);

    it('stores bytes by content, exactly, once', async () => {
      const data = Buffer.from([0, 13, 10, 46, 13, 10, 255, 254]);
      const id = await ctx.store.blobs.put(data);
      assert.equal(await ctx.store.blobs.put(Buffer.from(data)), id);
      assert.ok((await ctx.store.blobs.get(id)).equals(data));
      assert.equal(await ctx.store.blobs.has(id), true);
      await ctx.store.blobs.delete(id);
      assert.equal(await ctx.store.blobs.has(id), false);
      await assert.rejects(ctx.store.blobs.get(id), (e: unknown) => isStoreError(e, 'not_found'));
    });
  });
}
