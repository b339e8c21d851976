/**
 * GETQUOTAROOT and GETQUOTA (RFC 9208): one quota root, "", per account,
 * with the STORAGE resource in units of 1024 octets. An account without a
 * limit has no quota root at all (no made-up limit). SETQUOTA is the
 * admin's (`mailwerk user quota`), not the user's.
 */
import { no } from '../errors.ts';
import { mailboxName } from '../protocol/encode.ts';
import type { Session } from '../session.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { mailbox, readMailbox, user } from './util.ts';

async function quota(s: Session): Promise<{ used: number; limit: number } | null> {
  const account = await s.ctx.store.getAccount(user(s).id);
  if (!account || account.quotaBytes === null) return null;
  return { used: Math.ceil(account.usedBytes / 1024), limit: Math.ceil(account.quotaBytes / 1024) };
}

export const GETQUOTAROOT: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const mb = await mailbox(s, readMailbox(s, c));
    c.end();
    const q = await quota(s);
    s.write('* QUOTAROOT ', mailboxName(mb.name, s.utf8), q ? ' ""\r\n' : '\r\n');
    if (q) s.untagged(`QUOTA "" (STORAGE ${q.used} ${q.limit})`);
    return 'GETQUOTAROOT completed';
  },
};

export const GETQUOTA: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const root = c.astring();
    c.end();
    const q = await quota(s);
    if (root !== '' || !q) throw no('NONEXISTENT', 'No such quota root');
    s.untagged(`QUOTA "" (STORAGE ${q.used} ${q.limit})`);
    return 'GETQUOTA completed';
  },
};

export const SETQUOTA: Command = {
  states: AUTHENTICATED,
  async run() {
    throw no('NOPERM', 'Quotas are set by the administrator');
  },
};
