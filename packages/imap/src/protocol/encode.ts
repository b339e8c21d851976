/**
 * Writing IMAP values (RFC 3501 §4, §9): atoms, quoted strings, literals,
 * NIL and parenthesised lists. A response is built as chunks: strings (ASCII,
 * or UTF-8 text where the client enabled UTF8=ACCEPT) and Buffers (literal
 * bytes, sent as they are).
 */
import { encodeMutf7 } from '../mutf7.ts';

export type Chunk = string | Buffer;

/**
 * A value in IMAP's data model: list, string, number or NIL (null). A run
 * is written back to back, without spaces or parentheses: the grammar joins
 * addresses in an envelope (`env-to = "(" 1*address ")"`) and the bodies of
 * a multipart (`body-type-mpart = 1*body SP media-subtype`) that way.
 */
export type ImapValue = string | number | null | ImapValue[] | { run: ImapValue[] };

/** A string the client reads back exactly: quoted when safe, else a literal of its UTF-8 bytes. */
export function str(s: string, utf8Ok = false): Chunk[] {
  if (s.length <= 1024 && (utf8Ok ? /^[^\0\r\n]*$/ : /^[\x20-\x7e]*$/).test(s))
    return [`"${s.replace(/[\\"]/g, '\\$&')}"`];
  const bytes = Buffer.from(s, 'utf8');
  return [`{${bytes.length}}\r\n`, bytes];
}

/** Like `str`, but returns a single string when the value fits in a quoted string (the common case). */
export function quoteOrNull(s: string, utf8Ok = false): string | null {
  if (s.length <= 1024 && (utf8Ok ? /^[^\0\r\n]*$/ : /^[\x20-\x7e]*$/).test(s))
    return `"${s.replace(/[\\"]/g, '\\$&')}"`;
  return null;
}

/** Bytes as a literal. */
export function literal(bytes: Buffer): Chunk[] {
  return [`{${bytes.length}}\r\n`, bytes];
}

const ATOM = /^[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~[\]]+$/;

/** An astring: bare when it is an atom (and not NIL, which a client would read as nothing), else a string. */
export function astring(s: string, utf8Ok = false): Chunk[] {
  if (ATOM.test(s) && s.toUpperCase() !== 'NIL') return [s];
  return str(s, utf8Ok);
}

/** A mailbox name: modified UTF-7 (RFC 3501 §5.1.3) unless the client enabled UTF8=ACCEPT (RFC 6855). */
export function mailboxName(name: string, utf8Ok: boolean): Chunk[] {
  if (name === 'INBOX') return ['INBOX'];
  return str(utf8Ok ? name : encodeMutf7(name), utf8Ok);
}

const CLOSE = Symbol('close');
const SPACE = Symbol('space');

/** Serialises a value tree (ENVELOPE, BODYSTRUCTURE) into chunks, without recursion. */
export function value(v: ImapValue, out: Chunk[], utf8Ok = false): void {
  // An explicit stack of what is left to write; ')' closes a list.
  const stack: Array<ImapValue | typeof CLOSE | typeof SPACE> = [v];
  while (stack.length) {
    const x = stack.pop()!;
    if (x === CLOSE) {
      out.push(')');
      continue;
    }
    if (x === SPACE) {
      out.push(' ');
      continue;
    }
    if (x === null) out.push('NIL');
    else if (typeof x === 'number') out.push(String(x));
    else if (typeof x === 'string') {
      const q = quoteOrNull(x, utf8Ok);
      if (q !== null) out.push(q);
      else out.push(...str(x, utf8Ok));
    } else if (!Array.isArray(x)) {
      for (let i = x.run.length - 1; i >= 0; i--) stack.push(x.run[i]!);
    } else {
      out.push('(');
      stack.push(CLOSE);
      for (let i = x.length - 1; i >= 0; i--) {
        stack.push(x[i]!);
        if (i > 0) stack.push(SPACE);
      }
    }
  }
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
