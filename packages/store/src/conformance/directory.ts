/** Domains, accounts, aliases and recipient resolution. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accountExpansion, expandRecipient, resolveRecipient } from '../resolve.ts';
import { DEFAULT_MAILBOXES } from '../types.ts';
import { rejects, type StoreFactory, useStore } from './harness.ts';

export function directorySuite(factory: StoreFactory): void {
  describe('domains', () => {
    const ctx = useStore(factory);

    it('adds, lists and gets domains in canonical form', async () => {
      await ctx.store.addDomain('Example.ORG');
      await ctx.store.addDomain('bücher.example');
      const names = (await ctx.store.listDomains()).map((d) => d.name).sort();
      assert.deepEqual(names, ['example.org', 'xn--bcher-kva.example']);
      assert.equal((await ctx.store.getDomain('EXAMPLE.org'))?.name, 'example.org');
      assert.equal(await ctx.store.getDomain('nope.example'), null);
    });

    it('refuses a duplicate and an invalid domain', async () => {
      await ctx.store.addDomain('example.org');
      await rejects(ctx.store.addDomain('EXAMPLE.org'), 'exists');
      await rejects(ctx.store.addDomain('bad_domain..org'), 'invalid');
      assert.equal((await ctx.store.listDomains()).length, 1);
    });

    it('refuses to remove a domain with accounts or aliases unless forced', async () => {
      await ctx.store.addDomain('example.org');
      const a = await ctx.store.createAccount({
        address: 'a@example.org',
        passwordHash: 'x',
        mailboxes: [{ name: 'INBOX' }],
      });
      await ctx.store.addAlias({ address: 'postmaster@example.org', targets: ['a@example.org'] });
      await rejects(ctx.store.removeDomain('example.org'), 'conflict');
      assert.ok(await ctx.store.getAccount(a.id));
      await ctx.store.removeDomain('example.org', { force: true });
      assert.equal(await ctx.store.getDomain('example.org'), null);
      assert.equal(await ctx.store.getAccount(a.id), null);
      assert.equal(await ctx.store.getAlias('postmaster@example.org'), null);
      assert.deepEqual(await ctx.store.listMailboxes(a.id), []);
      await rejects(ctx.store.removeDomain('example.org'), 'not_found');
    });
  });

  describe('accounts', () => {
    const ctx = useStore(factory);

    it('creates an account with its mailboxes in one step', async () => {
      await ctx.store.addDomain('example.org');
      const acc = await ctx.store.createAccount({
        address: 'Bob@Example.org',
        passwordHash: 'hash',
        displayName: 'Bob',
        quotaBytes: 1000,
        mailboxes: [...DEFAULT_MAILBOXES],
      });
      assert.equal(acc.address, 'bob@example.org');
      assert.equal(acc.domain, 'example.org');
      assert.equal(acc.quotaBytes, 1000);
      assert.equal(acc.usedBytes, 0);
      assert.equal(acc.disabled, false);
      const boxes = await ctx.store.listMailboxes(acc.id);
      assert.deepEqual(boxes.map((b) => b.name).sort(), [
        'Archive',
        'Drafts',
        'INBOX',
        'Junk',
        'Sent',
        'Trash',
      ]);
      assert.equal(boxes.find((b) => b.name === 'Junk')?.specialUse, '\\Junk');
      assert.ok(boxes.every((b) => b.subscribed && b.uidNext === 1 && b.uidValidity > 0));
      assert.equal((await ctx.store.getAccountByAddress('BOB@example.org'))?.id, acc.id);
    });

    it('refuses duplicates, unknown domains, alias clashes and bad addresses, writing nothing', async () => {
      await ctx.store.addDomain('example.org');
      await ctx.store.createAccount({ address: 'bob@example.org', passwordHash: 'x' });
      await rejects(ctx.store.createAccount({ address: 'BOB@example.org', passwordHash: 'x' }), 'exists');
      await rejects(ctx.store.createAccount({ address: 'bob@unknown.org', passwordHash: 'x' }), 'not_found');
      await ctx.store.addAlias({ address: 'sales@example.org', targets: ['bob@example.org'] });
      await rejects(ctx.store.createAccount({ address: 'sales@example.org', passwordHash: 'x' }), 'exists');
      await rejects(ctx.store.createAccount({ address: 'a b@example.org', passwordHash: 'x' }), 'invalid');
      await rejects(
        ctx.store.createAccount({
          address: 'new@example.org',
          passwordHash: 'x',
          mailboxes: [{ name: '../x' }],
        }),
        'invalid',
      );
      assert.equal(await ctx.store.getAccountByAddress('new@example.org'), null);
      assert.equal((await ctx.store.listAccounts()).length, 1);
    });

    it('updates and removes accounts, and lists them by domain', async () => {
      await ctx.store.addDomain('a.org');
      await ctx.store.addDomain('b.org');
      const x = await ctx.store.createAccount({
        address: 'x@a.org',
        passwordHash: 'h1',
        mailboxes: [{ name: 'INBOX' }],
      });
      await ctx.store.createAccount({ address: 'y@b.org', passwordHash: 'h1' });
      const up = await ctx.store.updateAccount(x.id, {
        passwordHash: 'h2',
        disabled: true,
        quotaBytes: 5,
        displayName: 'X',
      });
      assert.deepEqual([up.passwordHash, up.disabled, up.quotaBytes, up.displayName], ['h2', true, 5, 'X']);
      assert.equal((await ctx.store.updateAccount(x.id, { quotaBytes: null })).quotaBytes, null);
      assert.deepEqual(
        (await ctx.store.listAccounts({ domain: 'b.org' })).map((a) => a.address),
        ['y@b.org'],
      );
      await ctx.store.removeAccount(x.id);
      assert.equal(await ctx.store.getAccount(x.id), null);
      assert.deepEqual(await ctx.store.listMailboxes(x.id), []);
      await rejects(ctx.store.removeAccount(x.id), 'not_found');
      await rejects(ctx.store.updateAccount(x.id, { disabled: false }), 'not_found');
    });
  });

  describe('aliases and resolution', () => {
    const ctx = useStore(factory);

    const setup = async () => {
      const s = ctx.store;
      await s.addDomain('example.org');
      const bob = await s.createAccount({ address: 'bob@example.org', passwordHash: 'x' });
      const ann = await s.createAccount({ address: 'ann@example.org', passwordHash: 'x' });
      return { s, bob, ann };
    };

    it('adds, lists and removes aliases, including a catch-all', async () => {
      const { s } = await setup();
      await s.addAlias({
        address: 'Team@example.org',
        targets: ['bob@example.org', 'Ann@Example.org', 'x@ext.net'],
      });
      await s.addAlias({ address: '@example.org', targets: ['bob@example.org'] });
      const team = await s.getAlias('team@example.org');
      assert.deepEqual(team?.targets, ['bob@example.org', 'ann@example.org', 'x@ext.net']);
      assert.deepEqual((await s.listAliases({ domain: 'example.org' })).map((a) => a.address).sort(), [
        '@example.org',
        'team@example.org',
      ]);
      await rejects(s.addAlias({ address: 'team@example.org', targets: ['bob@example.org'] }), 'exists');
      await rejects(s.addAlias({ address: 'bob@example.org', targets: ['ann@example.org'] }), 'exists');
      await rejects(s.addAlias({ address: 'x@nowhere.org', targets: ['bob@example.org'] }), 'not_found');
      await rejects(s.addAlias({ address: 'y@example.org', targets: [] }), 'invalid');
      await rejects(s.addAlias({ address: 'y@example.org', targets: ['not an address'] }), 'invalid');
      await s.removeAlias('team@example.org');
      assert.equal(await s.getAlias('team@example.org'), null);
      await rejects(s.removeAlias('team@example.org'), 'not_found');
    });

    it('resolves exact, plus-addressed and catch-all recipients', async () => {
      const { s, bob } = await setup();
      await s.addAlias({ address: 'sales@example.org', targets: ['bob@example.org'] });
      const exact = await resolveRecipient(s, 'BOB@example.org');
      assert.equal(exact?.kind === 'account' && exact.account.id, bob.id);
      const plus = await resolveRecipient(s, 'bob+Lists@example.org');
      assert.ok(plus?.kind === 'account' && plus.tag === 'lists');
      const aliasPlus = await resolveRecipient(s, 'sales+q4@example.org');
      assert.ok(aliasPlus?.kind === 'alias' && aliasPlus.alias.address === 'sales@example.org');
      assert.equal(await resolveRecipient(s, 'nobody@example.org'), null);
      await s.addAlias({ address: '@example.org', targets: ['bob@example.org'] });
      const caught = await resolveRecipient(s, 'nobody@example.org');
      assert.ok(caught?.kind === 'alias' && caught.alias.address === '@example.org');
    });

    it('expands aliases to accounts and external addresses, and stops loops', async () => {
      const { s, bob, ann } = await setup();
      await s.addAlias({
        address: 'all@example.org',
        targets: ['team@example.org', 'ann@example.org', 'Out@Ext.net'],
      });
      await s.addAlias({ address: 'team@example.org', targets: ['bob@example.org', 'ann@example.org'] });
      const local = async (d: string) => (await s.getDomain(d)) !== null;
      const exp = await expandRecipient(s, 'all@example.org', local);
      assert.deepEqual(
        exp.accounts.map((a) => a.account.id),
        [bob.id, ann.id],
      );
      assert.deepEqual(exp.external, ['out@ext.net']);
      await s.addAlias({ address: 'a@example.org', targets: ['b@example.org'] });
      await s.addAlias({ address: 'b@example.org', targets: ['a@example.org'] });
      await rejects(expandRecipient(s, 'a@example.org', local), 'conflict');
      await rejects(expandRecipient(s, 'ghost@example.org', local), 'not_found');
    });

    it("expands an account's own address without its domain, as expandRecipient does, and nothing else", async () => {
      const { s, bob } = await setup();
      await s.addAlias({ address: 'sales@example.org', targets: ['bob@example.org'] });
      await s.addAlias({ address: '@example.org', targets: ['bob@example.org'] });
      const local = async (d: string) => (await s.getDomain(d)) !== null;
      const own = await accountExpansion(s, 'bob@example.org');
      assert.deepEqual(own, await expandRecipient(s, 'bob@example.org', local));
      assert.equal(own?.accounts[0]?.account.id, bob.id);
      // Not an account's own address: a +tag, an alias, one the catch-all takes, another domain's.
      for (const a of ['bob+x@example.org', 'sales@example.org', 'nobody@example.org', 'bob@other.org'])
        assert.equal(await accountExpansion(s, a), null, a);
      // What lets callers skip the domain: no account outlives its domain.
      await s.removeDomain('example.org', { force: true });
      assert.equal(await accountExpansion(s, 'bob@example.org'), null);
    });

    it('keeps one random secret per name, the same for every process on the store', async () => {
      const a = await ctx.store.secret('delivery-key');
      assert.equal(a.length, 32);
      assert.deepEqual(await ctx.store.secret('delivery-key'), a);
      const other = await ctx.openAnother();
      assert.deepEqual(await other.secret('delivery-key'), a);
      const b = await other.secret('something-else');
      assert.equal(b.length, 32);
      assert.notDeepEqual(b, a);
      // Two first calls at once agree.
      const [x, y] = await Promise.all([ctx.store.secret('raced'), other.secret('raced')]);
      assert.deepEqual(x, y);
    });
  });
}
