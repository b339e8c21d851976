/** STATUS (RFC 3501 §6.3.10) with HIGHESTMODSEQ (RFC 7162), APPENDLIMIT (RFC 7889) and SIZE (RFC 8438). */
import { hasFlag, type Mailbox } from '@mailwerk/store';
import { bad } from '../errors.ts';
import { mailboxId } from '../objectid.ts';
import type { Cursor } from '../protocol/cursor.ts';
import { mailboxName } from '../protocol/encode.ts';
import type { Session } from '../session.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { mailbox, readMailbox } from './util.ts';

const ITEMS = new Set([
  'MESSAGES',
  'RECENT',
  'UIDNEXT',
  'UIDVALIDITY',
  'UNSEEN',
  'HIGHESTMODSEQ',
  'APPENDLIMIT',
  'SIZE',
  'MAILBOXID',
  'DELETED',
]);

/** `(item …)` of STATUS (and of LIST's RETURN (STATUS …), RFC 5819): at least one, each known. */
export function readStatusItems(c: Cursor): string[] {
  const items: string[] = [];
  c.list(() => {
    const w = c.word();
    if (!ITEMS.has(w)) throw bad(`Unknown STATUS item ${w.slice(0, 32)}`);
    items.push(w);
  });
  if (items.length === 0) throw bad('STATUS needs at least one item');
  return items;
}

/** Writes `* STATUS name (…)` for one mailbox. */
export async function writeStatus(s: Session, mb: Mailbox, items: string[]): Promise<void> {
  const st = await s.ctx.store.mailboxStatus(mb.id);
  const value: Record<string, number | string> = {
    MESSAGES: st.messages,
    RECENT: st.recent,
    UIDNEXT: st.uidNext,
    UIDVALIDITY: st.uidValidity,
    UNSEEN: st.unseen,
    HIGHESTMODSEQ: st.highestModseq,
    APPENDLIMIT: s.ctx.maxMessageSize,
    SIZE: st.size,
    // RFC 8474 §4.2.
    MAILBOXID: `(${mailboxId(mb)})`,
    // RFC 9051 §6.3.11: the messages marked \Deleted (read only when asked: it walks the mailbox's rows).
    DELETED: items.includes('DELETED')
      ? (await s.ctx.metaCache.list(mb.id)).filter((m) => hasFlag(m.flags, '\\Deleted')).length
      : 0,
  };
  s.write(
    '* STATUS ',
    mailboxName(mb.name, s.utf8),
    ` (${items.map((i) => `${i} ${value[i]}`).join(' ')})\r\n`,
  );
}

export const STATUS: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const name = readMailbox(s, c);
    c.space();
    const items = readStatusItems(c);
    c.end();
    // RFC 7162 §3.1: a STATUS asking for HIGHESTMODSEQ turns CONDSTORE on.
    if (items.includes('HIGHESTMODSEQ')) s.condstore = true;
    await writeStatus(s, await mailbox(s, name), items);
    return 'STATUS completed';
  },
};
