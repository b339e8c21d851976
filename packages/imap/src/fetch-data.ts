/**
 * What FETCH returns, computed from the stored bytes and the MIME structure
 * the MDA recorded (RFC 3501 §6.4.5 and §7.4.2): ENVELOPE, BODYSTRUCTURE and
 * BODY[section]<partial>. ENVELOPE and BODYSTRUCTURE are written straight
 * into response text (no intermediate tree: FETCH of 10,000 messages builds
 * 20,000 of them). The bytes come straight from the blob, so BODY[] is the
 * message byte for byte as delivered.
 */
import {
  type AddressEntry,
  bodyOffset,
  type Envelope,
  type EnvelopeAddress,
  findPart,
  type MimeNode,
  type ParamValue,
} from '@mailwerk/mime';
import { nstring } from './protocol/encode.ts';

/**
 * One address: (name adl mailbox host). A NIL host marks a group (RFC 3501
 * §7.4.2), so an address without a domain gets Dovecot's placeholders
 * instead, which no client mistakes for a group.
 */
function one(a: EnvelopeAddress, utf8: boolean): string {
  const at = a.address.lastIndexOf('@');
  const local = at === -1 ? a.address : a.address.slice(0, at);
  const host = at === -1 ? '' : a.address.slice(at + 1);
  return `(${nstring(a.name || null, utf8)} ${nstring(a.route || null, utf8)} ${nstring(local || 'MISSING_MAILBOX', utf8)} ${nstring(host || 'MISSING_DOMAIN', utf8)})`;
}

/** An address list: the addresses back to back (`env-to = "(" 1*address ")"`), groups between their markers. */
function addresses(entries: AddressEntry[] | null, utf8: boolean): string {
  if (!entries || entries.length === 0) return 'NIL';
  let out = '(';
  for (const e of entries) {
    if ('group' in e) {
      // RFC 3501 §7.4.2: a group is marked by a start entry (NIL host, group name as mailbox) and an end entry (all NIL).
      out += `(NIL NIL ${nstring(e.name, utf8)} NIL)`;
      for (const m of e.group) out += one(m, utf8);
      out += '(NIL NIL NIL NIL)';
    } else {
      out += one(e, utf8);
    }
  }
  return `${out})`;
}

/** ENVELOPE (RFC 3501 §7.4.2) as response text. */
export function envelopeText(env: Envelope | undefined, utf8 = false): string {
  if (!env) return '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)';
  return `(${nstring(env.date, utf8)} ${nstring(env.subject, utf8)} ${addresses(env.from, utf8)} ${addresses(env.sender, utf8)} ${addresses(env.replyTo, utf8)} ${addresses(env.to, utf8)} ${addresses(env.cc, utf8)} ${addresses(env.bcc, utf8)} ${nstring(env.inReplyTo, utf8)} ${nstring(env.messageId, utf8)})`;
}

function params(p: Record<string, string>, utf8: boolean): string {
  let out = '';
  for (const k in p) out += `${out ? ' ' : ''}${nstring(k, utf8)} ${nstring(p[k]!, utf8)}`;
  return out ? `(${out})` : 'NIL';
}

function disposition(d: ParamValue | null, utf8: boolean): string {
  return d ? `(${nstring(d.value, utf8)} ${params(d.params, utf8)})` : 'NIL';
}

function language(l: string | null, utf8: boolean): string {
  if (!l) return 'NIL';
  return `(${l
    .split(',')
    .map((x) => nstring(x.trim(), utf8))
    .join(' ')})`;
}

/**
 * BODYSTRUCTURE (with extension data) or BODY (without), RFC 3501 §7.4.2,
 * as response text. Type and subtype are given as the message spells them,
 * lower-cased, as Dovecot does; clients compare them case-insensitively.
 * The recursion follows the structure, which the parser bounds at 64 levels.
 */
export function bodyStructureText(node: MimeNode, extended = true, utf8 = false): string {
  const ct = node.contentType.value;
  const slash = ct.indexOf('/');
  const type = slash === -1 ? 'text' : ct.slice(0, slash);
  const subtype = slash === -1 ? 'plain' : ct.slice(slash + 1);
  if (node.children) {
    let out = '(';
    for (const c of node.children) out += bodyStructureText(c, extended, utf8);
    // A multipart without parts is invalid; RFC 3501 needs at least one body.
    if (node.children.length === 0)
      out += bodyStructureText(
        { ...node, children: undefined, contentType: { value: 'text/plain', params: {} } } as MimeNode,
        extended,
        utf8,
      );
    out += ` ${nstring(subtype, utf8)}`;
    if (extended)
      out += ` ${params(node.contentType.params, utf8)} ${disposition(node.disposition, utf8)} ${language(node.language, utf8)} ${nstring(node.location, utf8)}`;
    return `${out})`;
  }
  let out = `(${nstring(type, utf8)} ${nstring(subtype, utf8)} ${params(node.contentType.params, utf8)} ${nstring(node.contentId, utf8)} ${nstring(node.description, utf8)} ${nstring(node.encoding, utf8)} ${node.end - node.bodyStart}`;
  if (node.message)
    out += ` ${envelopeText(node.message.envelope, utf8)} ${bodyStructureText(node.message, extended, utf8)} ${node.bodyLines}`;
  else if (type === 'text') out += ` ${node.bodyLines}`;
  if (extended)
    out += ` ${nstring(node.md5, utf8)} ${disposition(node.disposition, utf8)} ${language(node.language, utf8)} ${nstring(node.location, utf8)}`;
  return `${out})`;
}

/** A parsed BODY[...] section: a part path and what of it. */
export interface Section {
  path: number[];
  kind: '' | 'HEADER' | 'TEXT' | 'MIME' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT';
  fields?: string[];
}

/**
 * A header block (latin1 text, from its first byte through the blank line)
 * filtered by field names, keeping the original lines (folding included) and
 * the closing blank line. One pass over the lines, no regular expression.
 */
function filterHeader(text: string, fields: string[], not: boolean): Buffer {
  const names = new Set(fields.map((f) => f.toLowerCase()));
  let out = '';
  let keep = false;
  for (let at = 0; at < text.length; ) {
    const nl = text.indexOf('\n', at);
    const end = nl < 0 ? text.length : nl + 1;
    const first = text.charCodeAt(at);
    // The blank line ends the header.
    if (first === 0x0a || (first === 0x0d && text.charCodeAt(at + 1) === 0x0a)) break;
    if (first === 0x20 || first === 0x09) {
      // A continuation line belongs to the field before it.
      if (keep) out += text.slice(at, end);
    } else {
      const colon = text.indexOf(':', at);
      const name = colon < 0 || colon >= end ? '' : text.slice(at, colon).trim().toLowerCase();
      keep = names.has(name) !== not;
      if (keep) out += text.slice(at, end);
    }
    at = end;
  }
  return Buffer.from(`${out}\r\n`, 'latin1');
}

/** The top-level header block of a message as latin1 text (one byte per character, so byte-exact). */
export const headerText = (raw: Buffer): string => raw.toString('latin1', 0, bodyOffset(raw));

/** A section read from the top-level header alone: HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT of the message itself. */
export const isTopHeader = (section: Section): boolean =>
  section.path.length === 0 &&
  (section.kind === 'HEADER' || section.kind === 'HEADER.FIELDS' || section.kind === 'HEADER.FIELDS.NOT');

/** The bytes of a top-level header section (see isTopHeader) from the header's text. */
export function headerSection(header: string, section: Section): Buffer {
  return section.kind === 'HEADER'
    ? Buffer.from(header, 'latin1')
    : filterHeader(header, section.fields ?? [], section.kind === 'HEADER.FIELDS.NOT');
}

/**
 * The bytes of a section, or null when the part does not exist (RFC 3501:
 * the server returns an empty string for a part that is not there).
 */
export function sectionBytes(raw: Buffer, structure: () => MimeNode, section: Section): Buffer | null {
  if (section.path.length === 0) {
    // The message itself: its header ends at the first blank line; no need for the stored structure.
    if (section.kind === '') return raw;
    if (isTopHeader(section)) return headerSection(headerText(raw), section);
    if (section.kind === 'TEXT') return raw.subarray(bodyOffset(raw));
  }
  const node = findPart(structure(), section.path);
  if (!node) return null;
  // HEADER and TEXT of a part address the message inside a message/rfc822 part.
  const msg = node.message;
  switch (section.kind) {
    case '':
      return raw.subarray(node.bodyStart, node.end);
    case 'MIME':
      return raw.subarray(node.start, node.bodyStart);
    case 'HEADER':
      return msg ? raw.subarray(msg.start, msg.bodyStart) : null;
    case 'TEXT':
      return msg ? raw.subarray(msg.bodyStart, msg.end) : null;
    case 'HEADER.FIELDS':
    case 'HEADER.FIELDS.NOT':
      return msg
        ? filterHeader(
            raw.toString('latin1', msg.start, msg.bodyStart),
            section.fields ?? [],
            section.kind === 'HEADER.FIELDS.NOT',
          )
        : null;
  }
}

/** Applies a `<start.length>` partial (RFC 3501 §6.4.5). */
export function partial(bytes: Buffer, start: number, length?: number): Buffer {
  return bytes.subarray(
    Math.min(start, bytes.length),
    length === undefined ? undefined : Math.min(bytes.length, start + length),
  );
}
