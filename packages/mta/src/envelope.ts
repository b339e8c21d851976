/**
 * What the MX and submission share: the smtp-server options both start from,
 * and what a queue entry keeps of an SMTP envelope (recipients with their DSN
 * parameters, RFC 3461, ENVID and RET).
 */
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

/** smtp-server options every server of ours sets the same way. */
export const baseServerOptions = (
  tls: { key: string; cert: string },
  limits: { maxMessageSize: number; maxRecipients: number; maxConnections: number; idleTimeoutMs: number },
) => ({
  key: tls.key,
  cert: tls.cert,
  hideENHANCEDSTATUSCODES: false,
  hideDSN: false,
  size: limits.maxMessageSize,
  rejectOversized: true,
  maxRecipients: limits.maxRecipients,
  maxClients: limits.maxConnections,
  socketTimeout: limits.idleTimeoutMs,
  disableReverseLookup: true,
  logger: false as const,
});

/** Did the transaction ask for SMTPUTF8 (RFC 6531: MAIL FROM … SMTPUTF8)? */
export function smtputf8(session: SMTPServerSession): boolean {
  const args = session.envelope.mailFrom
    ? (session.envelope.mailFrom.args as Record<string, unknown> | false)
    : false;
  return args ? Boolean(args.SMTPUTF8) : false;
}

/** The TLS details of a session, for the Received: header and rspamd; null in the clear. */
export const tlsOf = (session: SMTPServerSession): { protocol: string; cipher: string } | null =>
  session.secure && session.tlsOptions
    ? { protocol: session.tlsOptions.version ?? 'TLS', cipher: session.tlsOptions.name }
    : null;
