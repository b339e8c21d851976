/**
 * What the MX and submission share: the engine options both start from, and
 * what a queue entry keeps of an SMTP envelope (recipients with their DSN
 * parameters, RFC 3461, ENVID and RET).
 */
import type { SmtpEnvelope, SmtpServerOptions, SmtpSession } from '@mailwerk/smtp';
import { type NewQueueEntry, normalizeAddress } from '@mailwerk/store';

export const queueRecipients = (env: SmtpEnvelope): NewQueueEntry['recipients'] =>
  env.rcptTo.map((r) => {
    const { ORCPT, NOTIFY } = r.params;
    return {
      address: normalizeAddress(r.address),
      ...(typeof ORCPT === 'string' ? { orcpt: ORCPT } : {}),
      ...(typeof NOTIFY === 'string' ? { notify: NOTIFY.split(',') } : {}),
    };
  });

export const dsnMeta = (env: SmtpEnvelope): Record<string, string> => {
  const { ENVID, RET } = env.mailFrom?.params ?? {};
  return {
    ...(typeof ENVID === 'string' ? { envid: ENVID } : {}),
    ...(typeof RET === 'string' ? { ret: RET } : {}),
  };
};

/** Engine options every SMTP server of ours sets the same way. */
export const baseServerOptions = (
  tls: { key: string; cert: string },
  limits: {
    maxMessageSize: number;
    maxRecipients: number;
    maxConnections: number;
    maxErrors: number;
    idleTimeoutMs: number;
  },
): Pick<
  SmtpServerOptions,
  'tls' | 'size' | 'maxRecipients' | 'maxClients' | 'maxErrors' | 'idleTimeoutMs' | 'chunking'
> => ({
  tls,
  // BDAT (RFC 3030), as Postfix offers it since 3.4: senders that use it skip the dot rule both ways.
  chunking: true,
  size: limits.maxMessageSize,
  maxRecipients: limits.maxRecipients,
  maxClients: limits.maxConnections,
  maxErrors: limits.maxErrors,
  idleTimeoutMs: limits.idleTimeoutMs,
});

/** Did the transaction ask for SMTPUTF8 (RFC 6531: MAIL FROM … SMTPUTF8)? */
export const smtputf8 = (session: SmtpSession): boolean =>
  session.envelope.mailFrom?.params.SMTPUTF8 === true;
