/**
 * Writing IMAP values (RFC 3501 §4, §9): atoms, quoted strings, literals,
 * NIL and parenthesised lists. A response is built as chunks: strings (ASCII,
 * or UTF-8 text where the client enabled UTF8=ACCEPT) and Buffers (literal
 * bytes, sent as they are).
 */
import { encodeMutf7 } from '../mutf7.ts';

export type Chunk = string | Buffer;

/**
 * NIL or a string, as one piece of response text: quoted when it can be,
 * else a literal whose count is the UTF-8 length (the text is sent as UTF-8).
 * Scans the string once; no regular expression.
 */
export function nstring(s: string | null, utf8Ok = false): string {
  if (s === null) return 'NIL';
  let quote = s.length <= 1024;
  let escaped = false;
  for (let i = 0; quote && i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) escaped = true;
    else if (c < 0x20 || c === 0x7f || (c > 0x7e && !utf8Ok)) quote = false;
  }
  if (!quote) return `{${Buffer.byteLength(s)}}\r\n${s}`;
  return escaped ? `"${s.replace(/[\\"]/g, '\\$&')}"` : `"${s}"`;
}

/** A string the client reads back exactly. */
export const str = (s: string, utf8Ok = false): string => nstring(s, utf8Ok);

const ATOM = /^[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~[\]]+$/;

/** An astring: bare when it is an atom (and not NIL, which a client would read as nothing), else a string. */
export function astring(s: string, utf8Ok = false): string {
  if (ATOM.test(s) && s.toUpperCase() !== 'NIL') return s;
  return str(s, utf8Ok);
}

/** A mailbox name: modified UTF-7 (RFC 3501 §5.1.3) unless the client enabled UTF8=ACCEPT (RFC 6855). */
export function mailboxName(name: string, utf8Ok: boolean): string {
  if (name === 'INBOX') return 'INBOX';
  return str(utf8Ok ? name : encodeMutf7(name), utf8Ok);
}

/** A flag list `(\Seen $Work)`. */
export const flagList = (flags: readonly string[]): string => `(${flags.join(' ')})`;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** INTERNALDATE as `"dd-Mon-yyyy hh:mm:ss +0000"` (RFC 3501 §9 date-time), in UTC. */
export function dateTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `"${p(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000"`;
}

/** Parses `dd-Mon-yyyy hh:mm:ss +zzzz` (APPEND's date-time); null when it is not one. */
export function parseDateTime(s: string): Date | null {
  const m = /^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s);
  if (!m) return null;
  const month = MONTHS.findIndex((x) => x.toLowerCase() === m[2]!.toLowerCase());
  if (month === -1) return null;
  const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
  const t =
    Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])) - offset * 60_000;
  return Number.isNaN(t) ? null : new Date(t);
}

/** Parses `dd-Mon-yyyy` (SEARCH's date) into a comparable yyyymmdd number; null when it is not one. */
export function parseDate(s: string): number | null {
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(s);
  if (!m) return null;
  const month = MONTHS.findIndex((x) => x.toLowerCase() === m[2]!.toLowerCase());
  const day = Number(m[1]);
  if (month === -1 || day < 1 || day > 31) return null;
  return Number(m[3]) * 10_000 + (month + 1) * 100 + day;
}
