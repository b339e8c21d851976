/**
 * SEARCH and UID SEARCH (RFC 3501 §6.4.4) with MODSEQ (RFC 7162 §3.1.5).
 * Strings are UTF-8 (CHARSET UTF-8 or US-ASCII, RFC 3501 §6.4.4); other
 * charsets are refused with BADCHARSET. The work is bounded by the mailbox
 * size times the (bounded) criteria, and yields to other sessions between
 * batches.
 */

import type { Message, MessageMeta } from '@mailwerk/store';
import { no } from '../errors.ts';
import { utf8 } from '../protocol/cursor.ts';
import { parseSearch, type SearchKey } from '../protocol/search-parse.ts';
import { Evaluator, envelopeOnly, envelopeWords, memoWords, needsStructure } from '../search.ts';
import { type Command, SELECTED } from './types.ts';
import { selected, structureOf } from './util.ts';

const BATCH = 500;
const CHARSETS = new Set(['UTF-8', 'US-ASCII']);

function search(): Command {
  return {
    states: SELECTED,
    noExpunge: true,
    async run(s, c, { uid }) {
      const sel = selected(s);
      const parsed = parseSearch(c, (raw) => utf8(raw));
      c.end();
      if (parsed.charset !== null && !CHARSETS.has(parsed.charset))
        throw no('BADCHARSET (UTF-8 US-ASCII)', `Charset ${parsed.charset.slice(0, 40)} is not supported`);
      if (parsed.usesModseq) s.condstore = true;
      // Sequence sets and UID sets resolved once, against the session's view.
      const sets = new Map<SearchKey, Set<number>>();
      const stack: SearchKey[] = [parsed.key];
      while (stack.length) {
        const k = stack.pop()!;
        if (k.op === 'and' || k.op === 'or') stack.push(...k.keys);
        else if (k.op === 'not') stack.push(k.key);
        else if (k.op === 'seq') sets.set(k, new Set(sel.uids.bySeq(k.ranges, true)));
        else if (k.op === 'uid') sets.set(k, new Set(sel.uids.byUid(k.ranges)));
      }
      const evaluator = new Evaluator(parsed.key, sets);
      // Flags, sizes and dates come from the rows; FROM/TO/CC/BCC/SUBJECT from the envelope words the service
      // keeps; only other headers, BODY and TEXT need each message's structure.
      const full = needsStructure(parsed.key) && !envelopeOnly(parsed.key);
      const words = !full && needsStructure(parsed.key);
      const store = s.ctx.store;
      const memo = s.ctx.searchWords;
      const hits: number[] = [];
      let highest = 0;
      const all = sel.uids.toArray();
      for (let i = 0; i < all.length; i += BATCH) {
        const from = all[i]!;
        const to = all[Math.min(i + BATCH, all.length) - 1]!;
        const range = { uidFrom: from, uidTo: to };
        const list: MessageMeta[] = full
          ? await store.listMessages(sel.mailbox.id, range)
          : await s.ctx.metaCache.list(sel.mailbox.id, range);
        if (words) {
          // The words of the messages not yet in the memo, from their structures (one read for the batch).
          const missing = list.filter((m) => memo.get(m.blobId) === undefined);
          if (missing.length) {
            const rows = await store.listMessages(sel.mailbox.id, {
              uidFrom: missing[0]!.uid,
              uidTo: missing.at(-1)!.uid,
            });
            for (const m of rows)
              if (memo.get(m.blobId) === undefined)
                memo.set(m.blobId, envelopeWords((await structureOf(s, m)).root.envelope ?? null));
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
                ? (memoWords(memo, m.blobId) ?? envelopeWords(null))
                : null,
            seq,
            recent: sel.isRecent(m.uid),
            raw: () => (raw ??= store.blobs.get(m.blobId)),
          };
          // Most keys answer at once; only those reading the bytes wait.
          const match = evaluator.matches(subject);
          if (typeof match === 'boolean' ? match : await match) {
            hits.push(uid ? m.uid : seq);
            if (m.modseq > highest) highest = m.modseq;
          }
        }
        // Let other sessions run between batches.
        await new Promise((resolve) => setImmediate(resolve));
      }
      const modseq = parsed.usesModseq && hits.length ? ` (MODSEQ ${highest})` : '';
      s.untagged(`SEARCH${hits.length ? ` ${hits.join(' ')}` : ''}${modseq}`);
      return `${uid ? 'UID SEARCH' : 'SEARCH'} completed`;
    },
  };
}

export const SEARCH = search();
export const UID_SEARCH = search();
