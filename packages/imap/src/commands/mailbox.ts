/**
 * CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.3–§6.3.7),
 * CREATE with a special use (RFC 6154 §3).
 * Thin: each checks the names and calls the store, which enforces the rules
 * (mailbox-name.ts) and keeps accounts apart.
 */
import { isSameOrChild, SPECIAL_USES, type SpecialUse } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import { mailboxId } from '../objectid.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { creatableName, mailbox, readMailbox, user } from './util.ts';

/**
 * CREATE's `(USE (…))` (CREATE-SPECIAL-USE, RFC 6154 §3): the one special use the new mailbox is for.
 * A mailbox here has one; more than one, or one that is not a special use, is NO [USE] (§5.3).
 */
function readUse(c: Cursor): SpecialUse | null {
  if (c.atEnd()) return null;
  c.space();
  let use: string[] = [];
  c.list(() => {
    if (c.word() !== 'USE') throw bad('Unknown CREATE parameter');
    c.space();
    use = c.flags();
  });
  const known = SPECIAL_USES.find((u) => u.toLowerCase() === use[0]?.toLowerCase());
  if (use.length !== 1 || !known)
    throw no('USE', 'One special use of \\Sent, \\Drafts, \\Junk, \\Trash, \\Archive, \\All or \\Flagged');
  return known;
}

export const CREATE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const name = creatableName(s, c.astring());
    const use = readUse(c);
    c.end();
    const accountId = user(s).id;
    if (await s.ctx.store.getMailbox(accountId, name)) throw no('ALREADYEXISTS', 'Mailbox exists already');
    // RFC 3501 §6.3.3: not subscribed (clients subscribe what they create themselves), unless the name was.
    const mb = await s.ctx.store.createMailbox(accountId, name, use ? { specialUse: use } : {});
    s.ctx.publish({ type: 'mailbox.change', accountId, mailboxId: mb.id });
    // RFC 8474 §4.1.
    return `[MAILBOXID (${mailboxId(mb)})] CREATE completed`;
  },
};

export const DELETE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const mb = await mailbox(s, readMailbox(s, c));
    c.end();
    if (mb.name === 'INBOX') throw no('CANNOT', 'INBOX cannot be deleted');
    const accountId = user(s).id;
    await s.ctx.store.deleteMailbox(accountId, mb.name);
    // Deleting the selected mailbox leaves the session without one.
    if (s.state.kind === 'selected' && s.state.mailbox.mailbox.id === mb.id)
      s.state = { kind: 'authenticated', user: s.state.user };
    s.ctx.publish({ type: 'mailbox.change', accountId, mailboxId: mb.id });
    return 'DELETE completed';
  },
};

export const RENAME: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const source = await mailbox(s, readMailbox(s, c));
    c.space();
    const target = creatableName(s, c.astring());
    c.end();
    const store = s.ctx.store;
    const accountId = user(s).id;
    if (target === 'INBOX') throw no('CANNOT', 'Cannot rename to INBOX');
    if (await store.getMailbox(accountId, target)) throw no('ALREADYEXISTS', 'A mailbox of that name exists');
    if (isSameOrChild(target, source.name)) throw no('CANNOT', 'Cannot rename a mailbox into itself');
    if (source.name === 'INBOX') {
      // RFC 3501 §6.3.5: renaming INBOX moves its messages to the new name and leaves INBOX, empty.
      const dest = await store.createMailbox(accountId, target);
      const uids = await store.listUids(source.id);
      if (uids.length) await store.moveMessages(source.id, uids, dest.id);
      s.ctx.publish({ type: 'mailbox.change', accountId, mailboxId: dest.id });
      if (uids.length)
        s.ctx.publish({ type: 'message.expunge', accountId, mailboxId: source.id, uids, modseq: 0 });
      return 'RENAME completed: the messages of INBOX moved, INBOX is empty';
    }
    await store.renameMailbox(accountId, source.name, target);
    s.ctx.publish({ type: 'mailbox.change', accountId, mailboxId: source.id });
    return 'RENAME completed';
  },
};

/**
 * SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7): a subscription is to a name, which need not be a
 * mailbox (yet, or any more: DELETE keeps it). UNSUBSCRIBE of a name not subscribed is NO.
 */
function subscription(on: boolean): Command {
  return {
    states: AUTHENTICATED,
    async run(s, c) {
      const name = readMailbox(s, c);
      c.end();
      if (name === null) throw no('CANNOT', 'Invalid mailbox name');
      const accountId = user(s).id;
      if (!(await s.ctx.store.subscribeName(accountId, name, on)))
        throw no('NONEXISTENT', 'That name is not subscribed');
      // NOTIFY's SubscriptionChange (RFC 5465 §5.5) in other sessions.
      const mb = await s.ctx.store.getMailbox(accountId, name);
      if (mb) s.ctx.publish({ type: 'mailbox.change', accountId, mailboxId: mb.id });
      return `${on ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} completed`;
    },
  };
}

export const SUBSCRIBE = subscription(true);
export const UNSUBSCRIBE = subscription(false);
