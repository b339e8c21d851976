/** What several commands share: the signed-in account, the selected mailbox, mailbox names from the wire. */
import type { MessageStructure } from '@mailwerk/mime';
import { type Message, normalizeMailboxName, readStructure } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import { decodeMutf7 } from '../mutf7.ts';
import { type Cursor, utf8 } from '../protocol/cursor.ts';
import { isSaved, type Range } from '../protocol/sequence.ts';
import type { Selected } from '../selected.ts';
import type { Session, User } from '../session.ts';

export function user(s: Session): User {
  if (s.state.kind !== 'authenticated' && s.state.kind !== 'selected') throw bad('Sign in first');
  return s.state.user;
}

export function selected(s: Session): Selected {
  if (s.state.kind !== 'selected') throw bad('No mailbox selected');
  return s.state.mailbox;
}

/**
 * A mailbox name as the client wrote it, decoded: UTF-8 after ENABLE
 * UTF8=ACCEPT (RFC 6855), otherwise modified UTF-7 (RFC 3501 §5.1.3), which
 * is decoded strictly so one mailbox never has two spellings. null: not a
 * valid encoding.
 */
export function decodeName(s: Session, raw: string): string | null {
  try {
    return s.utf8 ? utf8(raw) : decodeMutf7(raw);
  } catch {
    return null;
  }
}

/** The store's spelling of a name (INBOX in upper case), or null when the store would refuse it. */
export function validName(name: string | null): string | null {
  if (name === null) return null;
  try {
    return normalizeMailboxName(name);
  } catch {
    return null;
  }
}

/** Reads a mailbox argument; null when it cannot name a mailbox (the caller answers NONEXISTENT or CANNOT). */
export function readMailbox(s: Session, c: Cursor): string | null {
  return validName(decodeName(s, c.astring()));
}

/** A name a client may create: not starting with `/` or `~` (which would read as paths elsewhere). */
export function creatableName(s: Session, raw: string): string {
  let name = decodeName(s, raw);
  // RFC 3501 §6.3.3: a trailing delimiter declares the intent to create children.
  if (name?.endsWith('/')) name = name.slice(0, -1);
  if (name === null || name.startsWith('/') || name.startsWith('~'))
    throw no('CANNOT', 'Invalid mailbox name: it may not start with "/" or "~"');
  const valid = validName(name);
  if (valid === null) throw no('CANNOT', 'Invalid mailbox name');
  return valid;
}

/** Looks up a mailbox of the signed-in account by name; NO [NONEXISTENT] (or the given code) when there is none. */
export async function mailbox(s: Session, name: string | null, missing = 'NONEXISTENT') {
  const mb = name === null ? null : await s.ctx.store.getMailbox(user(s).id, name);
  if (!mb)
    throw no(missing, missing === 'TRYCREATE' ? 'No such mailbox; create it first' : 'No such mailbox');
  return mb;
}

/** The UIDs a sequence set names in the selected mailbox (sequence numbers, or UIDs for UID commands). */
/**
 * The UIDs a sequence set names in the session's view. `$` (RFC 5182) is the saved result, less what
 * has been expunged since (§2.1), whether the command is a UID one or not. `lenient`: sequence numbers
 * past the end name nothing instead of being an error (SEARCH).
 */
export function resolveSet(sel: Selected, ranges: Range[], uid: boolean, lenient = false): number[] {
  if (isSaved(ranges)) return sel.saved.filter((u) => sel.uids.has(u));
  return uid ? sel.uids.byUid(ranges) : sel.uids.bySeq(ranges, lenient);
}

/** Messages whose damaged structure was reported already (one log line each, bounded). */
const reported = new Set<string>();

/** A message's structure; a damaged one is parsed again from the bytes, with one log line. */
export function structureOf(s: Session, m: Message): Promise<MessageStructure> {
  return readStructure(s.ctx.store, m, (msg, err) => {
    if (reported.has(msg.id)) return;
    if (reported.size > 10_000) reported.clear();
    reported.add(msg.id);
    s.ctx.log('warn', 'stored message structure damaged; read again from the message', {
      ...s.fields(),
      message: msg.id,
      uid: msg.uid,
      error: err.message,
    });
  });
}
