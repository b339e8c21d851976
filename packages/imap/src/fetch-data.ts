/**
 * What FETCH returns, computed from the stored bytes and the MIME structure
 * the MDA recorded (RFC 3501 §6.4.5 and §7.4.2): ENVELOPE, BODYSTRUCTURE and
 * BODY[section]<partial>. Values are plain JS (arrays, strings, numbers,
 * null) in the shape IMAP response compilers take: a list is an array, NIL is
 * null. The bytes come straight from the blob, so BODY[] is the message byte
 * for byte as delivered.
 */
import {
  type AddressEntry,
  type Envelope,
  type EnvelopeAddress,
  findPart,
  type MimeNode,
  type ParamValue,
} from '@mailwerk/mime';

import type { ImapValue } from './protocol/encode.ts';

export type { ImapValue };

/**
 * One address: (name adl mailbox host). A NIL host marks a group (RFC 3501
 * §7.4.2), so an address without a domain gets Dovecot's placeholders
 * instead, which no client mistakes for a group.
 */
function one(a: EnvelopeAddress): ImapValue[] {
  const at = a.address.lastIndexOf('@');
  const local = at === -1 ? a.address : a.address.slice(0, at);
  const host = at === -1 ? '' : a.address.slice(at + 1);
  return [a.name || null, a.route || null, local || 'MISSING_MAILBOX', host || 'MISSING_DOMAIN'];
}

function address(entries: AddressEntry[] | null): ImapValue {
  if (!entries || entries.length === 0) return null;
  const out: ImapValue[] = [];
  const list: ImapValue[] = [{ run: out }];
  for (const e of entries) {
    if ('group' in e) {
      // RFC 3501 §7.4.2: a group is marked by a start entry (NIL host, group name as mailbox) and an end entry (all NIL).
      out.push([null, null, e.name, null]);
      for (const m of e.group) out.push(one(m));
      out.push([null, null, null, null]);
    } else {
      out.push(one(e));
    }
  }
  return list;
}

export function envelopeValue(env: Envelope | undefined): ImapValue {
  const e = env ?? {
    date: null,
    subject: null,
    from: null,
    sender: null,
    replyTo: null,
    to: null,
    cc: null,
    bcc: null,
    inReplyTo: null,
    messageId: null,
  };
  return [
    e.date,
    e.subject,
    address(e.from),
    address(e.sender),
    address(e.replyTo),
    address(e.to),
    address(e.cc),
    address(e.bcc),
    e.inReplyTo,
    e.messageId,
  ];
}

function params(p: Record<string, string>): ImapValue {
  const entries = Object.entries(p);
  return entries.length ? entries.flat() : null;
}

function disposition(d: ParamValue | null): ImapValue {
  return d ? [d.value, params(d.params)] : null;
}

const language = (l: string | null): ImapValue => (l ? l.split(',').map((x) => x.trim()) : null);

/**
 * BODYSTRUCTURE (with extension data) or BODY (without), RFC 3501 §7.4.2.
 * Type and subtype are given as the message spells them, lower-cased, as
 * Dovecot does; clients compare them case-insensitively.
 */
export function bodyStructureValue(node: MimeNode, extended = true): ImapValue {
  const [type = 'text', subtype = 'plain'] = node.contentType.value.split('/');
  if (node.children) {
    const bodies: ImapValue[] = node.children.map((c) => bodyStructureValue(c, extended));
    // A multipart without parts is invalid; RFC 3501 needs at least one body.
    if (bodies.length === 0)
      bodies.push(
        bodyStructureValue(
          { ...node, children: undefined, contentType: { value: 'text/plain', params: {} } } as MimeNode,
          extended,
        ),
      );
    const out: ImapValue[] = [{ run: bodies }, subtype];
    if (extended)
      out.push(
        params(node.contentType.params),
        disposition(node.disposition),
        language(node.language),
        node.location,
      );
    return out;
  }
  const size = node.end - node.bodyStart;
  const out: ImapValue[] = [
    type,
    subtype,
    params(node.contentType.params),
    node.contentId,
    node.description,
    node.encoding,
    size,
  ];
  if (node.message) {
    out.push(
      envelopeValue(node.message.envelope),
      bodyStructureValue(node.message, extended),
      node.bodyLines,
    );
  } else if (type === 'text') {
    out.push(node.bodyLines);
  }
  if (extended) out.push(node.md5, disposition(node.disposition), language(node.language), node.location);
  return out;
}

/** A parsed BODY[...] section: a part path and what of it. */
export interface Section {
  path: number[];
  kind: '' | 'HEADER' | 'TEXT' | 'MIME' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT';
  fields?: string[];
}

/** The header of `node` filtered by field names, keeping the original lines (folding included) and the closing blank line. */
function filterHeader(raw: Buffer, node: MimeNode, fields: string[], not: boolean): Buffer {
  const names = new Set(fields.map((f) => f.toLowerCase()));
  const text = raw.toString('latin1', node.start, node.bodyStart);
  const lines = text.split(/(?<=\n)/);
  const kept: string[] = [];
  let keep = false;
  for (const line of lines) {
    if (line === '\r\n' || line === '\n') break;
    if (/^[ \t]/.test(line)) {
      if (keep) kept.push(line);
      continue;
    }
    const name = line
      .slice(0, Math.max(0, line.indexOf(':')))
      .trim()
      .toLowerCase();
    keep = names.has(name) !== not;
    if (keep) kept.push(line);
  }
  return Buffer.from(`${kept.join('')}\r\n`, 'latin1');
}

/**
 * The bytes of a section, or null when the part does not exist (RFC 3501:
 * the server returns an empty string for a part that is not there).
 */
export function sectionBytes(raw: Buffer, root: MimeNode, section: Section): Buffer | null {
  if (section.path.length === 0 && section.kind === '') return raw;
  const node = section.path.length === 0 ? root : findPart(root, section.path);
  if (!node) return null;
  // HEADER and TEXT of a part address the message inside a message/rfc822 part.
  const msg = section.path.length === 0 ? root : node.message;
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
      return msg ? filterHeader(raw, msg, section.fields ?? [], section.kind === 'HEADER.FIELDS.NOT') : null;
  }
}

/** Applies a `<start.length>` partial (RFC 3501 §6.4.5). */
export function partial(bytes: Buffer, start: number, length?: number): Buffer {
  return bytes.subarray(
    Math.min(start, bytes.length),
    length === undefined ? undefined : Math.min(bytes.length, start + length),
  );
}
