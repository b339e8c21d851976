/** Sieve scripts per account, with one active script (RFC 5804 semantics). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStoreError } from '../errors.ts';
import { newAccount, type StoreFactory, useStore } from './harness.ts';

export function sieveSuite(factory: StoreFactory): void {
  describe('sieve scripts', () => {
    const ctx = useStore(factory);

    it('stores scripts, keeps one active, and refuses to delete the active one', async () => {
      const { account } = await newAccount(ctx.store);
      const { account: other } = await newAccount(ctx.store, 'ann@example.org');
      await ctx.store.putSieveScript(account.id, 'main', 'keep;');
      await ctx.store.putSieveScript(account.id, 'vacation', 'require "vacation";');
      await ctx.store.putSieveScript(account.id, 'main', 'discard;');
      assert.equal((await ctx.store.getSieveScript(account.id, 'main'))?.content, 'discard;');
      assert.deepEqual((await ctx.store.listSieveScripts(account.id)).map((s) => s.name).sort(), [
        'main',
        'vacation',
      ]);
      assert.equal(await ctx.store.getActiveSieveScript(account.id), null);
      await ctx.store.setActiveSieveScript(account.id, 'main');
      await ctx.store.setActiveSieveScript(account.id, 'vacation');
      assert.equal((await ctx.store.getActiveSieveScript(account.id))?.name, 'vacation');
      assert.equal((await ctx.store.listSieveScripts(account.id)).filter((s) => s.active).length, 1);
      await assert.rejects(ctx.store.deleteSieveScript(account.id, 'vacation'), (e: unknown) =>
        isStoreError(e, 'conflict'),
      );
      await assert.rejects(ctx.store.setActiveSieveScript(account.id, 'nope'), (e: unknown) =>
        isStoreError(e, 'not_found'),
      );
      await ctx.store.deleteSieveScript(account.id, 'main');
      await ctx.store.setActiveSieveScript(account.id, null);
      assert.equal(await ctx.store.getActiveSieveScript(account.id), null);
      assert.deepEqual(await ctx.store.listSieveScripts(other.id), []);
    });
  });
}
