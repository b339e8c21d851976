/**
 * LIST and LSUB (RFC 3501 §6.3.8, §6.3.9) with CHILDREN (RFC 3348) and
 * SPECIAL-USE (RFC 6154) attributes.
 *
 * Names are matched with protocol/pattern.ts (no regular expressions built
 * from the pattern). Levels of the hierarchy that are not mailboxes (a
 * parent deleted while its children stay) are listed `\Noselect` when the
 * pattern matches them; LSUB does the same for the unsubscribed parents of
 * subscribed names when the pattern ends in `%` (§6.3.9).
 */
import { type Mailbox, parentNames } from '@mailwerk/store';
import { bad } from '../errors.ts';
import { mailboxName } from '../protocol/encode.ts';
import { compilePattern } from '../protocol/pattern.ts';
import type { Session } from '../session.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { decodeName, user } from './util.ts';

/** `inbox`, `Inbox/x` … name INBOX in any case (RFC 3501 §5.1). */
function canonicalInbox(name: string): string {
  return /^inbox(\/|$)/i.test(name) ? `INBOX${name.slice(5)}` : name;
}

function line(s: Session, kind: string, attrs: string[], name: string): void {
  s.write(`* ${kind} (${attrs.join(' ')}) "/" `, mailboxName(name, s.utf8), '\r\n');
}

async function list(s: Session, c: import('../protocol/cursor.ts').Cursor, lsub: boolean): Promise<string> {
  if (c.peek() === '(') throw bad('LIST-EXTENDED is not offered');
  const refRaw = c.astring();
  c.space();
  const patRaw = c.listMailbox();
  c.end();
  const kind = lsub ? 'LSUB' : 'LIST';
  if (patRaw === '') {
    // RFC 3501 §6.3.8: an empty pattern asks for the delimiter and the root.
    s.untagged(`${kind} (\\Noselect) "/" ""`);
    return `${kind} completed`;
  }
  const ref = decodeName(s, refRaw);
  const pat = decodeName(s, patRaw);
  // A reference or pattern that is not a valid encoding names nothing.
  if (ref === null || pat === null) return `${kind} completed`;
  const match = compilePattern(canonicalInbox(ref + pat));
  const boxes = await s.ctx.store.listMailboxes(user(s).id);
  const byName = new Map<string, Mailbox>(boxes.map((b) => [b.name, b]));
  const hasChildren = new Set<string>();
  for (const b of boxes) for (const p of parentNames(b.name)) hasChildren.add(p);
  const listed = lsub ? boxes.filter((b) => b.subscribed) : boxes;
  // Candidates: the mailboxes, and the levels above them that are not mailboxes (or not subscribed, for LSUB).
  const names = new Set<string>(listed.map((b) => b.name));
  const endsInPercent = pat.endsWith('%');
  for (const b of listed)
    for (const p of parentNames(b.name)) if (!names.has(p) && (!lsub || endsInPercent)) names.add(p);
  const sorted = [...names].sort((a, b) =>
    a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );
  for (const name of sorted) {
    if (!match(name)) continue;
    const box = byName.get(name);
    const shown = lsub ? box?.subscribed === true : box !== undefined;
    const attrs: string[] = [];
    if (!shown) attrs.push('\\Noselect');
    if (!lsub) {
      attrs.push(hasChildren.has(name) ? '\\HasChildren' : '\\HasNoChildren');
      if (box?.specialUse) attrs.push(box.specialUse);
    }
    line(s, kind, attrs, name);
    if (s.full) await s.flush();
  }
  return `${kind} completed`;
}

export const LIST: Command = { states: AUTHENTICATED, run: (s, c) => list(s, c, false) };
export const LSUB: Command = { states: AUTHENTICATED, run: (s, c) => list(s, c, true) };
