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

    it('keeps remote accounts per user: added, listed, updated, removed, and gone with their user', async () => {
      const { account } = await newAccount(ctx.store);
      const { account: other } = await newAccount(ctx.store, 'ann@example.org');
      const base = {
        protocol: 'imap' as const,
        host: 'imap.old.example',
        port: 993,
        tls: 'tls' as const,
        insecure: false,
        user: 'bob',
        secret: 'ciphertext',
        folders: ['INBOX'],
        keep: true,
        everySeconds: 300,
        into: null,
      };
      const a = await ctx.store.addRemoteAccount({ accountId: account.id, ...base });
      const b = await ctx.store.addRemoteAccount({
        accountId: other.id,
        ...base,
        protocol: 'pop3',
        port: 995,
      });
      assert.equal(a.errors, 0);
      assert.equal(a.stopped, false);
      assert.deepEqual(a.fetched, {});
      assert.ok(a.createdAt instanceof Date);
      const another = await ctx.openAnother();
      assert.deepEqual(
        (await another.listRemoteAccounts()).map((r) => r.id),
        [a.id, b.id],
      );
      assert.deepEqual(
        (await another.listRemoteAccounts(other.id)).map((r) => r.protocol),
        ['pop3'],
      );
      const when = new Date('2026-12-01T10:00:00Z');
      const u = await another.updateRemoteAccount(a.id, {
        fetched: { imap: { INBOX: { uidValidity: 7, uid: 42 } } },
        lastFetchAt: when,
        errors: 2,
        lastError: 'timeout',
        lastErrorAt: when,
      });
      assert.deepEqual(u.fetched, { imap: { INBOX: { uidValidity: 7, uid: 42 } } });
      const got = (await ctx.store.getRemoteAccount(a.id))!;
      assert.equal(got.lastFetchAt?.getTime(), when.getTime());
      assert.equal(got.lastErrorAt?.getTime(), when.getTime());
      assert.equal(got.errors, 2);
      assert.equal(got.host, 'imap.old.example');
      await assert.rejects(ctx.store.addRemoteAccount({ ...base, accountId: '999999' }), (e) =>
        isStoreError(e, 'not_found'),
      );
      await ctx.store.removeRemoteAccount(a.id);
      await assert.rejects(ctx.store.removeRemoteAccount(a.id), (e) => isStoreError(e, 'not_found'));
      await assert.rejects(ctx.store.updateRemoteAccount(a.id, { errors: 1 }), (e) =>
        isStoreError(e, 'not_found'),
      );
      await ctx.store.removeAccount(other.id);
      assert.deepEqual(await ctx.store.listRemoteAccounts(), []);
    });
  });
}
