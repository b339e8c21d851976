/**
 * What FETCH returns, computed from the stored bytes and the MIME structure
 * the MDA recorded (RFC 3501 §6.4.5 and §7.4.2): ENVELOPE, BODYSTRUCTURE and
 * BODY[section]<partial>. Values are plain JS (arrays, strings, numbers,
 * null) in the shape IMAP response compilers take: a list is an array, NIL is
 * null. The bytes come straight from the blob, so BODY[] is the message byte
 * for byte as delivered.
 */
import { type AddressEntry, type Envelope, findPart, type MimeNode, type ParamValue } from '@mailwerk/mime';

export type ImapValue = string | number | null | ImapValue[];

function address(entries: AddressEntry[] | null): ImapValue {
  if (!entries || entries.length === 0) return null;
  const out: ImapValue[] = [];
  const one = (name: string, addr: string): ImapValue[] => {
    const at = addr.lastIndexOf('@');
    return [
      name || null,
      null,
      at === -1 ? addr || null : addr.slice(0, at),
      at === -1 ? null : addr.slice(at + 1),
    ];
  };
  for (const e of entries) {
    if ('group' in e) {
      // RFC 3501 §7.4.2: a group is marked by a start entry (NIL host, group name as mailbox) and an end entry (all NIL).
      out.push([null, null, e.name, null]);
      for (const m of e.group) out.push(one(m.name, m.address));
      out.push([null, null, null, null]);
    } else {
      out.push(one(e.name, e.address));
    }
  }
  return out;
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
    const out: ImapValue[] = node.children.map((c) => bodyStructureValue(c, extended));
    // A multipart without parts is invalid; RFC 3501 needs at least one body.
    if (out.length === 0)
      out.push(
        bodyStructureValue(
          { ...node, children: undefined, contentType: { value: 'text/plain', params: {} } } as MimeNode,
          extended,
        ),
      );
    out.push(subtype);
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

export class SectionError extends Error {}

/** A parsed BODY[...] section: a part path and what of it. */
export interface Section {
  path: number[];
  kind: '' | 'HEADER' | 'TEXT' | 'MIME' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT';
  fields?: string[];
}

/** Parses section text such as `1.2.MIME`, `HEADER.FIELDS (From To)` or `` (the whole message). */
export function parseSection(spec: string): Section {
  const m =
    /^((?:[1-9]\d*)(?:\.[1-9]\d*)*)?(?:\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?(?:\s*\(([^)]*)\))?$/i.exec(
      spec.trim(),
    );
  if (!m) throw new SectionError(`invalid section "${spec}"`);
  const path = m[1] ? m[1].split('.').map(Number) : [];
  const kind = (m[2]?.toUpperCase() ?? '') as Section['kind'];
  if (kind === 'MIME' && path.length === 0) throw new SectionError('MIME needs a part number');
  const isFields = kind === 'HEADER.FIELDS' || kind === 'HEADER.FIELDS.NOT';
  if (isFields !== (m[3] !== undefined)) throw new SectionError(`invalid section "${spec}"`);
  const fields = isFields ? m[3]!.trim().split(/\s+/).filter(Boolean) : undefined;
  if (isFields && fields!.length === 0) throw new SectionError('HEADER.FIELDS needs at least one field name');
  return { path, kind, ...(fields ? { fields } : {}) };
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
