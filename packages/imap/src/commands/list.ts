/**
 * LIST and LSUB (RFC 3501 §6.3.8, §6.3.9) with CHILDREN (RFC 3348) and
 * SPECIAL-USE (RFC 6154) attributes, LIST-EXTENDED (RFC 5258: selection
 * options SUBSCRIBED, REMOTE, RECURSIVEMATCH and SPECIAL-USE, several
 * patterns, return options SUBSCRIBED, CHILDREN, SPECIAL-USE) and
 * LIST-STATUS (RFC 5819).
 *
 * Names are matched with protocol/pattern.ts (no regular expressions built
 * from the pattern). Levels of the hierarchy that are not mailboxes (a
 * parent deleted while its children stay) are listed `\Noselect` when the
 * pattern matches them; LSUB does the same for the unsubscribed parents of
 * subscribed names when the pattern ends in `%` (§6.3.9).
 */
import { type Mailbox, parentNames } from '@mailwerk/store';
import { bad } from '../errors.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { mailboxName } from '../protocol/encode.ts';
import { compilePattern } from '../protocol/pattern.ts';
import type { Session } from '../session.ts';
import { readStatusItems, writeStatus } from './status.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { decodeName, user } from './util.ts';

/** `inbox`, `Inbox/x` … name INBOX in any case (RFC 3501 §5.1). */
function canonicalInbox(name: string): string {
  return /^inbox(\/|$)/i.test(name) ? `INBOX${name.slice(5)}` : name;
}

const SELECTION = new Set(['SUBSCRIBED', 'REMOTE', 'RECURSIVEMATCH', 'SPECIAL-USE']);
const RETURNS = new Set(['SUBSCRIBED', 'CHILDREN', 'SPECIAL-USE']);

/** What LIST was asked (RFC 5258 §6 `list`): selection options, patterns, return options. */
interface ListRequest {
  extended: boolean;
  selection: Set<string>;
  ref: string;
  patterns: string[];
  returns: Set<string>;
  /** RETURN (STATUS (…)) of RFC 5819. */
  status: string[] | null;
}

function readList(c: Cursor, lsub: boolean): ListRequest {
  const r: ListRequest = {
    extended: false,
    selection: new Set(),
    ref: '',
    patterns: [],
    returns: new Set(),
    status: null,
  };
  if (!lsub && c.peek() === '(') {
    r.extended = true;
    c.list(() => {
      const o = c.word();
      if (!SELECTION.has(o)) throw bad(`Unknown LIST selection option ${o.slice(0, 32)}`);
      r.selection.add(o);
    });
    c.space();
    // RFC 5258 §3.1: RECURSIVEMATCH only modifies another selection option (REMOTE does not count).
    if (
      r.selection.has('RECURSIVEMATCH') &&
      !r.selection.has('SUBSCRIBED') &&
      !r.selection.has('SPECIAL-USE')
    )
      throw bad('RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE');
  }
  r.ref = c.astring();
  c.space();
  if (!lsub && c.peek() === '(') {
    r.extended = true;
    c.list(() => {
      if (r.patterns.length >= 100) throw bad('Too many patterns');
      r.patterns.push(c.listMailbox());
    });
    if (r.patterns.length === 0) throw bad('No pattern');
  } else r.patterns.push(c.listMailbox());
  if (!lsub && !c.atEnd()) {
    c.space();
    if (c.word() !== 'RETURN') throw bad('Expected RETURN');
    c.space();
    r.extended = true;
    c.list(() => {
      const o = c.word();
      if (o === 'STATUS') {
        c.space();
        r.status = readStatusItems(c);
      } else if (RETURNS.has(o)) r.returns.add(o);
      else throw bad(`Unknown LIST return option ${o.slice(0, 32)}`);
    });
  }
  c.end();
  return r;
}

async function list(s: Session, c: Cursor, lsub: boolean): Promise<string> {
  const req = readList(c, lsub);
  // As a STATUS asking for it (RFC 7162 §3.1), RETURN (STATUS (HIGHESTMODSEQ)) turns CONDSTORE on.
  if (req.status?.includes('HIGHESTMODSEQ')) s.condstore = true;
  const kind = lsub ? 'LSUB' : 'LIST';
  if (req.patterns.every((p) => p === '')) {
    // RFC 3501 §6.3.8: an empty pattern asks for the delimiter and the root.
    s.untagged(`${kind} (\\Noselect) "/" ""`);
    return `${kind} completed`;
  }
  const ref = decodeName(s, req.ref);
  // A reference or pattern that is not a valid encoding names nothing.
  if (ref === null) return `${kind} completed`;
  const matchers = req.patterns.flatMap((p) => {
    const pat = p === '' ? null : decodeName(s, p);
    return pat === null
      ? []
      : [{ match: compilePattern(canonicalInbox(ref + pat)), endsInPercent: pat.endsWith('%') }];
  });
  const matches = (name: string) => matchers.some((m) => m.match(name));
  const boxes = await s.ctx.store.listMailboxes(user(s).id);
  const byName = new Map<string, Mailbox>(boxes.map((b) => [b.name, b]));
  const hasChildren = new Set<string>();
  for (const b of boxes) for (const p of parentNames(b.name)) hasChildren.add(p);
  // What the selection options pick (RFC 5258 §3.1, RFC 6154 §5.1); LSUB is SUBSCRIBED with its own rules.
  const subscribedOnly = lsub || req.selection.has('SUBSCRIBED');
  const picked = (b: Mailbox) =>
    (!subscribedOnly || b.subscribed) && (!req.selection.has('SPECIAL-USE') || Boolean(b.specialUse));
  const returnSubscribed = req.returns.has('SUBSCRIBED') || req.selection.has('SUBSCRIBED');
  // Names subscribed to that have no mailbox (RFC 3501 §6.3.6 keeps them): listed when subscriptions are.
  const kept = new Set(
    subscribedOnly && !req.selection.has('SPECIAL-USE')
      ? await s.ctx.store.listKeptSubscriptions(user(s).id)
      : [],
  );
  const listed = [...boxes.filter(picked).map((b) => b.name), ...kept];
  // Candidates: the mailboxes picked, and the levels above them that are not mailboxes: for LSUB as
  // \Noselect when the pattern ends in `%` (§6.3.9), for LIST when nothing filters.
  const names = new Set<string>(listed);
  const childInfo = new Set<string>();
  // CHILDINFO is defined for SUBSCRIBED (RFC 5258 §3.5); with SPECIAL-USE alone RECURSIVEMATCH adds nothing.
  const recursive = req.selection.has('RECURSIVEMATCH') && req.selection.has('SUBSCRIBED');
  const filtering = subscribedOnly || req.selection.has('SPECIAL-USE');
  const percent = matchers.some((m) => m.endsInPercent);
  for (const name of listed) {
    // RFC 5258 §3.5: a name the pattern matches gets CHILDINFO when a mailbox below it is picked but not
    // matched itself (and is listed for it, picked or not).
    const below = recursive && !matches(name);
    for (const p of parentNames(name)) {
      if (below) childInfo.add(p);
      if (!names.has(p) && (lsub ? percent : !filtering && !byName.has(p))) names.add(p);
    }
  }
  for (const p of childInfo) names.add(p);
  const sorted = [...names].sort((a, b) =>
    a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );
  for (const name of sorted) {
    if (!matches(name)) continue;
    const box = byName.get(name);
    const attrs: string[] = [];
    let extra = '';
    if (lsub) {
      if (!box?.subscribed) attrs.push('\\Noselect');
    } else {
      // RFC 5258 §3: \NonExistent (it implies \Noselect) for a level that is no mailbox, in extended LIST.
      if (!box) attrs.push(req.extended ? '\\NonExistent' : '\\Noselect');
      attrs.push(hasChildren.has(name) ? '\\HasChildren' : '\\HasNoChildren');
      if (box?.specialUse) attrs.push(box.specialUse);
      if (returnSubscribed && (box?.subscribed || kept.has(name))) attrs.push('\\Subscribed');
      if (childInfo.has(name)) extra = ' ("CHILDINFO" ("SUBSCRIBED"))';
    }
    s.write(`* ${kind} (${attrs.join(' ')}) "/" `, mailboxName(name, s.utf8), `${extra}\r\n`);
    // RFC 5819: the STATUS of each mailbox that can be selected, after its LIST line.
    if (req.status && box) await writeStatus(s, box, req.status);
    if (s.full) await s.flush();
  }
  return `${kind} completed`;
}

export const LIST: Command = { states: AUTHENTICATED, run: (s, c) => list(s, c, false) };
export const LSUB: Command = { states: AUTHENTICATED, run: (s, c) => list(s, c, true) };
