/**
 * COPY and MOVE and their UID forms (RFC 3501 §6.4.7, RFC 6851, COPYUID of
 * RFC 4315). MOVE sends `* OK [COPYUID …]` before its EXPUNGE responses
 * (RFC 6851 §4.3), then the tagged OK.
 */
import { formatUids, readSequenceSet } from '../protocol/sequence.ts';
import { readOnlyGuard } from './select.ts';
import { type Command, SELECTED } from './types.ts';
import { mailbox, readMailbox, resolveSet, selected } from './util.ts';

function copy(move: boolean): Command {
  return {
    states: SELECTED,
    async run(s, c, { uid }) {
      const sel = selected(s);
      const ranges = readSequenceSet(c);
      c.space();
      const name = readMailbox(s, c);
      c.end();
      const verb = `${uid ? 'UID ' : ''}${move ? 'MOVE' : 'COPY'}`;
      if (move) readOnlyGuard(sel, 'MOVE');
      const dest = await mailbox(s, name, 'TRYCREATE');
      const uids = resolveSet(sel, ranges, uid).filter((u) => !sel.expunged.has(u));
      if (uids.length === 0) return `${verb} completed: nothing to ${move ? 'move' : 'copy'}`;
      const store = s.ctx.store;
      const result = move
        ? await store.moveMessages(sel.mailbox.id, uids, dest.id)
        : await store.copyMessages(sel.mailbox.id, uids, dest.id);
      if (result.uids.length === 0) return `${verb} completed: nothing to ${move ? 'move' : 'copy'}`;
      const source = result.uids.map(([a]) => a);
      const copyuid = `COPYUID ${result.uidValidity} ${formatUids(source)} ${formatUids(result.uids.map(([, b]) => b))}`;
      const accountId = sel.mailbox.accountId;
      s.ctx.publish({
        type: 'message.new',
        accountId,
        mailboxId: dest.id,
        uid: result.uids[result.uids.length - 1]![1],
        modseq: 0,
      });
      if (dest.id === sel.mailbox.id) {
        sel.dirty = true;
        for (const [, u] of result.uids) sel.madeByUs.add(u);
      }
      if (!move) return `[${copyuid}] ${verb} completed`;
      s.untagged(`OK [${copyuid}] Moved`);
      for (const u of source) sel.expunged.add(u);
      sel.flushExpunges(s);
      s.ctx.publish({
        type: 'message.expunge',
        accountId,
        mailboxId: sel.mailbox.id,
        uids: source,
        modseq: 0,
      });
      return `${verb} completed`;
    },
  };
}

export const COPY = copy(false);
export const UID_COPY = copy(false);
export const MOVE = copy(true);
export const UID_MOVE = copy(true);
