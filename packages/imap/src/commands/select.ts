/**
 * SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2; CONDSTORE, RFC 7162 §3.1.8),
 * CLOSE (§6.4.2), UNSELECT (RFC 3691) and CHECK (§6.4.1).
 */
import { hasFlag } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import { mailboxId } from '../objectid.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { mailboxName } from '../protocol/encode.ts';
import { formatRanges, isSaved, type Range, readSequenceSet, STAR } from '../protocol/sequence.ts';
import { Selected } from '../selected.ts';
import type { Session } from '../session.ts';
import { AUTHENTICATED, type Command, SELECTED } from './types.ts';
import { mailbox, readMailbox, selected, user } from './util.ts';

/** SELECT's `QRESYNC (uidvalidity modseq [known-uids] [(seq-match-data)])` (RFC 7162 §3.2.5). */
interface Resync {
  uidValidity: number;
  modseq: number;
  known: Range[] | null;
}

function readResync(c: Cursor): Resync {
  let r: Resync | null = null;
  c.list(() => {
    const uidValidity = c.nzNumber();
    c.space();
    const modseq = c.modseq();
    let known: Range[] | null = null;
    if (c.take(' ') && c.peek() !== '(') {
      known = readSequenceSet(c);
      if (isSaved(known)) throw bad('$ is not a set of known UIDs');
      c.take(' ');
    }
    // The sequence-match data only narrows what the server must say; all of it is said anyway.
    if (c.peek() === '(')
      c.list(() => {
        readSequenceSet(c);
        c.space();
        readSequenceSet(c);
      });
    r = { uidValidity, modseq, known };
  });
  if (!r) throw bad('QRESYNC needs a UIDVALIDITY and a MODSEQ');
  return r;
}

/**
 * What changed since the client's MODSEQ (RFC 7162 §3.2.5.1): a FETCH of each message changed since, then
 * VANISHED (EARLIER) with every UID the client may know that is gone. Those are read from what the
 * mailbox holds now, not from the change journal: complete however far the journal has been pruned,
 * at the price of naming UIDs the client forgot long ago (which it ignores).
 */
async function resynchronise(s: Session, sel: Selected, r: Resync): Promise<void> {
  // Another UIDVALIDITY: the client starts over; nothing to say (§3.2.5.1).
  if (r.uidValidity !== sel.mailbox.uidValidity) return;
  const known = r.known ? new Set(sel.uids.byUid(r.known)) : null;
  for (const m of await s.ctx.metaCache.list(sel.mailbox.id)) {
    if (m.modseq <= r.modseq || (known && !known.has(m.uid))) continue;
    const seq = sel.uids.seqOf(m.uid);
    if (seq)
      s.untagged(`${seq} FETCH (UID ${m.uid} FLAGS ${sel.flagsOf(m.uid, m.flags)} MODSEQ (${m.modseq}))`);
  }
  const gone = sel.uids.missingIn(r.known ?? [[1, STAR]], sel.topUid);
  if (gone.length) s.untagged(`VANISHED (EARLIER) ${formatRanges(gone)}`);
}

function open(readOnly: boolean): Command {
  return {
    states: AUTHENTICATED,
    async run(s, c) {
      const name = readMailbox(s, c);
      let resync: Resync | null = null;
      let condstore = false;
      if (c.take(' ')) {
        c.list(() => {
          const p = c.word();
          if (p === 'CONDSTORE') condstore = true;
          else if (p === 'QRESYNC') {
            // RFC 7162 §3.2.5: only after ENABLE QRESYNC.
            if (!s.qresync) throw bad('ENABLE QRESYNC first');
            c.space();
            resync = readResync(c);
          } else throw bad(`Unknown SELECT parameter ${p.slice(0, 32)}`);
        });
      }
      c.end();
      const account = user(s);
      // RFC 3501 §6.3.1: a SELECT, even a failing one, first leaves the mailbox selected before; with
      // QRESYNC the client is told (RFC 7162 §3.2.11), so it knows which responses are whose.
      if (s.state.kind === 'selected' && s.qresync) s.untagged('OK [CLOSED] Previous mailbox closed');
      s.state = { kind: 'authenticated', user: account };
      // Turned on with no mailbox selected: SELECT's own HIGHESTMODSEQ below says it for this one.
      if (condstore) s.condstore = true;
      const mb = await mailbox(s, name);
      const { selected: sel, firstUnseen } = await Selected.open(s.ctx.store, mb, readOnly, s.ctx.metaCache);
      sel.hideRecent = s.rev2;
      sel.announceFlags(s);
      s.untagged(`${sel.exists} EXISTS`);
      if (s.rev2) {
        // RFC 9051 §6.3.2: no RECENT and no UNSEEN code; a LIST response with the mailbox's name instead.
        s.write('* LIST () "/" ', mailboxName(sel.mailbox.name, s.utf8), '\r\n');
      } else {
        s.untagged(`${sel.recentCount} RECENT`);
        if (firstUnseen !== null) {
          const seq = sel.uids.seqOf(firstUnseen);
          if (seq) s.untagged(`OK [UNSEEN ${seq}] First unseen`);
        }
      }
      s.untagged(`OK [UIDVALIDITY ${sel.mailbox.uidValidity}] UIDs valid`);
      s.untagged(`OK [UIDNEXT ${sel.mailbox.uidNext}] Predicted next UID`);
      // RFC 7162 §3.1.2.1: a CONDSTORE server sends HIGHESTMODSEQ on every SELECT and EXAMINE.
      s.untagged(`OK [HIGHESTMODSEQ ${sel.mailbox.highestModseq}] Highest`);
      // RFC 8474 §4.2.
      s.untagged(`OK [MAILBOXID (${mailboxId(sel.mailbox)})] Ok`);
      if (resync) await resynchronise(s, sel, resync);
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
    // Every write is durable when it returns; CHECK is a chance for updates, as NOOP (and as NOOP, not
    // under a NOTIFY without message events of the selected mailbox).
    if (!s.notify || s.notify.spec.selected) selected(s).dirty = true;
    return 'CHECK completed';
  },
};

export const readOnlyGuard = (sel: Selected, what: string): void => {
  if (sel.readOnly) throw no('READ-ONLY', `${what} is not possible in a mailbox opened with EXAMINE`);
};
