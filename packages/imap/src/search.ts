/**
 * SEARCH (RFC 3501 §6.4.4) over stored messages: evaluates the tree that
 * protocol/search-parse.ts built. Flags, sizes, dates and UIDs come from the
 * message row; HEADER, BODY and TEXT read the bytes, only when a key needs
 * them, and match case-insensitively against decoded text (RFC 2047 words in
 * headers; base64 and quoted-printable bodies in their declared charset), as
 * users expect from Dovecot. FROM/TO/CC/BCC also match the parsed addresses,
 * so comments and folding inside an address do not hide it.
 *
 * The tree is at most MAX_DEPTH deep (the parser refuses deeper ones), so
 * evaluating it recursively is bounded.
 */
import {
  decodePartBody,
  decodeWords,
  type Envelope,
  type MimeNode,
  parseAddressList,
  parseHeaderBlock,
  parseHeaderDate,
} from '@mailwerk/mime';
import { hasFlag, type MessageMeta } from '@mailwerk/store';
import type { BlobMemo } from './cache.ts';
import { emailId, threadId } from './objectid.ts';
import type { SearchKey } from './protocol/search-parse.ts';

export interface SearchSubject {
  message: MessageMeta;
  /** The message's structure, for searches that read more than its envelope; else null. */
  root: MimeNode | null;
  /** The envelope's words, for searches that read the structure or only the envelope (envelopeOnly). */
  words: EnvelopeWords | null;
  /** Sequence number in the session's view. */
  seq: number;
  /** \Recent for this session. */
  recent: boolean;
  /** The message bytes, loaded on first use. */
  raw(): Promise<Buffer>;
}

/** The decoded text of every text/* leaf (and the headers of embedded messages), without recursion. */
function bodyText(raw: Buffer, root: MimeNode, out: string[]): void {
  const stack: MimeNode[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    if (node.children) for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
    else if (node.message) {
      out.push(decodeWords(raw.toString('utf8', node.message.start, node.message.bodyStart)));
      stack.push(node.message);
    } else if (node.contentType.value.toLowerCase().startsWith('text/')) out.push(decodePartBody(raw, node));
  }
}

const ymd = (d: Date): number => d.getUTCFullYear() * 10_000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate();

/** The day the message says it was sent (RFC 3501: the Date: field, disregarding time and zone); else its internal date. */
function sentDay(m: MessageMeta, words: EnvelopeWords | null): number {
  const v = words?.date;
  const d = v ? parseHeaderDate(v) : null;
  return d ? d.year * 10_000 + d.month * 100 + d.day : ymd(m.internalDate);
}

function compare(a: number, cmp: '<' | '=' | '>=', b: number): boolean {
  return cmp === '<' ? a < b : cmp === '=' ? a === b : a >= b;
}

const ADDRESS_FIELDS = new Set(['from', 'to', 'cc', 'bcc', 'sender', 'reply-to']);

/** Does a header field's value contain `needle` (lower case)? Decoded words, raw text and, for address fields, each address. */
function fieldMatches(key: string, value: string, needle: string): boolean {
  if (!needle) return true;
  if (decodeWords(value).toLowerCase().includes(needle) || value.toLowerCase().includes(needle)) return true;
  if (!ADDRESS_FIELDS.has(key)) return false;
  const stack = parseAddressList(value);
  for (const e of stack) {
    const list = 'group' in e ? e.group : [e];
    for (const a of list)
      if (a.address.toLowerCase().includes(needle) || decodeWords(a.name).toLowerCase().includes(needle))
        return true;
  }
  return false;
}

/**
 * What FROM, TO, CC, BCC and SUBJECT match against, made once from the
 * envelope the MDA parsed (no need to read the message) and kept per blob by
 * the service: the decoded subject, and each address and decoded display
 * name (group members and group names too), in lower case. null: no such
 * field.
 */
export interface EnvelopeWords {
  subject: string | null;
  from: string[] | null;
  to: string[] | null;
  cc: string[] | null;
  bcc: string[] | null;
  /** The Date: field as written, for SENTBEFORE/SENTON/SENTSINCE. */
  date: string | null;
}

/**
 * The service's words by blob: made, or still to be made from an envelope a
 * FETCH had at hand (made when a search first needs them, so a FETCH pays
 * nothing for them).
 */
export type WordsMemo = BlobMemo<EnvelopeWords | (() => EnvelopeWords)>;

/** The words of `blobId` from the memo (made now if they were left to make), or undefined. */
export function memoWords(memo: WordsMemo, blobId: string): EnvelopeWords | undefined {
  const w = memo.get(blobId);
  if (typeof w !== 'function') return w;
  const made = w();
  memo.set(blobId, made);
  return made;
}

export function envelopeWords(env: Envelope | null): EnvelopeWords {
  const words = (list: Envelope['from']): string[] | null => {
    if (list === null || list === undefined) return null;
    const out: string[] = [];
    for (const e of list) {
      // A group's name, then its members; or one address and its display name.
      if ('group' in e && e.name) out.push(decodeWords(e.name).toLowerCase());
      for (const a of 'group' in e ? e.group : [e]) {
        out.push(a.address.toLowerCase());
        if (a.name) out.push(decodeWords(a.name).toLowerCase());
      }
    }
    return out;
  };
  return {
    subject: env?.subject == null ? null : decodeWords(env.subject).toLowerCase(),
    from: words(env?.from ?? null),
    to: words(env?.to ?? null),
    cc: words(env?.cc ?? null),
    bcc: words(env?.bcc ?? null),
    date: env?.date ?? null,
  };
}

const ENVELOPE_FIELDS = new Set(['subject', 'from', 'to', 'cc', 'bcc']);

function envelopeMatches(w: EnvelopeWords, field: string, needle: string): boolean | null {
  if (!ENVELOPE_FIELDS.has(field)) return null;
  const v = w[field as 'subject' | 'from' | 'to' | 'cc' | 'bcc'];
  if (v === null) return false;
  if (!needle) return true;
  if (typeof v === 'string') return v.includes(needle);
  for (const x of v) if (x.includes(needle)) return true;
  return false;
}

/** Whether some key of the tree (AND, OR and NOT looked through, without recursion) is one `leaf` picks. */
function someKey(k: SearchKey, leaf: (x: SearchKey) => boolean): boolean {
  const stack = [k];
  while (stack.length) {
    const x = stack.pop()!;
    if (x.op === 'and' || x.op === 'or') stack.push(...x.keys);
    else if (x.op === 'not') stack.push(x.key);
    else if (leaf(x)) return true;
  }
  return false;
}

/**
 * Whether the search reads no more of a message than its envelope words
 * (FROM, TO, CC, BCC, SUBJECT, the sent date): then the service's cache of
 * them answers, without the message's structure.
 */
export const envelopeOnly = (k: SearchKey): boolean =>
  !someKey(
    k,
    (x) =>
      x.op === 'body' ||
      x.op === 'text' ||
      x.op === 'threadid' ||
      (x.op === 'header' && !ENVELOPE_FIELDS.has(x.field)),
  );

/** Does evaluating `k` read a message's structure or bytes (so the search must list full messages)? */
export const needsStructure = (k: SearchKey): boolean =>
  someKey(
    k,
    (x) =>
      x.op === 'header' ||
      x.op === 'body' ||
      x.op === 'text' ||
      x.op === 'threadid' ||
      (x.op === 'date' && x.sent),
  );

/** Cheap keys first: an AND stops at its first false, before any key that reads the bytes. */
const COSTLY = new Set(['header', 'body', 'text', 'threadid']);
const costly = (k: SearchKey): boolean =>
  COSTLY.has(k.op) ||
  ((k.op === 'and' || k.op === 'or') && k.keys.some(costly)) ||
  (k.op === 'not' && costly(k.key));

export class Evaluator {
  private readonly key: SearchKey;
  /** Message UIDs the sequence-set and UID keys name, resolved once per search. */
  private readonly sets: Map<SearchKey, Set<number>>;

  /** When the search began (ms): OLDER and YOUNGER count back from it, the same for every message. */
  private readonly now: number;

  constructor(key: SearchKey, sets: Map<SearchKey, Set<number>>, now = Date.now()) {
    this.key = order(key);
    this.sets = sets;
    this.now = now;
  }

  matches(s: SearchSubject): Promise<boolean> | boolean {
    return this.eval(this.key, s);
  }

  private async evalAsync(keys: SearchKey[], s: SearchSubject, all: boolean): Promise<boolean> {
    for (const k of keys) if ((await this.eval(k, s)) !== all) return !all;
    return all;
  }

  private eval(k: SearchKey, s: SearchSubject): Promise<boolean> | boolean {
    const m = s.message;
    // Keys that read the structure run only in searches that were given it (envelopeOnly, needsStructure).
    const root = s.root!;
    switch (k.op) {
      case 'and':
      case 'or': {
        const all = k.op === 'and';
        for (let i = 0; i < k.keys.length; i++) {
          const r = this.eval(k.keys[i]!, s);
          if (typeof r !== 'boolean')
            return r.then((v) => (v !== all ? !all : this.evalAsync(k.keys.slice(i + 1), s, all)));
          if (r !== all) return !all;
        }
        return all;
      }
      case 'not': {
        const r = this.eval(k.key, s);
        return typeof r === 'boolean' ? !r : r.then((v) => !v);
      }
      case 'all':
        return true;
      case 'flag':
        return hasFlag(m.flags, k.flag) === k.set;
      case 'recent':
        return s.recent;
      case 'new':
        return s.recent && !hasFlag(m.flags, '\\Seen');
      case 'old':
        return !s.recent;
      case 'seq':
      case 'uid':
        return this.sets.get(k)?.has(m.uid) ?? false;
      case 'larger':
        return m.size > k.size;
      case 'smaller':
        return m.size < k.size;
      case 'date':
        // A message stored before save dates were kept is taken as saved when it arrived.
        return compare(
          k.sent ? sentDay(m, s.words) : ymd(k.saved ? (m.savedAt ?? m.internalDate) : m.internalDate),
          k.cmp,
          k.day,
        );
      case 'modseq':
        return m.modseq >= k.modseq;
      case 'emailid':
        return emailId(m.blobId) === k.id;
      case 'threadid':
        return s.raw().then((raw) => threadId(raw.toString('latin1', root.start, root.bodyStart)) === k.id);
      case 'within': {
        // RFC 5032 §3: OLDER n is an internal date at least n seconds back, YOUNGER n less than that.
        const age = this.now - m.internalDate.getTime();
        return k.older ? age >= k.seconds * 1000 : age < k.seconds * 1000;
      }
      case 'header': {
        const quick = s.words ? envelopeMatches(s.words, k.field, k.value.toLowerCase()) : null;
        if (quick !== null) return quick;
        return s.raw().then((raw) => {
          const needle = k.value.toLowerCase();
          for (const f of parseHeaderBlock(raw.toString('utf8', root.start, root.bodyStart)))
            if (f.key === k.field && fieldMatches(f.key, f.value, needle)) return true;
          return false;
        });
      }
      case 'body':
      case 'text':
        return s.raw().then((raw) => {
          const parts: string[] = [];
          if (k.op === 'text') parts.push(decodeWords(raw.toString('utf8', root.start, root.bodyStart)));
          bodyText(raw, root, parts);
          const needle = k.value.toLowerCase();
          return parts.some((p) => p.toLowerCase().includes(needle));
        });
    }
  }
}

/** Puts the keys of every AND and OR cheap-first (the depth is bounded by the parser). */
function order(k: SearchKey): SearchKey {
  if (k.op === 'and' || k.op === 'or') {
    const keys = k.keys.map(order);
    return { op: k.op, keys: [...keys.filter((x) => !costly(x)), ...keys.filter(costly)] };
  }
  if (k.op === 'not') return { op: 'not', key: order(k.key) };
  return k;
}
