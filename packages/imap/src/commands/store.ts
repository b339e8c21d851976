/**
 * STORE and UID STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE and MODIFIED
 * (RFC 7162 §3.1.3). A keyword the client has not been told of is announced
 * in FLAGS and PERMANENTFLAGS before the FETCH responses that show it.
 */
import { bad } from '../errors.ts';
import { formatUids, readSequenceSet } from '../protocol/sequence.ts';
import { type Command, SELECTED } from './types.ts';
import { resolveSet, selected } from './util.ts';

function store(): Command {
  return {
    states: SELECTED,
    noExpunge: true,
    async run(s, c, { uid }) {
      const sel = selected(s);
      const ranges = readSequenceSet(c);
      c.space();
      let unchangedSince: number | undefined;
      if (c.peek() === '(') {
        c.list(() => {
          if (c.word() !== 'UNCHANGEDSINCE') throw bad('Unknown STORE modifier');
          c.space();
          unchangedSince = c.modseq();
        });
        c.space();
        s.condstore = true;
      }
      const sign = c.take('+') ? '+' : c.take('-') ? '-' : '';
      const what = sign + c.name();
      const m = /^([+-]?)FLAGS(\.SILENT)?$/.exec(what);
      if (!m) throw bad(`Invalid STORE item ${what.slice(0, 32)}`);
      c.space();
      const flags = c.flags(true).filter((f) => f.toLowerCase() !== '\\recent');
      c.end();
      if (flags.includes('\\*')) throw bad('\\* is not a flag');
      const uids = resolveSet(sel, ranges, uid).filter((u) => !sel.expunged.has(u));
      // As Dovecot: nothing is changed in a mailbox opened with EXAMINE, and that is not an error.
      if (sel.readOnly) return 'STORE ignored with read-only mailbox';
      const op = m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'set';
      const silent = Boolean(m[2]);
      const result = await s.ctx.store.updateFlags(sel.mailbox.id, uids, {
        op,
        flags,
        ...(unchangedSince !== undefined ? { unchangedSince } : {}),
      });
      if (result.updated.some((x) => sel.learn(x.flags))) sel.announceFlags(s);
      for (const x of result.updated) {
        sel.madeHere(x.uid, x.modseq);
        const seq = sel.uids.seqOf(x.uid);
        if (!seq || (silent && !s.condstore)) continue;
        const parts: string[] = [];
        if (uid) parts.push(`UID ${x.uid}`);
        if (!silent) parts.push(`FLAGS ${sel.flagsOf(x.uid, x.flags)}`);
        if (s.condstore) parts.push(`MODSEQ (${x.modseq})`);
        s.untagged(`${seq} FETCH (${parts.join(' ')})`);
      }
      if (result.updated.length)
        s.ctx.publish({
          type: 'message.flags',
          accountId: sel.mailbox.accountId,
          mailboxId: sel.mailbox.id,
          uids: result.updated.map((x) => x.uid),
          modseq: Math.max(...result.updated.map((x) => x.modseq)),
        });
      if (result.modified.length) {
        const set = uid ? result.modified : result.modified.map((u) => sel.uids.seqOf(u)).filter(Boolean);
        return `[MODIFIED ${formatUids(set.sort((a, b) => a - b))}] Conditional STORE failed for some messages`;
      }
      return `${uid ? 'UID STORE' : 'STORE'} completed`;
    },
  };
}

export const STORE = store();
export const UID_STORE = store();
