/**
 * SORT and UID SORT (RFC 5256 §3, SORT=DISPLAY of RFC 5957), THREAD and UID
 * THREAD (RFC 5256 §3: ORDEREDSUBJECT, REFERENCES). The search is SEARCH's;
 * what a message says for sorting (its date, subject and references, made
 * when it was stored: MessageStructure.sort; the first addresses of its
 * envelope) is read from its stored structure once and kept by blob
 * (ServiceContext.sortFacts), so a webmail that sorts the same mailbox on
 * every page view pays for the messages once. A message stored before the
 * structure kept them is read as before: its header for References.
 */
import { buildEnvelope, decodeWords, sortFields } from '@mailwerk/mime';
import type { Message, MessageMeta } from '@mailwerk/store';
import { bad } from '../errors.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { utf8 } from '../protocol/cursor.ts';
import { parseSearch } from '../protocol/search-parse.ts';
import { formatUids } from '../protocol/sequence.ts';
import type { Session } from '../session.ts';
import {
  ancestryOf,
  type ContentFacts,
  formatThreads,
  SORT_KEYS,
  type SortFacts,
  type SortKey,
  sortMessages,
  threadOrderedSubject,
  threadReferences,
} from '../sort.ts';
import {
  checkCharset,
  checkUpdate,
  esearch,
  keepUpdated,
  partialOf,
  readReturn,
  searchMessages,
} from './search.ts';
import { type Command, SELECTED } from './types.ts';
import { selected, structureOf } from './util.ts';

const BATCH = 500;
const ESORT_OPTIONS = new Set(['MIN', 'MAX', 'ALL', 'COUNT', 'PARTIAL', 'CONTEXT', 'UPDATE']);

/**
 * `charset SP search-criteria` as SORT and THREAD write them (RFC 5256 §3: the charset is not optional).
 * With `late`, SORT's RETURN (…) is taken after the charset too: RFC 5267 puts it before the sort keys,
 * some clients (and Dovecot's test suite) after the charset; no search key is called RETURN.
 */
function readCriteria(c: Cursor, late?: (c: Cursor) => void) {
  checkCharset(c.astring().toUpperCase());
  c.space();
  if (late && c.peekWord() === 'RETURN') late(c);
  const parsed = parseSearch(c, (raw) => utf8(raw));
  c.end();
  return parsed;
}

/**
 * The facts of a message stored before its structure kept its sort fields: from its envelope, and
 * (when threading) its header's References.
 */
async function olderFacts(s: Session, m: Message, references: boolean): Promise<ContentFacts> {
  const root = (await structureOf(s, m)).root;
  const facts: ContentFacts = {
    ...sortFields(root.envelope ?? buildEnvelope([]), null),
    references: null,
    keys: {},
  };
  if (references) {
    const raw = await s.ctx.store.blobs.get(m.blobId);
    facts.references = ancestryOf(
      raw.toString('latin1', root.start, Math.min(root.bodyStart, root.start + 256 * 1024)),
    ).references;
  }
  return facts;
}

/** The facts of the messages found, in their order; what the memo lacks is read in batches. */
async function factsOf(
  s: Session,
  mailboxId: string,
  found: Array<{ message: MessageMeta; seq: number }>,
  references: boolean,
): Promise<SortFacts[]> {
  // Held here for this command: the memo is a cache, it may drop what was read a moment ago (or keep
  // nothing, when it is sized 0).
  const memo = s.ctx.sortFacts;
  const known = new Map<string, ContentFacts>();
  const missing = found.filter(({ message }) => {
    const f = memo.get(message.blobId);
    if (f && (!references || f.references !== null)) known.set(message.blobId, f);
    return !known.has(message.blobId);
  });
  const learn = (blobId: string, f: ContentFacts) => {
    known.set(blobId, f);
    memo.set(blobId, f);
  };
  for (let i = 0; i < missing.length; i += BATCH) {
    const part = missing.slice(i, i + BATCH);
    const range = { uidFrom: part[0]!.message.uid, uidTo: part.at(-1)!.message.uid };
    const want = new Map(part.map((p) => [p.message.uid, p.message.blobId]));
    // The sort fields kept in the structures; the messages stored before they were kept, read whole.
    const older = new Set<number>();
    for (const { uid, sort } of await s.ctx.store.listSortFields(mailboxId, range)) {
      const blobId = want.get(uid);
      if (blobId === undefined) continue;
      // Fresh from the store: kept as they are, with a place for their sort keys.
      if (sort) learn(blobId, Object.assign(sort, { keys: {} }));
      else older.add(uid);
    }
    if (older.size) {
      const rows = await s.ctx.store.listMessages(mailboxId, {
        uidFrom: Math.min(...older),
        uidTo: Math.max(...older),
      });
      for (const m of rows) if (older.has(m.uid)) learn(m.blobId, await olderFacts(s, m, references));
    }
    // Other sessions run between batches.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return found.flatMap(({ message, seq }) => {
    // A message expunged between the search and the read of its row has no facts: it is left out.
    const f = known.get(message.blobId);
    if (!f) return [];
    return {
      ...f,
      seq,
      uid: message.uid,
      size: message.size,
      arrival: message.internalDate.getTime(),
      sent: f.sent ?? message.internalDate.getTime(),
      references: f.references ?? [],
    };
  });
}

function sort(): Command {
  return {
    states: SELECTED,
    noExpunge: true,
    async run(s, c, { uid, tag }) {
      const sel = selected(s);
      // ESORT (RFC 5267 §3): RETURN (MIN MAX ALL COUNT) before the criteria, `()` is ALL; PARTIAL (RFC 9394).
      let ret = readReturn(c, ESORT_OPTIONS);
      const criteria: SortKey[] = [];
      let reverse = false;
      c.list(() => {
        const w = c.word();
        if (w === 'REVERSE') {
          if (reverse) throw bad('REVERSE twice');
          reverse = true;
          return;
        }
        if (!SORT_KEYS.has(w)) throw bad(`Unknown sort key ${w.slice(0, 32)}`);
        criteria.push({ key: w, reverse });
        reverse = false;
      });
      if (reverse || criteria.length === 0) throw bad('A sort key is missing');
      c.space();
      const parsed = readCriteria(c, ret ? undefined : (at) => (ret = readReturn(at, ESORT_OPTIONS)));
      const options = ret?.options ?? null;
      const update = checkUpdate(sel, ret, tag);
      if (parsed.usesModseq) s.condstore = true;
      const order = async () =>
        sortMessages(
          await factsOf(s, sel.mailbox.id, await searchMessages(s, sel, parsed), false),
          criteria,
          decodeWords,
        );
      const facts = await order();
      // RFC 5267 §4.3: the sorted result kept current, with positions in the sort order.
      if (update)
        keepUpdated(
          s,
          sel,
          { tag, uid, sorted: true, run: async () => (await order()).map((f) => f.uid) },
          facts.map((f) => f.uid),
        );
      const sorted = facts.map((f) => (uid ? f.uid : f.seq));
      if (!options) s.untagged(`SORT${sorted.map((n) => ` ${n}`).join('')}`);
      else {
        // MIN and MAX are the first and last in sort order; ALL keeps the order (ranges only ascending).
        const data: string[] = [];
        if (sorted.length) {
          if (options.has('MIN')) data.push(`MIN ${sorted[0]}`);
          if (options.has('MAX')) data.push(`MAX ${sorted.at(-1)}`);
          // formatUids keeps the order and makes only runs going up by one into ranges.
          if (options.has('ALL')) data.push(`ALL ${formatUids(sorted)}`);
        }
        if (ret?.partial) {
          const window = partialOf(ret.partial, sorted);
          data.push(`PARTIAL (${ret.partial.text} ${window.length ? formatUids(window) : 'NIL'})`);
        }
        if (options.has('COUNT')) data.push(`COUNT ${sorted.length}`);
        esearch(s, tag, uid, data);
      }
      return `${uid ? 'UID SORT' : 'SORT'} completed`;
    },
  };
}

function thread(): Command {
  return {
    states: SELECTED,
    noExpunge: true,
    async run(s, c, { uid }) {
      const sel = selected(s);
      const algorithm = c.word();
      if (algorithm !== 'ORDEREDSUBJECT' && algorithm !== 'REFERENCES')
        throw bad(`Unknown threading algorithm ${algorithm.slice(0, 32)}`);
      c.space();
      const parsed = readCriteria(c);
      if (parsed.usesModseq) s.condstore = true;
      const found = await searchMessages(s, sel, parsed);
      const facts = await factsOf(s, sel.mailbox.id, found, algorithm === 'REFERENCES');
      const threads = algorithm === 'REFERENCES' ? threadReferences(facts) : threadOrderedSubject(facts);
      const data = formatThreads(threads, (f) => (uid ? f.uid : f.seq));
      s.untagged(`THREAD${data ? ` ${data}` : ''}`);
      return `${uid ? 'UID THREAD' : 'THREAD'} completed`;
    },
  };
}

export const SORT = sort();
export const UID_SORT = sort();
export const THREAD = thread();
export const UID_THREAD = thread();
