/**
 * SEARCH criteria (RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ) into a tree.
 *
 * Parsed with an explicit stack, not recursion, and simplified as it is
 * built: `OR a OR b c` is one OR of three keys, nested parentheses of one key
 * are that key, `NOT NOT x` is x. So 3,000 ORs in a row make a flat list, and
 * what remains deeper than MAX_DEPTH is refused with NO [LIMIT] rather than
 * evaluated.
 */
import { bad, no } from '../errors.ts';
import type { Cursor } from './cursor.ts';
import { parseDate } from './encode.ts';
import { type Range, readSequenceSet } from './sequence.ts';

export type SearchKey =
  | { op: 'and'; keys: SearchKey[] }
  | { op: 'or'; keys: SearchKey[] }
  | { op: 'not'; key: SearchKey }
  | { op: 'all' }
  | { op: 'flag'; flag: string; set: boolean }
  | { op: 'recent' | 'new' | 'old' }
  | { op: 'seq' | 'uid'; ranges: Range[] }
  /** Address and text fields of the header: FROM, TO, CC, BCC, SUBJECT, HEADER name. */
  | { op: 'header'; field: string; value: string }
  | { op: 'body' | 'text'; value: string }
  | { op: 'larger' | 'smaller'; size: number }
  /**
   * BEFORE/ON/SINCE (internal date), SENTBEFORE/SENTON/SENTSINCE (Date: as written) and
   * SAVEDBEFORE/SAVEDON/SAVEDSINCE (the save date, RFC 8514 §4.2): yyyymmdd.
   */
  | { op: 'date'; sent: boolean; saved?: boolean; cmp: '<' | '=' | '>='; day: number }
  | { op: 'modseq'; modseq: number }
  /** OBJECTID (RFC 8474 §6): EMAILID and THREADID. */
  | { op: 'emailid' | 'threadid'; id: string }
  /** WITHIN (RFC 5032): the internal date more (OLDER) or less (YOUNGER) than `seconds` ago. */
  | { op: 'within'; older: boolean; seconds: number };

export const MAX_DEPTH = 64;

const FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true],
  DELETED: ['\\Deleted', true],
  DRAFT: ['\\Draft', true],
  FLAGGED: ['\\Flagged', true],
  SEEN: ['\\Seen', true],
  UNANSWERED: ['\\Answered', false],
  UNDELETED: ['\\Deleted', false],
  UNDRAFT: ['\\Draft', false],
  UNFLAGGED: ['\\Flagged', false],
  UNSEEN: ['\\Seen', false],
};
const HEADER_KEYS: Record<string, string> = {
  FROM: 'from',
  TO: 'to',
  CC: 'cc',
  BCC: 'bcc',
  SUBJECT: 'subject',
};
const DATE_KEYS: Record<string, [boolean, '<' | '=' | '>=']> = {
  BEFORE: [false, '<'],
  ON: [false, '='],
  SINCE: [false, '>='],
  SENTBEFORE: [true, '<'],
  SENTON: [true, '='],
  SENTSINCE: [true, '>='],
  SAVEDBEFORE: [false, '<'],
  SAVEDON: [false, '='],
  SAVEDSINCE: [false, '>='],
};

export interface ParsedSearch {
  key: SearchKey;
  charset: string | null;
  /** MODSEQ was used: the response ends with `(MODSEQ n)` (RFC 7162 §3.1.5). */
  usesModseq: boolean;
}

type Frame =
  | { kind: 'and'; keys: SearchKey[]; paren: boolean }
  | { kind: 'or'; keys: SearchKey[] }
  | { kind: 'not' };

/** One key that has no sub-keys, the cursor at its first character. `text(raw)` decodes strings. */
function simpleKey(c: Cursor, text: (raw: string) => string, onModseq: () => void): SearchKey {
  const ch = c.peek();
  if (ch === '*' || ch === '$' || (ch >= '0' && ch <= '9')) return { op: 'seq', ranges: readSequenceSet(c) };
  const word = c.word();
  const flag = FLAG_KEYS[word];
  if (flag) return { op: 'flag', flag: flag[0], set: flag[1] };
  const field = HEADER_KEYS[word];
  if (field) {
    c.space();
    return { op: 'header', field, value: text(c.astring()) };
  }
  const date = DATE_KEYS[word];
  if (date) {
    c.space();
    const raw = c.peek() === '"' ? c.string() : c.atom();
    const day = parseDate(raw);
    if (day === null) throw bad(`Invalid date "${raw}"`);
    return {
      op: 'date',
      sent: date[0],
      cmp: date[1],
      day,
      ...(word.startsWith('SAVED') ? { saved: true } : {}),
    };
  }
  switch (word) {
    case 'ALL':
    // RFC 8514 §4.2: the messages of a mailbox that keeps save dates, which every mailbox here does.
    case 'SAVEDATESUPPORTED':
      return { op: 'all' };
    case 'NEW':
      return { op: 'new' };
    case 'OLD':
      return { op: 'old' };
    case 'RECENT':
      return { op: 'recent' };
    case 'KEYWORD':
    case 'UNKEYWORD': {
      c.space();
      return { op: 'flag', flag: c.atom(), set: word === 'KEYWORD' };
    }
    case 'HEADER': {
      c.space();
      const name = text(c.astring()).toLowerCase();
      c.space();
      return { op: 'header', field: name, value: text(c.astring()) };
    }
    case 'BODY':
    case 'TEXT': {
      c.space();
      return { op: word === 'BODY' ? 'body' : 'text', value: text(c.astring()) };
    }
    case 'LARGER':
    case 'SMALLER': {
      c.space();
      return { op: word === 'LARGER' ? 'larger' : 'smaller', size: c.number() };
    }
    case 'UID': {
      c.space();
      return { op: 'uid', ranges: readSequenceSet(c) };
    }
    case 'EMAILID':
    case 'THREADID': {
      c.space();
      const id = c.atom();
      if (!/^[A-Za-z0-9_-]{1,255}$/.test(id)) throw bad('Invalid object id');
      return { op: word === 'EMAILID' ? 'emailid' : 'threadid', id };
    }
    case 'OLDER':
    case 'YOUNGER': {
      // RFC 5032 §4: interval = 1*DIGIT, in seconds; a non-zero number.
      c.space();
      return { op: 'within', older: word === 'OLDER', seconds: c.nzNumber() };
    }
    case 'MODSEQ': {
      // MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 §3.1.5); the entry is accepted and ignored.
      c.space();
      if (c.peek() === '"' || c.peek() === '{') {
        c.string();
        c.space();
        const type = c.word();
        if (type !== 'PRIV' && type !== 'SHARED' && type !== 'ALL') throw bad('Invalid MODSEQ entry type');
        c.space();
      }
      onModseq();
      return { op: 'modseq', modseq: c.modseq() };
    }
    default:
      throw bad(`Unknown search key ${word.slice(0, 40)}`);
  }
}

/** Joins keys under one operator, lifting keys of the same operator (flattening). */
function join(op: 'and' | 'or', keys: SearchKey[]): SearchKey {
  const flat: SearchKey[] = [];
  for (const k of keys) {
    if (k.op === op) flat.push(...k.keys);
    else flat.push(k);
  }
  return flat.length === 1 ? flat[0]! : { op, keys: flat };
}

function negate(k: SearchKey): SearchKey {
  return k.op === 'not' ? k.key : { op: 'not', key: k };
}

/** Depth of a tree, measured without recursion. */
function depthOf(root: SearchKey): number {
  let max = 0;
  const stack: Array<[SearchKey, number]> = [[root, 1]];
  while (stack.length) {
    const [k, d] = stack.pop()!;
    if (d > max) max = d;
    if (k.op === 'and' || k.op === 'or') for (const x of k.keys) stack.push([x, d + 1]);
    else if (k.op === 'not') stack.push([k.key, d + 1]);
  }
  return max;
}

/**
 * Parses `[CHARSET name] key *(SP key)` up to the end of the command.
 * `decode(raw, charset)` turns a string argument into text.
 */
export function parseSearch(
  c: Cursor,
  decode: (raw: string, charset: string | null) => string,
): ParsedSearch {
  let charset: string | null = null;
  let usesModseq = false;
  if (c.peekWord() === 'CHARSET') {
    c.word();
    c.space();
    charset = c.astring().toUpperCase();
    c.space();
  }
  const text = (raw: string) => decode(raw, charset);
  const stack: Frame[] = [{ kind: 'and', keys: [], paren: false }];
  for (;;) {
    let node: SearchKey | null = null;
    if (c.take('(')) {
      stack.push({ kind: 'and', keys: [], paren: true });
    } else if (c.take(')')) {
      const top = stack[stack.length - 1]!;
      if (top.kind !== 'and' || !top.paren) throw bad('Unbalanced parenthesis or missing operand');
      if (top.keys.length === 0) throw bad('Empty parentheses');
      stack.pop();
      node = join('and', top.keys);
    } else {
      const word = c.peekWord();
      if (word === 'OR') {
        c.word();
        stack.push({ kind: 'or', keys: [] });
      } else if (word === 'NOT') {
        c.word();
        stack.push({ kind: 'not' });
      } else {
        node = simpleKey(c, text, () => {
          usesModseq = true;
        });
      }
    }
    // Hand the finished key to the operators waiting for it.
    while (node) {
      const top = stack[stack.length - 1]!;
      if (top.kind === 'not') {
        stack.pop();
        node = negate(node);
      } else if (top.kind === 'or') {
        top.keys.push(node);
        if (top.keys.length < 2) node = null;
        else {
          stack.pop();
          node = join('or', top.keys);
        }
      } else {
        top.keys.push(node);
        node = null;
      }
    }
    if (c.atEnd()) break;
    // Keys are separated by one space; `(` and `)` need none inside.
    if (c.peek() === ')') continue;
    const last = stack[stack.length - 1]!;
    if (c.peek() !== ' ' && last.kind === 'and' && last.paren && last.keys.length === 0) continue;
    c.space();
  }
  if (stack.length !== 1) throw bad('Incomplete search: an operator lacks its keys or a parenthesis is open');
  const top = stack[0] as Extract<Frame, { kind: 'and' }>;
  if (top.keys.length === 0) throw bad('Missing search key');
  const key = join('and', top.keys);
  if (depthOf(key) > MAX_DEPTH) throw no('LIMIT', `Search nested deeper than ${MAX_DEPTH} levels`);
  return { key, charset, usesModseq };
}
