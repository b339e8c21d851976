/** Mailbox hierarchy, names, subscriptions and UIDVALIDITY. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deliver, newAccount, rejects, type StoreFactory, sampleMessage, useStore } from './harness.ts';

export function mailboxSuite(factory: StoreFactory): void {
  describe('mailboxes', () => {
    const ctx = useStore(factory);

    it('creates missing parents and refuses duplicates', async () => {
      const { account } = await newAccount(ctx.store);
      const box = await ctx.store.createMailbox(account.id, 'Work/Projects/2026', { subscribed: true });
      assert.equal(box.name, 'Work/Projects/2026');
      assert.equal(box.subscribed, true);
      const names = (await ctx.store.listMailboxes(account.id)).map((b) => b.name).sort();
      assert.deepEqual(names, ['INBOX', 'Trash', 'Work', 'Work/Projects', 'Work/Projects/2026']);
      await rejects(ctx.store.createMailbox(account.id, 'Work'), 'exists');
      await rejects(ctx.store.createMailbox(account.id, 'inbox'), 'exists');
      const child = await ctx.store.createMailbox(account.id, 'inbox/Child');
      assert.equal(child.name, 'INBOX/Child');
    });

    it('refuses names that could escape or confuse the hierarchy', async () => {
      const { account } = await newAccount(ctx.store);
      for (const bad of [
        '',
        '..',
        'a/../b',
        'a//b',
        '/a',
        'a/',
        './x',
        'a\u0000b',
        'tab\there',
        'star*',
        'pct%',
      ]) {
        await rejects(ctx.store.createMailbox(account.id, bad), 'invalid');
      }
      await rejects(ctx.store.createMailbox(account.id, 'Cafe\u0301'), 'invalid');
      assert.deepEqual((await ctx.store.listMailboxes(account.id)).map((b) => b.name).sort(), [
        'INBOX',
        'Trash',
      ]);
    });

    it('keeps a subscription to a name whose mailbox is deleted, and gives it to a mailbox made under that name (RFC 3501 §6.3.6)', async () => {
      const { account } = await newAccount(ctx.store);
      const kept = () => ctx.store.listKeptSubscriptions(account.id);
      await ctx.store.createMailbox(account.id, 'Lists', { subscribed: true });
      await ctx.store.createMailbox(account.id, 'Plain');
      await ctx.store.deleteMailbox(account.id, 'Lists');
      await ctx.store.deleteMailbox(account.id, 'Plain');
      assert.deepEqual(await kept(), ['Lists']);
      // Made again: subscribed, and no longer a name without a mailbox.
      assert.equal((await ctx.store.createMailbox(account.id, 'Lists')).subscribed, true);
      assert.equal((await ctx.store.createMailbox(account.id, 'Plain')).subscribed, false);
      assert.deepEqual(await kept(), []);
      // A name without a mailbox can be subscribed to and unsubscribed from; a mailbox's name as well.
      assert.equal(await ctx.store.subscribeName(account.id, 'Later/On', true), true);
      assert.equal(await ctx.store.subscribeName(account.id, 'Plain', true), true);
      assert.equal((await ctx.store.getMailbox(account.id, 'Plain'))!.subscribed, true);
      assert.deepEqual(await kept(), ['Later/On']);
      assert.equal(await ctx.store.subscribeName(account.id, 'Nothing', false), false);
      // A mailbox renamed onto a subscribed name takes the subscription.
      await ctx.store.createMailbox(account.id, 'Old');
      await ctx.store.renameMailbox(account.id, 'Old', 'Later/On');
      assert.equal((await ctx.store.getMailbox(account.id, 'Later/On'))!.subscribed, true);
      assert.deepEqual(await kept(), []);
      assert.equal(await ctx.store.subscribeName(account.id, 'Later/On', false), true);
      assert.equal((await ctx.store.getMailbox(account.id, 'Later/On'))!.subscribed, false);
      assert.equal(await ctx.store.subscribeName(account.id, 'inbox', true), true);
      assert.equal((await ctx.store.getMailbox(account.id, 'INBOX'))!.subscribed, true);
    });

    it('keeps users apart: one account cannot reach another account mailbox by name', async () => {
      const { account: bob } = await newAccount(ctx.store, 'bob@example.org');
      const { account: ann } = await newAccount(ctx.store, 'ann@example.org');
      await ctx.store.createMailbox(ann.id, 'Private');
      assert.equal(await ctx.store.getMailbox(bob.id, 'Private'), null);
      await rejects(ctx.store.renameMailbox(bob.id, 'Private', 'Mine'), 'not_found');
      await rejects(ctx.store.deleteMailbox(bob.id, 'Private'), 'not_found');
    });

    it('renames a mailbox with its children, keeping their messages', async () => {
      const { account } = await newAccount(ctx.store);
      const a = await ctx.store.createMailbox(account.id, 'A/B/C');
      await ctx.store.createMailbox(account.id, 'AB');
      await deliver(ctx.store, account, a.id, sampleMessage('kept'));
      const renamed = await ctx.store.renameMailbox(account.id, 'A', 'X/Y');
      assert.equal(renamed.name, 'X/Y');
      const names = (await ctx.store.listMailboxes(account.id)).map((b) => b.name).sort();
      assert.deepEqual(names, ['AB', 'INBOX', 'Trash', 'X', 'X/Y', 'X/Y/B', 'X/Y/B/C']);
      const moved = (await ctx.store.getMailbox(account.id, 'X/Y/B/C'))!;
      assert.equal(moved.id, a.id);
      assert.equal((await ctx.store.listMessages(moved.id)).length, 1);
      await rejects(ctx.store.renameMailbox(account.id, 'AB', 'X/Y'), 'exists');
      await rejects(ctx.store.renameMailbox(account.id, 'X', 'X/Y/Z'), 'invalid');
      await rejects(ctx.store.renameMailbox(account.id, 'INBOX', 'Old'), 'invalid');
      await rejects(ctx.store.renameMailbox(account.id, 'Missing', 'M2'), 'not_found');
    });

    it('deletes a mailbox with its messages, freeing quota, and gives a new UIDVALIDITY on re-creation', async () => {
      const { account } = await newAccount(ctx.store);
      const box = await ctx.store.createMailbox(account.id, 'Old');
      await deliver(ctx.store, account, box.id, sampleMessage('one'));
      assert.ok((await ctx.store.getAccount(account.id))!.usedBytes > 0);
      await ctx.store.deleteMailbox(account.id, 'Old');
      assert.equal(await ctx.store.getMailbox(account.id, 'Old'), null);
      assert.equal((await ctx.store.getAccount(account.id))!.usedBytes, 0);
      const again = await ctx.store.createMailbox(account.id, 'Old');
      assert.ok(again.uidValidity > box.uidValidity, `${again.uidValidity} > ${box.uidValidity}`);
      assert.equal(again.uidNext, 1);
      await rejects(ctx.store.deleteMailbox(account.id, 'INBOX'), 'invalid');
    });

    it('subscribes and unsubscribes', async () => {
      const { account } = await newAccount(ctx.store);
      const box = await ctx.store.createMailbox(account.id, 'News');
      assert.equal(box.subscribed, false);
      await ctx.store.setSubscribed(box.id, true);
      assert.equal((await ctx.store.getMailboxById(box.id))?.subscribed, true);
      await ctx.store.setSubscribed(box.id, false);
      assert.equal((await ctx.store.getMailboxById(box.id))?.subscribed, false);
    });
  });
}
