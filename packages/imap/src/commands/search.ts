/**
 * SEARCH and UID SEARCH (RFC 3501 §6.4.4) with MODSEQ (RFC 7162 §3.1.5),
 * RETURN options (ESEARCH, RFC 4731: MIN, MAX, ALL, COUNT), SAVE and `$`
 * (SEARCHRES, RFC 5182) and OLDER/YOUNGER (WITHIN, RFC 5032).
 * Strings are UTF-8 (CHARSET UTF-8 or US-ASCII, RFC 3501 §6.4.4); other
 * charsets are refused with BADCHARSET. The work is bounded by the mailbox
 * size times the (bounded) criteria, and yields to other sessions between
 * batches.
 */

import type { Message, MessageMeta } from '@mailwerk/store';
import { MAX_CONTEXTS, type SearchContext } from '../contexts.ts';
import { bad, no } from '../errors.ts';
import { type Cursor, utf8 } from '../protocol/cursor.ts';
import { str } from '../protocol/encode.ts';
import { type ParsedSearch, parseSearch, type SearchKey } from '../protocol/search-parse.ts';
import { formatUids } from '../protocol/sequence.ts';
import {
  type EnvelopeWords,
  Evaluator,
  envelopeOnly,
  envelopeWords,
  memoWords,
  needsStructure,
} from '../search.ts';
import type { Selected } from '../selected.ts';
import type { Session } from '../session.ts';
import { type Command, SELECTED } from './types.ts';
import { resolveSet, selected, structureOf } from './util.ts';

const BATCH = 500;
/** The charsets searches take (RFC 3501 §6.4.4: US-ASCII at least; UTF-8 is its superset here); NO [BADCHARSET] else. */
export function checkCharset(charset: string): void {
  if (charset !== 'UTF-8' && charset !== 'US-ASCII')
    throw no('BADCHARSET (UTF-8 US-ASCII)', `Charset ${charset.slice(0, 40)} is not supported`);
}

/** The ESEARCH response (RFC 4731 §3.1) of SEARCH and SORT with RETURN. */
export function esearch(s: Session, tag: string, uid: boolean, data: string[]): void {
  s.untagged(`ESEARCH (TAG ${str(tag)})${uid ? ' UID' : ''}${data.length ? ` ${data.join(' ')}` : ''}`);
}
const RETURN_OPTIONS = new Set(['MIN', 'MAX', 'ALL', 'COUNT', 'SAVE', 'PARTIAL', 'CONTEXT', 'UPDATE']);

/** PARTIAL's range (RFC 9394 §3): positions `lo` to `hi` (from 1), counted from the last match when `fromEnd`. */
export interface PartialRange {
  fromEnd: boolean;
  lo: number;
  hi: number;
  /** For the response: the range with its lower position first (`4:2` is answered as `2:4`). */
  text: string;
}

/** What `RETURN (…)` asks: the options, and PARTIAL's range when given. */
export interface ReturnOptions {
  options: Set<string>;
  partial: PartialRange | null;
}

/**
 * `RETURN (…)` before the criteria (RFC 4731 §3.1): the options asked for; `()` means ALL. Null without.
 * `allowed` are the options the command takes (SEARCH's, or SORT's without SAVE).
 */
export function readReturn(c: Cursor, allowed = RETURN_OPTIONS): ReturnOptions | null {
  if (c.peekWord() !== 'RETURN') return null;
  c.word();
  c.space();
  const options = new Set<string>();
  let partial: PartialRange | null = null;
  c.list(() => {
    const o = c.word();
    if (!allowed.has(o)) throw bad(`Unknown return option ${o.slice(0, 40)}`);
    options.add(o);
    if (o === 'PARTIAL') {
      // RFC 9394 §3: `n:m` counts from the first match, `-n:-m` from the last; never both signs.
      c.space();
      const text = c.atom(':-');
      const range = /^(-?)(\d{1,10}):(-?)(\d{1,10})$/.exec(text);
      if (!range || range[1] !== range[3]) throw bad('PARTIAL needs a range such as 1:100 or -1:-100');
      const a = Number(range[2]);
      const b = Number(range[4]);
      if (a < 1 || b < 1 || a > 0xffffffff || b > 0xffffffff) throw bad('PARTIAL positions start at 1');
      const [lo, hi] = [Math.min(a, b), Math.max(a, b)];
      partial = { fromEnd: range[1] === '-', lo, hi, text: `${range[1]}${lo}:${range[1]}${hi}` };
    }
  });
  c.space();
  if (options.has('PARTIAL') && options.has('ALL')) throw bad('PARTIAL and ALL do not go together');
  // `()` is ALL (RFC 4731 §3.1); CONTEXT is only a hint (RFC 5267 §4.2), so `(CONTEXT)` is too. UPDATE
  // asks for the changes to come, not for a result now.
  options.delete('CONTEXT');
  if (options.size === 0) options.add('ALL');
  return { options, partial };
}

/**
 * RETURN (UPDATE) (RFC 5267 §4.3): the result of the command kept current for the client from now on.
 * Checked before the command does anything: a tag that names a kept context already is BAD.
 */
export function checkUpdate(sel: Selected, ret: ReturnOptions | null, tag: string): boolean {
  if (!ret?.options.has('UPDATE')) return false;
  if (sel.contexts.has(tag)) throw bad('That tag names a result kept current already; use a new tag');
  return true;
}

/** Keeps the result `result` (UIDs in the command's order) current, or says NOUPDATE when there are too many (§4.3.1). */
export function keepUpdated(
  s: Session,
  sel: Selected,
  context: Omit<SearchContext, 'result'>,
  result: number[],
): void {
  if (sel.contexts.size >= MAX_CONTEXTS) {
    s.untagged(
      `NO [NOUPDATE ${str(context.tag)}] At most ${MAX_CONTEXTS} results are kept current; CANCELUPDATE one`,
    );
    return;
  }
  sel.contexts.set(context.tag, { ...context, result });
}

/** The results PARTIAL's range names, in result order. */
export function partialOf<T>(r: PartialRange, results: T[]): T[] {
  const n = results.length;
  return r.fromEnd
    ? results.slice(Math.max(0, n - r.hi), Math.max(0, n - r.lo + 1))
    : results.slice(r.lo - 1, r.hi);
}

/**
 * The messages of the selected mailbox that match, in mailbox order, with their sequence numbers (SEARCH,
 * and SORT and THREAD before they order what it found).
 */
export async function searchMessages(
  s: Session,
  sel: Selected,
  parsed: ParsedSearch,
): Promise<Array<{ message: MessageMeta; seq: number }>> {
  // Sequence sets and UID sets resolved once, against the session's view.
  const sets = new Map<SearchKey, Set<number>>();
  const stack: SearchKey[] = [parsed.key];
  while (stack.length) {
    const k = stack.pop()!;
    if (k.op === 'and' || k.op === 'or') stack.push(...k.keys);
    else if (k.op === 'not') stack.push(k.key);
    else if (k.op === 'seq') sets.set(k, new Set(resolveSet(sel, k.ranges, false, true)));
    else if (k.op === 'uid') sets.set(k, new Set(resolveSet(sel, k.ranges, true)));
  }
  const evaluator = new Evaluator(parsed.key, sets, Date.now());
  // Flags, sizes and dates come from the rows; FROM/TO/CC/BCC/SUBJECT from the envelope words the service
  // keeps; only other headers, BODY and TEXT need each message's structure.
  const full = needsStructure(parsed.key) && !envelopeOnly(parsed.key);
  const words = !full && needsStructure(parsed.key);
  const store = s.ctx.store;
  const memo = s.ctx.searchWords;
  const hits: Array<{ message: MessageMeta; seq: number }> = [];
  const all = sel.uids.toArray();
  for (let i = 0; i < all.length; i += BATCH) {
    const from = all[i]!;
    const to = all[Math.min(i + BATCH, all.length) - 1]!;
    const range = { uidFrom: from, uidTo: to };
    const list: MessageMeta[] = full
      ? await store.listMessages(sel.mailbox.id, range)
      : await s.ctx.metaCache.list(sel.mailbox.id, range);
    // The words of the messages not yet in the memo, from their structures (one read for the batch), held
    // for the batch too: the memo is a cache that may drop them at once (or keep nothing, sized 0).
    const read = new Map<string, EnvelopeWords>();
    if (words) {
      const missing = list.filter((m) => memo.get(m.blobId) === undefined);
      if (missing.length) {
        const rows = await store.listMessages(sel.mailbox.id, {
          uidFrom: missing[0]!.uid,
          uidTo: missing.at(-1)!.uid,
        });
        for (const m of rows)
          if (memo.get(m.blobId) === undefined) {
            const w = envelopeWords((await structureOf(s, m)).root.envelope ?? null);
            read.set(m.blobId, w);
            memo.set(m.blobId, w);
          }
      }
    }
    for (const m of list) {
      const seq = sel.uids.seqOf(m.uid);
      if (!seq || sel.expunged.has(m.uid)) continue;
      let raw: Promise<Buffer> | null = null;
      const root = full ? (await structureOf(s, m as Message)).root : null;
      const subject = {
        message: m,
        root,
        words: root
          ? envelopeWords(root.envelope ?? null)
          : words
            ? (read.get(m.blobId) ?? memoWords(memo, m.blobId) ?? envelopeWords(null))
            : null,
        seq,
        recent: sel.isRecent(m.uid),
        raw: () => (raw ??= store.blobs.get(m.blobId)),
      };
      // Most keys answer at once; only those reading the bytes wait.
      const match = evaluator.matches(subject);
      if (typeof match === 'boolean' ? match : await match) hits.push({ message: m, seq });
    }
    // Let other sessions run between batches.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return hits;
}

function search(): Command {
  return {
    states: SELECTED,
    noExpunge: true,
    async run(s, c, { uid, tag }) {
      const sel = selected(s);
      // RFC 9051 §6.4.4: under IMAP4rev2 a SEARCH without RETURN is RETURN (ALL), answered with ESEARCH.
      const ret = readReturn(c);
      const options = ret?.options ?? (s.rev2 ? new Set(['ALL']) : null);
      // RFC 5182 §2.4: a SAVE that fails (BAD or NO) leaves `$` empty, not what it held before.
      if (options?.has('SAVE')) sel.saved = [];
      const parsed = parseSearch(c, (raw) => utf8(raw));
      c.end();
      if (parsed.charset !== null) checkCharset(parsed.charset);
      const update = checkUpdate(sel, ret, tag);
      if (parsed.usesModseq) s.condstore = true;
      const found = await searchMessages(s, sel, parsed);
      if (update) {
        const run = async () => (await searchMessages(s, sel, parsed)).map((f) => f.message.uid);
        keepUpdated(
          s,
          sel,
          { tag, uid, sorted: false, run },
          found.map((f) => f.message.uid),
        );
      }
      const hits = found.map((f) => (uid ? f.message.uid : f.seq));
      const hitUids = found.map((f) => f.message.uid);
      const modseqs = found.map((f) => f.message.modseq);
      const done = `${uid ? 'UID SEARCH' : 'SEARCH'} completed`;
      // A loop, not Math.max(...): a mailbox of a million messages would overflow the argument list.
      const highest = (indexes: number[]) => indexes.reduce((h, i) => Math.max(h, modseqs[i]!), 0);
      // Positions in the matches, for the options that pick some of them.
      const every = hits.map((_, i) => i);
      if (!options) {
        const modseq = parsed.usesModseq && hits.length ? ` (MODSEQ ${highest(every)})` : '';
        s.untagged(`SEARCH${hits.length ? ` ${hits.join(' ')}` : ''}${modseq}`);
        return done;
      }
      // RFC 4731 §3.1: MIN, MAX and ALL only when something matched; COUNT always. RFC 5182 §2.4: SAVE
      // with MIN or MAX alone keeps only those; with ALL or COUNT (or by itself), every match.
      const last = hits.length - 1;
      const minMaxOnly =
        !options.has('ALL') && !options.has('COUNT') && (options.has('MIN') || options.has('MAX'));
      const picked = minMaxOnly
        ? [...new Set([...(options.has('MIN') ? [0] : []), ...(options.has('MAX') ? [last] : [])])].filter(
            (i) => i >= 0,
          )
        : every;
      // PARTIAL (RFC 9394): the window of the matches; SAVE then keeps that window.
      const window = ret?.partial ? partialOf(ret.partial, every) : null;
      if (options.has('SAVE')) sel.saved = (window ?? picked).map((i) => hitUids[i]!);
      const only = [...options].filter((o) => o !== 'SAVE');
      if (only.length === 0) return done; // SAVE alone: no ESEARCH response (RFC 5182 §2.4).
      // UPDATE alone: an ESEARCH without data (RFC 5267 §4.3 has no interaction with the result options).
      const data: string[] = [];
      if (hits.length) {
        if (options.has('MIN')) data.push(`MIN ${hits[0]}`);
        if (options.has('MAX')) data.push(`MAX ${hits[last]}`);
        if (options.has('ALL')) data.push(`ALL ${formatUids(hits)}`);
      }
      if (window && ret?.partial)
        data.push(
          `PARTIAL (${ret.partial.text} ${window.length ? formatUids(window.map((i) => hits[i]!)) : 'NIL'})`,
        );
      if (options.has('COUNT')) data.push(`COUNT ${hits.length}`);
      // RFC 7162 §3.1.5: the highest mod-sequence of the messages returned.
      if (parsed.usesModseq && hits.length) data.push(`MODSEQ ${highest(window ?? picked)}`);
      esearch(s, tag, uid, data);
      return done;
    },
  };
}

export const SEARCH = search();
export const UID_SEARCH = search();

/** CANCELUPDATE (RFC 5267 §4.3.5): no more updates for the results kept for these tags. */
export const CANCELUPDATE: Command = {
  states: SELECTED,
  async run(s, c) {
    const sel = selected(s);
    // `1*(SP quoted)` (RFC 5267 §5); a literal is taken too.
    const tags = [c.string()];
    while (c.take(' ')) tags.push(c.string());
    c.end();
    const unknown = tags.find((t) => !sel.contexts.has(t));
    if (unknown !== undefined)
      throw bad(`No result is kept current for the tag ${str(unknown.slice(0, 40))}`);
    for (const t of tags) sel.contexts.delete(t);
    return 'CANCELUPDATE completed';
  },
};
