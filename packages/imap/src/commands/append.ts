/**
 * APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315), APPENDLIMIT (RFC 7889,
 * checked before the literal is read: see Session.literalDecision) and the
 * UTF8 data item of RFC 6855 §4. A message appended to the selected mailbox
 * is announced (`* n EXISTS`) before the tagged OK.
 */
import { parseMessage } from '@mailwerk/mime';
import { contentId, normalizeFlags } from '@mailwerk/store';
import { bad, no } from '../errors.ts';
import { parseDateTime } from '../protocol/encode.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { mailbox, readMailbox, user } from './util.ts';

export const APPEND: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const name = readMailbox(s, c);
    c.space();
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
    c.end();
    const mb = await mailbox(s, name, 'TRYCREATE');
    if (data.length === 0) throw no('CANNOT', 'Empty messages are not stored');
    let normalized: string[];
    try {
      normalized = normalizeFlags(flags.filter((f) => f.toLowerCase() !== '\\recent'));
    } catch {
      throw no('CANNOT', 'Invalid flag');
    }
    const accountId = user(s).id;
    const m = await s.ctx.store.appendMessage({
      accountId,
      mailboxId: mb.id,
      blobId: contentId(data),
      data,
      size: data.length,
      structure: parseMessage(data),
      flags: normalized,
      ...(date ? { internalDate: date } : {}),
    });
    s.ctx.publish({ type: 'message.new', accountId, mailboxId: mb.id, uid: m.uid, modseq: m.modseq });
    if (s.state.kind === 'selected' && s.state.mailbox.mailbox.id === mb.id) s.state.mailbox.dirty = true;
    return `[APPENDUID ${mb.uidValidity} ${m.uid}] APPEND completed`;
  },
};
