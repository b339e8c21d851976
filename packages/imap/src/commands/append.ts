/**
 * APPEND (RFC 3501 §6.3.11) and MULTIAPPEND (RFC 3502: several messages, all
 * or none), with APPENDUID (RFC 4315), APPENDLIMIT (RFC 7889,
 * checked before the literal is read: see Session.literalDecision), the
 * UTF8 data item of RFC 6855 §4 and CATENATE (RFC 4469: a message made of
 * literals and of messages or parts already in the user's mailboxes, named
 * by IMAP URLs). A message appended to the selected mailbox is announced
 * (`* n EXISTS`) before the tagged OK.
 */
import { parseMessage } from '@mailwerk/mime';
import { normalizeFlags } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import { partial, sectionBytes } from '../fetch-data.ts';
import { type MessageUrl, parseMessageUrl, UrlError } from '../imap-url.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { parseDateTime } from '../protocol/encode.ts';
import { formatUids } from '../protocol/sequence.ts';
import type { Session } from '../session.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { mailbox, readMailbox, structureOf, user } from './util.ts';

/** One message of an APPEND: its flags, date and bytes (or, with CATENATE, its parts: bytes and URLs). */
interface Appended {
  flags: string[];
  date: Date | null;
  parts: Array<Buffer | { url: string }>;
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
  const parts: Appended['parts'] = [];
  if (c.peek() === '{') parts.push(c.literalBytes());
  else if (c.peekWord() === 'UTF8') {
    // RFC 6855 §4: UTF8 (literal8), a message with UTF-8 headers.
    c.word();
    c.space();
    c.expect('(');
    parts.push(c.literalBytes());
    c.expect(')');
  } else if (c.peekWord() === 'CATENATE') {
    // RFC 4469 §5: CATENATE (TEXT literal / URL astring …), at least one part.
    c.word();
    c.space();
    c.list(() => {
      const kind = c.word();
      c.space();
      if (kind === 'TEXT') parts.push(c.literalBytes());
      else if (kind === 'URL') parts.push({ url: c.astring() });
      else throw bad(`Unknown CATENATE part ${kind.slice(0, 20)}`);
    });
    if (parts.length === 0) throw bad('CATENATE needs at least one part');
  } else throw bad('Expected the message as a literal');
  try {
    flags = normalizeFlags(flags.filter((f) => f.toLowerCase() !== '\\recent'));
  } catch {
    throw no('CANNOT', 'Invalid flag');
  }
  return { flags, date, parts };
}

/** A CATENATE URL's text as a BADURL response code may carry it (RFC 4469 §6: no "]", no line breaks). */
const urlText = (url: string) => url.replace(/[\]\r\n\0]/g, '').slice(0, 200);

/**
 * The bytes of a message from its parts: each URL read from the user's mailboxes (RFC 4469 §5), whole
 * or the part it names; NO [BADURL] for one that names nothing, NO [TOOBIG] past the message limit.
 */
async function assemble(s: Session, m: Appended): Promise<Buffer> {
  const out: Buffer[] = [];
  let size = 0;
  for (const part of m.parts) {
    let bytes: Buffer;
    if (Buffer.isBuffer(part)) bytes = part;
    else {
      const badUrl = (why: string) => no(`BADURL ${urlText(part.url)}`, `The URL names ${why}`);
      let url: MessageUrl;
      try {
        url = parseMessageUrl(part.url, user(s).address, s.ctx.hostname);
      } catch (err) {
        if (err instanceof UrlError) throw badUrl(err.message);
        throw err;
      }
      const mb = await s.ctx.store.getMailbox(user(s).id, url.mailbox);
      if (!mb) throw badUrl('no mailbox of yours');
      if (url.uidValidity !== null && url.uidValidity !== mb.uidValidity) throw badUrl('another UIDVALIDITY');
      const msg = await s.ctx.store.getMessage(mb.id, url.uid);
      if (!msg) throw badUrl('no message there');
      const raw = await s.ctx.store.blobs.get(msg.blobId);
      const root = url.section ? (await structureOf(s, msg)).root : null;
      const section = url.section ? sectionBytes(raw, () => root!, url.section) : raw;
      if (!section) throw badUrl('no such part of the message');
      bytes = url.partial ? partial(section, url.partial.start, url.partial.length ?? undefined) : section;
    }
    size += bytes.length;
    if (size > s.ctx.maxMessageSize)
      throw no('TOOBIG', `The message is larger than the limit of ${s.ctx.maxMessageSize} octets`);
    out.push(bytes);
  }
  if (size === 0) throw no('CANNOT', 'Empty messages are not stored');
  return Buffer.concat(out, size);
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
    // Every message made whole before any is stored: a bad URL in the second stores nothing.
    const whole: Array<Omit<Appended, 'parts'> & { data: Buffer }> = [];
    for (const m of messages) whole.push({ flags: m.flags, date: m.date, data: await assemble(s, m) });
    const stored: Array<{ uid: number; modseq: number }> = [];
    try {
      for (const { flags, date, data } of whole)
        stored.push(
          await s.ctx.store.appendMessage({
            accountId,
            mailboxId: mb.id,
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
    if (s.state.kind === 'selected' && s.state.mailbox.mailbox.id === mb.id) {
      s.state.mailbox.dirty = true;
      for (const m of stored) s.state.mailbox.madeByUs.add(m.uid);
    }
    // RFC 4315 §3 with RFC 3502: the UIDs in the order of the messages.
    return `[APPENDUID ${mb.uidValidity} ${formatUids(stored.map((m) => m.uid))}] APPEND completed`;
  },
};
