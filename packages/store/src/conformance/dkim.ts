/** DKIM keys per domain: one active per algorithm, rotation keeps the old one published. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rejects, type StoreFactory, useStore } from './harness.ts';

const key = (
  domain: string,
  selector: string,
  algorithm: 'rsa-sha256' | 'ed25519-sha256' = 'rsa-sha256',
) => ({
  domain,
  selector,
  algorithm,
  privateKey: `-----BEGIN PRIVATE KEY-----\n${selector}\n-----END PRIVATE KEY-----\n`,
  publicKey: `cHVi${selector}`,
});

export function dkimSuite(factory: StoreFactory): void {
  describe('DKIM keys', () => {
    const ctx = useStore(factory);

    it('keeps one active key per domain and algorithm; a new one leaves the old one published', async () => {
      await ctx.store.addDomain('example.org');
      await ctx.store.addDomain('example.net');
      const first = await ctx.store.addDkimKey(key('example.org', 's1'));
      assert.equal(first.state, 'active');
      assert.ok(first.createdAt instanceof Date);
      await ctx.store.addDkimKey(key('example.org', 's1e', 'ed25519-sha256'));
      await ctx.store.addDkimKey(key('example.net', 'n1'));
      await ctx.store.addDkimKey(key('example.org', 's2'));
      const keys = await ctx.store.listDkimKeys('example.org');
      assert.deepEqual(
        keys.map((k) => [k.selector, k.algorithm, k.state]),
        [
          ['s1', 'rsa-sha256', 'published'],
          ['s1e', 'ed25519-sha256', 'active'],
          ['s2', 'rsa-sha256', 'active'],
        ],
      );
      assert.equal(keys[2]!.privateKey, key('example.org', 's2').privateKey);
      assert.equal(keys[2]!.publicKey, 'cHVis2');
      assert.equal((await ctx.store.listDkimKeys()).length, 4);
      assert.deepEqual(
        (await ctx.store.listDkimKeys('EXAMPLE.NET')).map((k) => k.selector),
        ['n1'],
      );
    });

    it('refuses unknown domains, duplicate and invalid selectors, and removing the active key unless forced', async () => {
      await ctx.store.addDomain('example.org');
      await rejects(ctx.store.addDkimKey(key('nowhere.example', 's1')), 'not_found');
      await ctx.store.addDkimKey(key('example.org', 's1'));
      await rejects(ctx.store.addDkimKey(key('example.org', 's1')), 'exists');
      await rejects(ctx.store.addDkimKey(key('example.org', 'bad selector')), 'invalid');
      await ctx.store.addDkimKey(key('example.org', 's2'));
      await rejects(ctx.store.removeDkimKey('example.org', 's2'), 'conflict');
      await ctx.store.removeDkimKey('example.org', 's1');
      await rejects(ctx.store.removeDkimKey('example.org', 's1'), 'not_found');
      await ctx.store.removeDkimKey('example.org', 's2', { force: true });
      assert.deepEqual(await ctx.store.listDkimKeys('example.org'), []);
    });

    it("forgets a removed domain's keys, but not their selectors", async () => {
      await ctx.store.addDomain('example.org');
      await ctx.store.addDkimKey(key('example.org', 's1'));
      await ctx.store.removeDomain('example.org', { force: true });
      assert.deepEqual(await ctx.store.listDkimKeys(), []);
      await ctx.store.addDomain('example.org');
      assert.deepEqual(await ctx.store.retiredDkimSelectors('example.org'), ['s1']);
      await rejects(ctx.store.addDkimKey(key('example.org', 's1')), 'exists');
    });

    it('never takes a removed selector again, for that domain only', async () => {
      await ctx.store.addDomain('example.org');
      await ctx.store.addDomain('example.net');
      await ctx.store.addDkimKey(key('example.org', 's1'));
      await ctx.store.addDkimKey(key('example.org', 's2'));
      assert.deepEqual(await ctx.store.retiredDkimSelectors('example.org'), []);
      await ctx.store.removeDkimKey('example.org', 's1');
      assert.deepEqual(await ctx.store.retiredDkimSelectors('EXAMPLE.org'), ['s1']);
      await rejects(ctx.store.addDkimKey(key('example.org', 's1')), 'exists');
      await ctx.store.addDkimKey(key('example.net', 's1'));
      assert.deepEqual(await ctx.store.retiredDkimSelectors('example.net'), []);
    });
  });
}
