/** The Received: trace header (RFC 5321 §4.4). */

export interface ReceivedInfo {
  /** The name the client gave in HELO/EHLO. */
  helo: string;
  /** Reverse DNS of the client, when known. */
  clientHostname?: string;
  clientAddress: string;
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
  const from = `from ${clean(r.helo || 'unknown')} (${r.clientHostname ? `${clean(r.clientHostname)} ` : ''}[${clean(r.clientAddress)}])`;
  const tls = r.tls ? `\r\n\t(using ${clean(r.tls.protocol)} with cipher ${clean(r.tls.cipher)})` : '';
  const forPart = r.recipient ? `\r\n\tfor <${r.recipient}>` : '';
  return `Received: ${from}${tls}\r\n\tby ${r.by} (Mailwerk) with ${r.protocol} id ${r.id}${forPart};\r\n\t${rfc5322Date(r.date ?? new Date())}\r\n`;
}
