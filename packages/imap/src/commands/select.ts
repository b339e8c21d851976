/**
 * SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2; CONDSTORE, RFC 7162 §3.1.8),
 * CLOSE (§6.4.2), UNSELECT (RFC 3691) and CHECK (§6.4.1).
 */
import { hasFlag } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import { Selected } from '../selected.ts';
import type { Session } from '../session.ts';
import { AUTHENTICATED, type Command, SELECTED } from './types.ts';
import { mailbox, readMailbox, selected, user } from './util.ts';

function open(readOnly: boolean): Command {
  return {
    states: AUTHENTICATED,
    async run(s, c) {
      const name = readMailbox(s, c);
      if (c.take(' ')) {
        c.list(() => {
          const p = c.word();
          if (p !== 'CONDSTORE') throw bad(`Unknown SELECT parameter ${p.slice(0, 32)}`);
          s.condstore = true;
        });
      }
      c.end();
      const account = user(s);
      // RFC 3501 §6.3.1: a SELECT, even a failing one, first leaves the mailbox selected before.
      s.state = { kind: 'authenticated', user: account };
      const mb = await mailbox(s, name);
      const { selected: sel, firstUnseen } = await Selected.open(s.ctx.store, mb, readOnly, s.ctx.metaCache);
      sel.announceFlags(s);
      s.untagged(`${sel.exists} EXISTS`);
      s.untagged(`${sel.recentCount} RECENT`);
      if (firstUnseen !== null) {
        const seq = sel.uids.seqOf(firstUnseen);
        if (seq) s.untagged(`OK [UNSEEN ${seq}] First unseen`);
      }
      s.untagged(`OK [UIDVALIDITY ${sel.mailbox.uidValidity}] UIDs valid`);
      s.untagged(`OK [UIDNEXT ${sel.mailbox.uidNext}] Predicted next UID`);
      // RFC 7162 §3.1.2.1: a CONDSTORE server sends HIGHESTMODSEQ on every SELECT and EXAMINE.
      s.untagged(`OK [HIGHESTMODSEQ ${sel.mailbox.highestModseq}] Highest`);
      s.state = { kind: 'selected', user: account, mailbox: sel };
      return `[${readOnly ? 'READ-ONLY' : 'READ-WRITE'}] ${readOnly ? 'EXAMINE' : 'SELECT'} completed`;
    },
  };
}

export const SELECT = open(false);
export const EXAMINE = open(true);

/** Removes the messages marked \Deleted among `uids` (all when null); returns the UIDs removed. */
export async function expungeDeleted(s: Session, sel: Selected, uids: number[] | null): Promise<number[]> {
  const store = s.ctx.store;
  const list = await s.ctx.metaCache.list(sel.mailbox.id);
  const wanted = uids ? new Set(uids) : null;
  const doomed = list
    .filter((m) => hasFlag(m.flags, '\\Deleted') && (!wanted || wanted.has(m.uid)))
    .map((m) => m.uid);
  if (doomed.length === 0) return [];
  const removed = await store.expungeMessages(sel.mailbox.id, doomed);
  if (removed.length)
    s.ctx.publish({
      type: 'message.expunge',
      accountId: sel.mailbox.accountId,
      mailboxId: sel.mailbox.id,
      uids: removed,
      modseq: 0,
    });
  return removed;
}

export const CLOSE: Command = {
  states: SELECTED,
  async run(s, c) {
    c.end();
    const sel = selected(s);
    // RFC 3501 §6.4.2: messages marked \Deleted are removed silently (not in a read-only mailbox).
    if (!sel.readOnly) await expungeDeleted(s, sel, null);
    s.state = { kind: 'authenticated', user: user(s) };
    return 'CLOSE completed';
  },
};

export const UNSELECT: Command = {
  states: SELECTED,
  async run(s, c) {
    c.end();
    s.state = { kind: 'authenticated', user: user(s) };
    return 'UNSELECT completed';
  },
};

export const CHECK: Command = {
  states: SELECTED,
  async run(s, c) {
    c.end();
    // Every write is durable when it returns; CHECK is a chance for updates, as NOOP.
    selected(s).dirty = true;
    return 'CHECK completed';
  },
};

export const readOnlyGuard = (sel: Selected, what: string): void => {
  if (sel.readOnly) throw no('READ-ONLY', `${what} is not possible in a mailbox opened with EXAMINE`);
};
