/** TLS material kept for every process (the ACME certificate, challenge answers) and named locks. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type StoreFactory, useStore } from './harness.ts';

export function tlsSuite(factory: StoreFactory): void {
  describe('TLS items and named locks', () => {
    const ctx = useStore(factory);

    it('keeps a TLS item by name, replaces it whole, and deletes it; another connection sees the same', async () => {
      assert.equal(await ctx.store.getTlsItem('acme'), null);
      const notAfter = new Date('2027-03-01T00:00:00Z');
      const first = await ctx.store.putTlsItem({ name: 'acme', cert: 'CERT-1', key: 'KEY-1', notAfter });
      assert.ok(first.updatedAt instanceof Date);
      const other = await ctx.openAnother();
      const seen = await other.getTlsItem('acme');
      assert.deepEqual(
        { ...seen, updatedAt: undefined },
        { name: 'acme', cert: 'CERT-1', key: 'KEY-1', notAfter, updatedAt: undefined },
      );
      await ctx.store.putTlsItem({ name: 'acme', cert: 'CERT-2', key: '', notAfter: null });
      assert.deepEqual(
        { ...(await other.getTlsItem('acme')), updatedAt: undefined },
        { name: 'acme', cert: 'CERT-2', key: '', notAfter: null, updatedAt: undefined },
      );
      await ctx.store.putTlsItem({ name: 'http-01:tok', cert: 'tok.thumb', key: '', notAfter: null });
      await ctx.store.deleteTlsItem('acme');
      assert.equal(await other.getTlsItem('acme'), null);
      assert.equal((await other.getTlsItem('http-01:tok'))?.cert, 'tok.thumb');
      await ctx.store.deleteTlsItem('never-there');
    });

    it('gives a lock to one owner at a time, lets its owner extend it, and frees it on release or expiry', async () => {
      const other = await ctx.openAnother();
      assert.equal(await ctx.store.acquireLock('acme-order', 'a', 60_000), true);
      assert.equal(await other.acquireLock('acme-order', 'b', 60_000), false, 'held by a');
      assert.equal(await ctx.store.acquireLock('acme-order', 'a', 60_000), true, 'its owner extends it');
      await other.releaseLock('acme-order', 'b');
      assert.equal(await other.acquireLock('acme-order', 'b', 60_000), false, 'only the owner releases');
      await ctx.store.releaseLock('acme-order', 'a');
      assert.equal(await other.acquireLock('acme-order', 'b', 1), true, 'free after release');
      // b's lock lasted 1 ms: once it has passed, anyone may take it.
      const end = Date.now() + 3000;
      while (!(await ctx.store.acquireLock('acme-order', 'a', 60_000))) {
        assert.ok(Date.now() < end, 'an expired lock is taken over');
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(await other.acquireLock('acme-order', 'b', 60_000), false);
      assert.equal(await other.acquireLock('another', 'b', 60_000), true, 'locks are by name');
    });

    it('of many owners asking for a free lock at once, exactly one gets it', async () => {
      const stores = [ctx.store, await ctx.openAnother(), await ctx.openAnother()];
      const asks = Array.from({ length: 12 }, (_, i) => stores[i % 3]!.acquireLock('race', `o${i}`, 60_000));
      const got = await Promise.all(asks);
      assert.equal(got.filter(Boolean).length, 1);
    });
  });
}
