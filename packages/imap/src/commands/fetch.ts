/**
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8, §7.4.2) with MODSEQ and
 * CHANGEDSINCE (RFC 7162 §3.1.4). Messages are read in batches; the bytes
 * only when a section is asked for; BODY[] is the stored message byte for
 * byte. BODY[...] and RFC822 / RFC822.TEXT set \Seen (not BODY.PEEK, not in
 * a read-only mailbox) and the new FLAGS are included in the response.
 */

import { decodeTransfer, findPart, type MimeNode, messagePreview } from '@mailwerk/mime';
import type { Message, MessageMeta } from '@mailwerk/store';
import { hasFlag } from '@mailwerk/store';
import type { TextKind } from '../cache.ts';
import { bad, no } from '../errors.ts';
import {
  bodyStructureText,
  envelopeText,
  headerSection,
  headerText,
  isTopHeader,
  partial,
  sectionBytes,
} from '../fetch-data.ts';
import { emailId, threadId } from '../objectid.ts';
import { type Chunk, dateTime, nstring } from '../protocol/encode.ts';
import { type FetchItem, type FetchRequest, parseFetch } from '../protocol/fetch-parse.ts';
import { formatRanges, isSaved, readSequenceSet } from '../protocol/sequence.ts';
import { envelopeWords } from '../search.ts';
import type { Selected } from '../selected.ts';
import type { Session } from '../session.ts';
import { type Command, SELECTED } from './types.ts';
import { resolveSet, selected, structureOf } from './util.ts';

const BATCH = 500;

/** Marks the unseen messages of `list` \Seen; returns the list with their new flags and the UIDs changed. */
async function markSeen(
  s: Session,
  sel: Selected,
  list: MessageMeta[],
): Promise<{ list: MessageMeta[]; changed: Set<number> }> {
  const unseen = list.filter((m) => !hasFlag(m.flags, '\\Seen')).map((m) => m.uid);
  if (!unseen.length) return { list, changed: new Set() };
  const r = await s.ctx.store.updateFlags(sel.mailbox.id, unseen, { op: 'add', flags: ['\\Seen'] });
  if (!r.updated.length) return { list, changed: new Set() };
  for (const m of r.updated) sel.madeHere(m.uid, m.modseq);
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

/** ENVELOPE / BODY / BODYSTRUCTURE text, from the process's cache unless the client reads UTF-8 (rare, not cached). */
function text(s: Session, kind: Exclude<TextKind, 'HEADER'>, m: MessageMeta, root: MimeNode): string {
  const make = () => {
    if (kind !== 'ENVELOPE') return bodyStructureText(root, kind === 'BODYSTRUCTURE', s.utf8);
    // The envelope is at hand: SEARCH FROM/TO/SUBJECT, which usually follows, then needs no structure either.
    const env = root.envelope ?? null;
    if (s.ctx.searchWords.get(m.blobId) === undefined)
      s.ctx.searchWords.set(m.blobId, () => envelopeWords(env));
    return envelopeText(root.envelope, s.utf8);
  };
  return s.utf8 ? make() : s.ctx.textCache.get(m.blobId, kind, make);
}

/**
 * BINARY[path] (RFC 3516 §4.2): the part's body with its Content-Transfer-Encoding undone; the whole
 * message as it is for an empty path; empty for a part that is not there. An encoding we do not know is
 * NO [UNKNOWN-CTE] (§4.1), for the whole FETCH.
 */
function binaryBytes(raw: Buffer, root: MimeNode | null, path: number[]): Buffer {
  if (path.length === 0) return raw;
  const node = findPart(root!, path);
  if (!node) return Buffer.alloc(0);
  if (node.children) return raw.subarray(node.bodyStart, node.end);
  const bytes = decodeTransfer(raw, node);
  if (!bytes)
    throw no(
      'UNKNOWN-CTE',
      `The part is in an encoding this server does not know: ${node.encoding.slice(0, 40)}`,
    );
  return bytes;
}

/** Appends one item to the response being built: text to `line`, literal bytes as chunks of their own. */
function item(
  r: { line: string; out: Chunk[] },
  it: FetchItem,
  m: MessageMeta,
  raw: Buffer | null,
  header: string | null,
  s: Session,
  sel: Selected,
  root: MimeNode | null,
  preview: string | null,
): void {
  switch (it.kind) {
    case 'UID':
      r.line += `UID ${m.uid}`;
      return;
    case 'FLAGS':
      r.line += `FLAGS ${sel.flagsOf(m.uid, m.flags)}`;
      return;
    case 'INTERNALDATE':
      r.line += `INTERNALDATE ${dateTime(m.internalDate)}`;
      return;
    case 'RFC822.SIZE':
      r.line += `RFC822.SIZE ${m.size}`;
      return;
    case 'MODSEQ':
      r.line += `MODSEQ (${m.modseq})`;
      return;
    case 'PREVIEW':
      // RFC 8970 §3: the kept text; NIL (with LAZY) for a message stored before previews were kept.
      r.line += `PREVIEW ${nstring(preview)}`;
      return;
    case 'SAVEDATE':
      // RFC 8514 §4.1: NIL for a message stored before save dates were kept.
      r.line += `SAVEDATE ${m.savedAt ? dateTime(m.savedAt) : 'NIL'}`;
      return;
    case 'EMAILID':
      r.line += `EMAILID (${emailId(m.blobId)})`;
      return;
    case 'THREADID': {
      // Given the header: the request asks for it with THREADID.
      const t = threadId(header!);
      r.line += t ? `THREADID (${t})` : 'THREADID NIL';
      return;
    }
    case 'ENVELOPE':
    case 'BODYSTRUCTURE':
    case 'BODY':
      // Given its structure: the request has an item that needs it.
      r.line += `${it.kind} ${text(s, it.kind, m, root!)}`;
      return;
    case 'section': {
      if (it.binary) {
        let bytes = binaryBytes(raw!, root, it.section.path);
        if (it.binary === 'size') {
          r.line += `${it.label} ${bytes.length}`;
          return;
        }
        if (it.partial) bytes = partial(bytes, it.partial.start, it.partial.length);
        // RFC 3516 §4.3: a literal8 (`~{n}`) where the bytes hold a NUL; a plain literal does otherwise.
        r.out.push(`${r.line}${it.label} ${bytes.includes(0) ? '~' : ''}{${bytes.length}}\r\n`, bytes);
        r.line = '';
        return;
      }
      // The structure is needed (and given) only for a part number; the header of the message is given as text.
      let bytes =
        (isTopHeader(it.section)
          ? headerSection(header!, it.section)
          : sectionBytes(raw!, () => root!, it.section)) ?? Buffer.alloc(0);
      if (it.partial) bytes = partial(bytes, it.partial.start, it.partial.length);
      r.out.push(`${r.line}${it.label} {${bytes.length}}\r\n`, bytes);
      r.line = '';
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
      if (req.vanished) {
        // RFC 7162 §3.2.6: UID FETCH only, and only after ENABLE QRESYNC.
        if (!uid || !s.qresync) throw bad('VANISHED is for UID FETCH after ENABLE QRESYNC');
        const gone = isSaved(ranges) ? [] : sel.uids.missingIn(ranges, sel.topUid);
        if (gone.length) s.untagged(`VANISHED (EARLIER) ${formatRanges(gone)}`);
      }
      await fetchMessages(s, sel, resolveSet(sel, ranges, uid), req, uid);
      return `${uid ? 'UID FETCH' : 'FETCH'} completed`;
    },
  };
}

/**
 * The FETCH responses for `uids` of the selected mailbox (FETCH and UID FETCH, and NOTIFY's MessageNew
 * with FETCH attributes, RFC 5465 §5.2).
 */
export async function fetchMessages(
  s: Session,
  sel: Selected,
  uids: number[],
  req: FetchRequest,
  uid: boolean,
): Promise<void> {
  const items = [...req.items];
  // RFC 3501 §6.4.8: UID FETCH always returns the UID; RFC 7162: CHANGEDSINCE and MODSEQ turn on CONDSTORE.
  if (uid && !items.some((i) => i.kind === 'UID')) items.unshift({ kind: 'UID' });
  if (req.changedSince !== null || items.some((i) => i.kind === 'MODSEQ')) s.condstore = true;
  if (req.changedSince !== null && !items.some((i) => i.kind === 'MODSEQ')) items.push({ kind: 'MODSEQ' });
  const seen = !sel.readOnly && items.some((i) => i.kind === 'section' && !i.peek);
  // The bytes are read for a section other than the message's header, or for a header not cached yet.
  const bodyBytes = items.some((i) => i.kind === 'section' && !isTopHeader(i.section));
  const headerItems = items.some(
    (i) => (i.kind === 'section' && isTopHeader(i.section)) || i.kind === 'THREADID',
  );
  const hasFlags = items.some((i) => i.kind === 'FLAGS');
  const hasModseq = items.some((i) => i.kind === 'MODSEQ');
  // Flags, sizes, dates and UIDs come from the cached rows; the structure only for what describes the
  // content and is not in the text cache already (a part number always needs it).
  const textKinds = items.flatMap((i) =>
    i.kind === 'ENVELOPE' || i.kind === 'BODY' || i.kind === 'BODYSTRUCTURE' ? [i.kind] : [],
  );
  const partPath = items.some((i) => i.kind === 'section' && i.section.path.length > 0);
  const previewItem = items.find((i) => i.kind === 'PREVIEW') as { lazy: boolean } | undefined;
  const needsStructure = (m: MessageMeta) =>
    partPath ||
    previewItem !== undefined ||
    (textKinds.length > 0 &&
      (s.utf8 || textKinds.some((k) => s.ctx.textCache.peek(m.blobId, k) === undefined)));
  const store = s.ctx.store;
  for (let i = 0; i < uids.length; i += BATCH) {
    const batch = uids.slice(i, i + BATCH);
    const wanted = new Set(batch);
    const range = { uidFrom: batch[0]!, uidTo: batch[batch.length - 1]! };
    let list = (await s.ctx.metaCache.list(sel.mailbox.id, range)).filter(
      (m) => wanted.has(m.uid) && (req.changedSince === null || m.modseq > req.changedSince),
    );
    const missing = list.filter(needsStructure);
    const full = new Map<number, Message>();
    if (missing.length) {
      const rows = await store.listMessages(sel.mailbox.id, {
        uidFrom: missing[0]!.uid,
        uidTo: missing[missing.length - 1]!.uid,
      });
      for (const m of rows) full.set(m.uid, m);
    }
    let changed = new Set<number>();
    if (seen) ({ list, changed } = await markSeen(s, sel, list));
    for (const m of list) {
      const seq = sel.uids.seqOf(m.uid);
      if (!seq) continue;
      // Taken from the cache before any await, so an eviction meanwhile cannot take it away.
      let header = headerItems ? (s.ctx.textCache.peek(m.blobId, 'HEADER') ?? null) : null;
      const raw = bodyBytes || (headerItems && header === null) ? await store.blobs.get(m.blobId) : null;
      if (headerItems && header === null) {
        const h = headerText(raw!);
        header = s.ctx.textCache.get(m.blobId, 'HEADER', () => h);
      }
      // Decided after the last await before the line is built, so the text cache cannot lose an entry
      // in between; a row not read above (its text was evicted meanwhile) is read alone.
      let root: MimeNode | null = null;
      let preview: string | null = null;
      if (needsStructure(m)) {
        const stored = full.get(m.uid) ?? (await store.getMessage(sel.mailbox.id, m.uid));
        if (!stored) continue; // expunged since the rows were read
        const structure = await structureOf(s, stored);
        root = structure.root;
        preview = structure.preview ?? null;
        // A message stored before previews were kept: made now from its bytes, unless LAZY says not to.
        if (previewItem && preview === null && !previewItem.lazy)
          preview = messagePreview(raw ?? (await store.blobs.get(m.blobId)), root);
      }
      const r = { line: `* ${seq} FETCH (`, out: [] as Chunk[] };
      for (let k = 0; k < items.length; k++) {
        if (k > 0) r.line += ' ';
        item(r, items[k]!, m, raw, header, s, sel, root, preview);
      }
      // The flags a FETCH changed are reported with it (RFC 3501 §6.4.5); with CONDSTORE, with their MODSEQ.
      if (changed.has(m.uid)) {
        if (!hasFlags) r.line += ` FLAGS ${sel.flagsOf(m.uid, m.flags)}`;
        if (s.condstore && !hasModseq) r.line += ` MODSEQ (${m.modseq})`;
      }
      r.out.push(`${r.line})\r\n`);
      s.writeChunks(r.out);
      if (s.full) await s.flush();
    }
  }
}

export const FETCH = fetch();
export const UID_FETCH = fetch();
