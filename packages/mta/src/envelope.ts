/** What a queue entry keeps of an SMTP envelope: recipients with their DSN parameters (RFC 3461), ENVID and RET. */
import { type NewQueueEntry, normalizeAddress } from '@mailwerk/store';
import type { SMTPServerSession } from 'smtp-server';

type Envelope = SMTPServerSession['envelope'];

export const queueRecipients = (env: Envelope): NewQueueEntry['recipients'] =>
  env.rcptTo.map((r) => ({
    address: normalizeAddress(r.address),
    ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
    ...(r.dsn?.notify?.length ? { notify: r.dsn.notify.map((n) => n.toUpperCase()) } : {}),
  }));

export const dsnMeta = (env: Envelope): Record<string, string> => ({
  ...(env.dsn?.envid ? { envid: env.dsn.envid } : {}),
  ...(env.dsn?.ret ? { ret: env.dsn.ret.toUpperCase() } : {}),
});
