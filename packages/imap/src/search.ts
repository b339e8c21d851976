/**
 * SEARCH (RFC 3501 §6.4.4) over stored messages: imap-core parses the
 * criteria into a term tree; this evaluates it. Flags, sizes, dates and
 * UIDs come from the message row; HEADER, BODY and TEXT read the bytes,
 * only when a term needs them, and match case-insensitively against
 * decoded text (RFC 2047 words in headers; base64 and quoted-printable
 * bodies in their declared charset), as users expect from Dovecot.
 */
import { type MimeNode, parseHeaderBlock } from '@mailwerk/mime';
import { hasFlag, type Message } from '@mailwerk/store';
import type { SearchTerm } from './core.ts';

export interface SearchSubject {
  message: Message;
  /** The message bytes, loaded on first use. */
  raw(): Promise<Buffer>;
}

function decodeCharset(bytes: Buffer, charset: string | undefined): string {
  try {
    return new TextDecoder(charset?.trim() || 'utf-8').decode(bytes);
  } catch {
    // An unknown charset: the bytes as UTF-8 with replacement characters still match ASCII words.
    return new TextDecoder('utf-8').decode(bytes);
  }
}

function decodeQuotedPrintable(text: string, header = false): Buffer {
  const src = header ? text.replace(/_/g, ' ') : text.replace(/=\r?\n/g, '');
  const out: number[] = [];
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(src.slice(i + 1, i + 3))) {
      out.push(Number.parseInt(src.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(src.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** Decodes RFC 2047 encoded words; adjacent words separated only by white space join. */
export function decodeWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, '$1$2')
    .replace(
      /=\?([^?*\s]+)(?:\*[^?]*)?\?([BbQq])\?([^?\s]*)\?=/g,
      (_, charset: string, enc: string, text: string) => {
        const bytes =
          enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64') : decodeQuotedPrintable(text, true);
        return decodeCharset(bytes, charset);
      },
    );
}

function decodeBody(raw: Buffer, node: MimeNode): string {
  const body = raw.subarray(node.bodyStart, node.end);
  const enc = node.encoding.toLowerCase();
  const bytes =
    enc === 'base64'
      ? Buffer.from(body.toString('latin1'), 'base64')
      : enc === 'quoted-printable'
        ? decodeQuotedPrintable(body.toString('latin1'))
        : body;
  return decodeCharset(bytes, node.contentType.params.charset);
}

/** The decoded text of every text/* leaf (and of embedded messages). */
function bodyText(raw: Buffer, node: MimeNode, out: string[]): void {
  if (node.children) for (const c of node.children) bodyText(raw, c, out);
  else if (node.message) {
    out.push(decodeWords(raw.toString('utf8', node.message.start, node.message.bodyStart)));
    bodyText(raw, node.message, out);
  } else if (node.contentType.value.toLowerCase().startsWith('text/')) out.push(decodeBody(raw, node));
}

/** A date's calendar day, as IMAP compares them (time and zone disregarded). */
const day = (d: Date): string => d.toISOString().slice(0, 10);

function headerDate(m: Message): Date {
  const v = m.structure.root.envelope?.date;
  const t = v ? Date.parse(v.replace(/\([^)]*\)/g, '').trim()) : Number.NaN;
  return Number.isNaN(t) ? m.internalDate : new Date(t);
}

function compareDay(d: Date, op: '<' | '=' | '>=', value: string): boolean {
  const a = day(d);
  const b = day(new Date(value));
  return op === '<' ? a < b : op === '=' ? a === b : a >= b;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** imap-core hands search strings over as octets in a JS string; a client sends UTF-8 (CHARSET UTF-8, or UTF8=ACCEPT). */
export function searchText(value: string): string {
  if (!/[\x80-\xff]/.test(value) || /[^\x00-\xff]/.test(value)) return value;
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

export async function matches(s: SearchSubject, term: SearchTerm): Promise<boolean> {
  if (Array.isArray(term)) {
    for (const t of term) if (!(await matches(s, t))) return false;
    return true;
  }
  const m = s.message;
  switch (term.key) {
    case 'all':
    case 'charset':
      return true;
    case 'flag':
      return hasFlag(m.flags, term.value) === term.exists;
    case 'internaldate':
      return compareDay(m.internalDate, term.operator, term.value);
    case 'date':
      return compareDay(headerDate(m), term.operator, term.value);
    case 'uid':
      return term.value.includes(m.uid);
    case 'size':
      return term.operator === '<'
        ? m.size < term.value
        : term.operator === '>'
          ? m.size > term.value
          : m.size === term.value;
    case 'modseq':
      return m.modseq >= term.value;
    case 'or':
      for (const t of term.value) if (await matches(s, t)) return true;
      return false;
    case 'not':
      return !(await matches(s, term.value));
    case 'header': {
      const raw = await s.raw();
      const root = m.structure.root;
      const needle = searchText(term.value ?? '').toLowerCase();
      for (const f of parseHeaderBlock(raw.toString('utf8', root.start, root.bodyStart))) {
        if (f.key !== term.header.toLowerCase()) continue;
        // RFC 3501: an empty string matches every message that has the field.
        if (
          !needle ||
          decodeWords(f.value).toLowerCase().includes(needle) ||
          f.value.toLowerCase().includes(needle)
        )
          return true;
      }
      return false;
    }
    case 'body':
    case 'text': {
      const raw = await s.raw();
      const root = m.structure.root;
      const parts: string[] = [];
      if (term.key === 'text') parts.push(decodeWords(raw.toString('utf8', root.start, root.bodyStart)));
      bodyText(raw, root, parts);
      const needle = searchText(term.value).toLowerCase();
      return parts.some((p) => p.toLowerCase().includes(needle));
    }
    default:
      return false;
  }
}
