/** STATUS (RFC 3501 §6.3.10) with HIGHESTMODSEQ (RFC 7162), APPENDLIMIT (RFC 7889) and SIZE (RFC 8438). */
import { bad } from '../errors.ts';
import { mailboxName } from '../protocol/encode.ts';
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
]);

export const STATUS: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const name = readMailbox(s, c);
    c.space();
    const items: string[] = [];
    c.list(() => {
      const w = c.word();
      if (!ITEMS.has(w)) throw bad(`Unknown STATUS item ${w.slice(0, 32)}`);
      items.push(w);
    });
    c.end();
    if (items.length === 0) throw bad('STATUS needs at least one item');
    const mb = await mailbox(s, name);
    const st = await s.ctx.store.mailboxStatus(mb.id);
    if (items.includes('HIGHESTMODSEQ')) s.condstore = true;
    const value: Record<string, number> = {
      MESSAGES: st.messages,
      RECENT: st.recent,
      UIDNEXT: st.uidNext,
      UIDVALIDITY: st.uidValidity,
      UNSEEN: st.unseen,
      HIGHESTMODSEQ: st.highestModseq,
      APPENDLIMIT: s.ctx.maxMessageSize,
      SIZE: st.size,
    };
    s.write(
      '* STATUS ',
      mailboxName(mb.name, s.utf8),
      ` (${items.map((i) => `${i} ${value[i]}`).join(' ')})\r\n`,
    );
    return 'STATUS completed';
  },
};
