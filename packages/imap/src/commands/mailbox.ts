/**
 * CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.3–§6.3.7).
 * Thin: each checks the names and calls the store, which enforces the rules
 * (mailbox-name.ts) and keeps accounts apart.
 */
import { isSameOrChild } from '@mailwerk/store';
import { no } from '../errors.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { creatableName, mailbox, readMailbox, user } from './util.ts';

export const CREATE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const name = creatableName(s, c.astring());
    c.end();
    const accountId = user(s).id;
    if (await s.ctx.store.getMailbox(accountId, name)) throw no('ALREADYEXISTS', 'Mailbox exists already');
    const mb = await s.ctx.store.createMailbox(accountId, name, { subscribed: true });
    s.ctx.publish({ type: 'mailbox.change', accountId, mailboxId: mb.id });
    return 'CREATE completed';
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
      const dest = await store.createMailbox(accountId, target, { subscribed: true });
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

function subscription(on: boolean): Command {
  return {
    states: AUTHENTICATED,
    async run(s, c) {
      const mb = await mailbox(s, readMailbox(s, c));
      c.end();
      await s.ctx.store.setSubscribed(mb.id, on);
      return `${on ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} completed`;
    },
  };
}

export const SUBSCRIBE = subscription(true);
export const UNSUBSCRIBE = subscription(false);
