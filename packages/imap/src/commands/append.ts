/**
 * APPEND (RFC 3501 §6.3.11) and MULTIAPPEND (RFC 3502: several messages, all
 * or none), with APPENDUID (RFC 4315), APPENDLIMIT (RFC 7889,
 * checked before the literal is read: see Session.literalDecision) and the
 * UTF8 data item of RFC 6855 §4. A message appended to the selected mailbox
 * is announced (`* n EXISTS`) before the tagged OK.
 */
import { parseMessage } from '@mailwerk/mime';
import { contentId, normalizeFlags } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { parseDateTime } from '../protocol/encode.ts';
import { formatUids } from '../protocol/sequence.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { mailbox, readMailbox, user } from './util.ts';

/** One message of an APPEND: its flags, date and bytes. */
interface Appended {
  flags: string[];
  date: Date | null;
  data: Buffer;
}

/** `[flag-list SP] [date-time SP] literal` (or RFC 6855's `UTF8 (literal8)`). */
function readMessage(c: Cursor): Appended {
  let flags: string[] = [];
  let date: Date | null = null;
  if (c.peek() === '(') {
    flags = c.flags();
    c.space();
  }
  if (c.peek() === '"') {
    const raw = c.string();
    date = parseDateTime(raw);
    if (!date) throw bad(`Invalid date-time "${raw.slice(0, 40)}"`);
    c.space();
  }
  let data: Buffer;
  if (c.peek() === '{') data = c.literalBytes();
  else if (c.peekWord() === 'UTF8') {
    // RFC 6855 §4: UTF8 (literal8), a message with UTF-8 headers.
    c.word();
    c.space();
    c.expect('(');
    data = c.literalBytes();
    c.expect(')');
  } else throw bad('Expected the message as a literal');
  if (data.length === 0) throw no('CANNOT', 'Empty messages are not stored');
  try {
    flags = normalizeFlags(flags.filter((f) => f.toLowerCase() !== '\\recent'));
  } catch {
    throw no('CANNOT', 'Invalid flag');
  }
  return { flags, date, data };
}

export const APPEND: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const name = readMailbox(s, c);
    // MULTIAPPEND (RFC 3502): one message or more; all of them are checked before any is stored.
    const messages: Appended[] = [];
    do {
      c.space();
      messages.push(readMessage(c));
    } while (!c.atEnd());
    c.end();
    const mb = await mailbox(s, name, 'TRYCREATE');
    const accountId = user(s).id;
    const stored: Array<{ uid: number; modseq: number }> = [];
    try {
      for (const { flags, date, data } of messages)
        stored.push(
          await s.ctx.store.appendMessage({
            accountId,
            mailboxId: mb.id,
            blobId: contentId(data),
            data,
            size: data.length,
            structure: parseMessage(data),
            flags,
            ...(date ? { internalDate: date } : {}),
          }),
        );
    } catch (err) {
      // RFC 3502 §6.3.11: all or none. What was stored of this command goes again (over quota at the
      // third message, say), and the reason is the answer.
      if (stored.length)
        await s.ctx.store.expungeMessages(
          mb.id,
          stored.map((m) => m.uid),
        );
      throw err;
    }
    for (const m of stored)
      s.ctx.publish({ type: 'message.new', accountId, mailboxId: mb.id, uid: m.uid, modseq: m.modseq });
    if (s.state.kind === 'selected' && s.state.mailbox.mailbox.id === mb.id) s.state.mailbox.dirty = true;
    // RFC 4315 §3 with RFC 3502: the UIDs in the order of the messages.
    return `[APPENDUID ${mb.uidValidity} ${formatUids(stored.map((m) => m.uid))}] APPEND completed`;
  },
};
