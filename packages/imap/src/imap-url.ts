/**
 * IMAP URLs naming one message or a part of it (RFC 5092 §6), as CATENATE
 * takes them (RFC 4469 §5): `/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=a.b`
 * on this server, or the same after `imap://[user@]host[:port]`. Mailbox
 * names and sections are percent-encoded UTF-8. URLAUTH (RFC 4467) is not
 * offered, so a URL carrying one is refused; so is one naming another server
 * or another user, or no single message. Bounded: a URL is at most 4,000
 * characters and is read once from left to right.
 */
import type { Section } from './fetch-data.ts';
import { Cursor } from './protocol/cursor.ts';
import { readSection } from './protocol/fetch-parse.ts';

export interface MessageUrl {
  mailbox: string;
  uidValidity: number | null;
  uid: number;
  section: Section | null;
  partial: { start: number; length: number | null } | null;
}

export class UrlError extends Error {}

const MAX_URL = 4000;

/** Percent-decoding to UTF-8 (RFC 3986 §2.1); a bad escape or bad UTF-8 is an error, not a guess. */
function decode(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x25) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new UrlError('a bad percent escape');
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (ch > 0x7e || ch < 0x21) throw new UrlError('a character that must be percent-encoded');
    else bytes.push(ch);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    throw new UrlError('percent escapes that are not UTF-8');
  }
}

const number = (text: string, what: string, zero = false): number => {
  if (!/^\d{1,10}$/.test(text)) throw new UrlError(`a bad ${what}`);
  const n = Number(text);
  if ((!zero && n === 0) || n > 0xffffffff) throw new UrlError(`a bad ${what}`);
  return n;
};

/** The message (and part) `url` names, for `user` on the server called `hostname`. */
export function parseMessageUrl(url: string, user: string, hostname: string): MessageUrl {
  if (url.length > MAX_URL) throw new UrlError('too long a URL');
  let path = url;
  const absolute = /^imap:\/\/([^/]*)(\/.*)?$/i.exec(url);
  if (absolute) {
    // iserver = [iuserinfo "@"] host [":" port]; iuserinfo = enc-user [iauth].
    const server = absolute[1]!;
    const at = server.lastIndexOf('@');
    const host = (at === -1 ? server : server.slice(at + 1)).replace(/:\d{1,5}$/, '').replace(/^\[|\]$/g, '');
    if (host.toLowerCase() !== hostname.toLowerCase()) throw new UrlError('another server');
    if (at !== -1) {
      const who = decode(server.slice(0, at).replace(/;AUTH=.*$/i, ''));
      if (who.toLowerCase() !== user.toLowerCase()) throw new UrlError("another user's mailbox");
    }
    path = absolute[2] ?? '';
  }
  if (!path.startsWith('/')) throw new UrlError('not an IMAP URL of this server');
  // The mailbox runs to ";UIDVALIDITY=" or "/;"; the rest is "/;NAME=value" pieces.
  const cut = /;UIDVALIDITY=|\/;/i.exec(path);
  const mailbox = decode(cut ? path.slice(1, cut.index) : path.slice(1));
  if (!mailbox) throw new UrlError('no mailbox');
  let rest = cut ? path.slice(cut.index) : '';
  let uidValidity: number | null = null;
  const validity = /^;UIDVALIDITY=(\d+)/i.exec(rest);
  if (validity) {
    uidValidity = number(validity[1]!, 'UIDVALIDITY');
    rest = rest.slice(validity[0].length);
  }
  const pieces = rest ? rest.split('/').slice(1) : [];
  if (rest && !rest.startsWith('/'))
    throw new UrlError('something after the mailbox that is not of an IMAP URL');
  let uid: number | null = null;
  let section: Section | null = null;
  let partial: MessageUrl['partial'] = null;
  const order = ['UID', 'SECTION', 'PARTIAL'];
  let last = -1;
  for (const piece of pieces) {
    const m = /^;([A-Z]+)=(.*)$/i.exec(piece);
    if (!m) throw new UrlError('a part that is not ";NAME=value"');
    const name = m[1]!.toUpperCase();
    const at = order.indexOf(name);
    if (at === -1)
      throw new UrlError(
        name === 'URLAUTH' || name === 'EXPIRE' ? 'URLAUTH, which is not offered' : `;${name}`,
      );
    if (at <= last) throw new UrlError(`;${name} out of place`);
    last = at;
    if (name === 'UID') uid = number(m[2]!.replace(/;.*$/, ''), 'UID');
    else if (name === 'SECTION') {
      const c = new Cursor([`${decode(m[2]!)}]`]);
      try {
        section = readSection(c).section;
        c.end();
      } catch {
        throw new UrlError('a bad SECTION');
      }
    } else {
      const p = /^(\d{1,10})(?:\.(\d{1,10}))?$/.exec(m[2]!);
      if (!p) throw new UrlError('a bad PARTIAL');
      partial = { start: number(p[1]!, 'PARTIAL', true), length: p[2] ? number(p[2], 'PARTIAL') : null };
    }
  }
  // ";UID=" may also carry URLAUTH pieces after ";" (iurlauth-rump); those are refused above or here.
  if (/\/;UID=\d+;/i.test(rest)) throw new UrlError('URLAUTH, which is not offered');
  if (uid === null) throw new UrlError('no message (;UID= is missing)');
  return { mailbox, uidValidity, uid, section, partial };
}
