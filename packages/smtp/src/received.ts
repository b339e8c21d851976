/** The Received: trace header (RFC 5321 §4.4). */

export interface ReceivedInfo {
  /** The name the client gave in HELO/EHLO; null (with `clientAddress`) leaves out the from clause, for submission that keeps the client private. */
  helo: string | null;
  /** Reverse DNS of the client, when known. */
  clientHostname?: string;
  clientAddress: string | null;
  /** This host. */
  by: string;
  /** ESMTP, ESMTPS, ESMTPSA, LMTP … (RFC 3848). */
  protocol: string;
  id: string;
  /** Named only for a single recipient, as Postfix does. */
  recipient?: string;
  tls?: { protocol: string; cipher: string } | null;
  date?: Date;
}

/** RFC 5322 date-time, always in UTC. */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000');
}

const clean = (s: string) => s.replace(/[^\x21-\x7e]/g, '?').slice(0, 255);

export function receivedHeader(r: ReceivedInfo): string {
  const lines: string[] = [];
  if (r.clientAddress !== null)
    lines.push(
      `from ${clean(r.helo || 'unknown')} (${r.clientHostname ? `${clean(r.clientHostname)} ` : ''}[${clean(r.clientAddress)}])`,
    );
  const tls = r.tls ? `(using ${clean(r.tls.protocol)} with cipher ${clean(r.tls.cipher)})` : null;
  // The TLS comment follows the clause it describes: the client's, or ours when the client is not named.
  if (tls && r.clientAddress !== null) lines.push(tls);
  lines.push(`by ${r.by} (Mailwerk) with ${r.protocol} id ${r.id}`);
  if (tls && r.clientAddress === null) lines.push(tls);
  if (r.recipient) lines.push(`for <${r.recipient}>`);
  return `Received: ${lines.join('\r\n\t')};\r\n\t${rfc5322Date(r.date ?? new Date())}\r\n`;
}
