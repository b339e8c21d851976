/**
 * Replies of delivery attempts as fields (RFC 5321 §4.2, RFC 3463): the code,
 * the enhanced status code and the text. They travel through the queue like
 * this, so the DSN, the log and the CLI never parse a string again. Only the
 * wire is text: `parseReply` reads a reply line once, where it comes in (an
 * SMTP or LMTP server's answer, or a queue row written by an older version).
 */
import type { DeliveryReply } from './types.ts';

export const makeReply = (code: number, enhanced: string, text: string): DeliveryReply => ({
  code,
  enhanced,
  text,
});

/**
 * A reply line (`550 5.1.1 no such user`, or several lines joined) as fields.
 * Without an enhanced code the class of the reply code stands in (`4.0.0`);
 * without a reply code it is a local temporary error (451 4.3.0).
 */
export function parseReply(line: string): DeliveryReply {
  const m = /^([245]\d{2})(?:[ -]|$)\s*(?:([245]\.\d{1,3}\.\d{1,3})(?:\s+|$))?([\s\S]*)$/.exec(line.trim());
  if (!m) return makeReply(451, '4.3.0', line.trim());
  const code = Number(m[1]);
  return makeReply(code, m[2] ?? `${m[1]![0]}.0.0`, m[3]!.replace(/\s+/g, ' ').trim());
}

/** The reply as one line, for a log, a DSN's Diagnostic-Code or the CLI. */
export const formatReply = (r: DeliveryReply): string =>
  `${r.code} ${r.enhanced}${r.text ? ` ${r.text}` : ''}`;

/** What a stored reply becomes when read: older rows hold it as a line. */
export function readReply(value: unknown): DeliveryReply | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return parseReply(value);
  const v = value as Partial<DeliveryReply>;
  if (typeof v.code === 'number' && typeof v.enhanced === 'string' && typeof v.text === 'string')
    return makeReply(v.code, v.enhanced, v.text);
  throw new Error('a recipient reply is neither a line nor code, enhanced code and text');
}
