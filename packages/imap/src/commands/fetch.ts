/**
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8, §7.4.2) with MODSEQ and
 * CHANGEDSINCE (RFC 7162 §3.1.4). Messages are read in batches; the bytes
 * only when a section is asked for; BODY[] is the stored message byte for
 * byte. BODY[...] and RFC822 / RFC822.TEXT set \Seen (not BODY.PEEK, not in
 * a read-only mailbox) and the new FLAGS are included in the response.
 */
import type { Message } from '@mailwerk/store';
import { hasFlag } from '@mailwerk/store';
import { bodyStructureValue, envelopeValue, partial, sectionBytes } from '../fetch-data.ts';
import { type Chunk, dateTime, literal, value } from '../protocol/encode.ts';
import { type FetchItem, parseFetch } from '../protocol/fetch-parse.ts';
import { readSequenceSet } from '../protocol/sequence.ts';
import type { Selected } from '../selected.ts';
import type { Session } from '../session.ts';
import { type Command, SELECTED } from './types.ts';
import { resolveSet, selected } from './util.ts';

const BATCH = 500;

/** Marks the unseen messages of `list` \Seen; returns the list with their new flags and the UIDs changed. */
async function markSeen(
  s: Session,
  sel: Selected,
  list: Message[],
): Promise<{ list: Message[]; changed: Set<number> }> {
  const unseen = list.filter((m) => !hasFlag(m.flags, '\\Seen')).map((m) => m.uid);
  if (!unseen.length) return { list, changed: new Set() };
  const r = await s.ctx.store.updateFlags(sel.mailbox.id, unseen, { op: 'add', flags: ['\\Seen'] });
  if (!r.updated.length) return { list, changed: new Set() };
  for (const m of r.updated) sel.own.add(m.modseq);
  s.ctx.publish({
    type: 'message.flags',
    accountId: sel.mailbox.accountId,
    mailboxId: sel.mailbox.id,
    uids: r.updated.map((m) => m.uid),
    modseq: Math.max(...r.updated.map((m) => m.modseq)),
  });
  const byUid = new Map(r.updated.map((m) => [m.uid, m]));
  return { list: list.map((m) => byUid.get(m.uid) ?? m), changed: new Set(byUid.keys()) };
}

function item(
  out: Chunk[],
  it: FetchItem,
  m: Message,
  raw: Buffer | null,
  sel: Selected,
  utf8: boolean,
): void {
  const root = m.structure.root;
  switch (it.kind) {
    case 'UID':
      out.push(`UID ${m.uid}`);
      return;
    case 'FLAGS':
      out.push(`FLAGS ${sel.flagsOf(m.uid, m.flags)}`);
      return;
    case 'INTERNALDATE':
      out.push(`INTERNALDATE ${dateTime(m.internalDate)}`);
      return;
    case 'RFC822.SIZE':
      out.push(`RFC822.SIZE ${m.size}`);
      return;
    case 'MODSEQ':
      out.push(`MODSEQ (${m.modseq})`);
      return;
    case 'ENVELOPE':
      out.push('ENVELOPE ');
      value(envelopeValue(root.envelope), out, utf8);
      return;
    case 'BODYSTRUCTURE':
    case 'BODY':
      out.push(`${it.kind} `);
      value(bodyStructureValue(root, it.kind === 'BODYSTRUCTURE'), out, utf8);
      return;
    case 'section': {
      let bytes = sectionBytes(raw!, root, it.section) ?? Buffer.alloc(0);
      if (it.partial) bytes = partial(bytes, it.partial.start, it.partial.length);
      out.push(`${it.label} `, ...literal(bytes));
      return;
    }
  }
}

function fetch(): Command {
  return {
    states: SELECTED,
    noExpunge: true,
    async run(s, c, { uid }) {
      const sel = selected(s);
      const ranges = readSequenceSet(c);
      c.space();
      const req = parseFetch(c);
      const items = [...req.items];
      // RFC 3501 §6.4.8: UID FETCH always returns the UID; RFC 7162: CHANGEDSINCE and MODSEQ turn on CONDSTORE.
      if (uid && !items.some((i) => i.kind === 'UID')) items.unshift({ kind: 'UID' });
      if (req.changedSince !== null || items.some((i) => i.kind === 'MODSEQ')) s.condstore = true;
      if (req.changedSince !== null && !items.some((i) => i.kind === 'MODSEQ'))
        items.push({ kind: 'MODSEQ' });
      const seen = !sel.readOnly && items.some((i) => i.kind === 'section' && !i.peek);
      const needsBytes = items.some((i) => i.kind === 'section');
      const hasFlags = items.some((i) => i.kind === 'FLAGS');
      const hasModseq = items.some((i) => i.kind === 'MODSEQ');
      const uids = resolveSet(sel, ranges, uid);
      const store = s.ctx.store;
      for (let i = 0; i < uids.length; i += BATCH) {
        const batch = uids.slice(i, i + BATCH);
        const wanted = new Set(batch);
        let list = (
          await store.listMessages(sel.mailbox.id, { uidFrom: batch[0]!, uidTo: batch[batch.length - 1]! })
        ).filter((m) => wanted.has(m.uid) && (req.changedSince === null || m.modseq > req.changedSince));
        let changed = new Set<number>();
        if (seen) ({ list, changed } = await markSeen(s, sel, list));
        for (const m of list) {
          const seq = sel.uids.seqOf(m.uid);
          if (!seq) continue;
          const raw = needsBytes ? await store.blobs.get(m.blobId) : null;
          const out: Chunk[] = [`* ${seq} FETCH (`];
          let first = true;
          for (const it of items) {
            if (!first) out.push(' ');
            first = false;
            item(out, it, m, raw, sel, s.utf8);
          }
          // The flags a FETCH changed are reported with it (RFC 3501 §6.4.5); with CONDSTORE, with their MODSEQ.
          if (changed.has(m.uid)) {
            if (!hasFlags) out.push(` FLAGS ${sel.flagsOf(m.uid, m.flags)}`);
            if (s.condstore && !hasModseq) out.push(` MODSEQ (${m.modseq})`);
          }
          out.push(')\r\n');
          s.writeChunks(out);
          await s.flushIfFull();
        }
      }
      return `${uid ? 'UID FETCH' : 'FETCH'} completed`;
    },
  };
}

export const FETCH = fetch();
export const UID_FETCH = fetch();
