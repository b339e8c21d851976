/**
 * MIME structure of a stored message, computed once at delivery or APPEND.
 *
 * Invariant: the message bytes are never rewritten. Every node records byte
 * offsets into the original buffer, so IMAP can serve BODY[1.2.MIME],
 * BODY[TEXT], BODY[HEADER] … straight from the blob (RFC 3501 §6.4.5), and
 * the parsed fields that ENVELOPE and BODYSTRUCTURE need (RFC 3501 §7.4.2).
 */
import { type AddressEntry, parseAddressList } from './address.ts';
import { messagePreview } from './preview.ts';
import { type SortFields, sortFields } from './sort-fields.ts';

export {
  type AddressEntry,
  type EnvelopeAddress,
  type EnvelopeGroup,
  flatAddresses,
  MAX_ADDRESSES,
  parseAddressList,
} from './address.ts';
export { baseSubject, casemap, casemapText, subjectKey } from './collation.ts';
export { type HeaderDate, parseHeaderDate } from './date.ts';
export { dotStuff } from './dot-stuff.ts';
export { messagePreview, PREVIEW_CHARS } from './preview.ts';
export {
  ancestors,
  firstAddress,
  MAX_REFERENCES,
  MAX_SORT_TEXT,
  messageIds,
  type SortFields,
  sortFields,
} from './sort-fields.ts';
export {
  decodeCharset,
  decodePartBody,
  decodeQuotedPrintable,
  decodeTransfer,
  decodeWords,
} from './words.ts';

export interface HeaderField {
  /** Lower-cased field name. */
  key: string;
  /** Unfolded value, without the name and colon, leading white space trimmed. */
  value: string;
}

export interface ParamValue {
  value: string;
  params: Record<string, string>;
}

/** The raw (still encoded) values IMAP's ENVELOPE needs (RFC 3501 §7.4.2). */
export interface Envelope {
  date: string | null;
  subject: string | null;
  from: AddressEntry[] | null;
  sender: AddressEntry[] | null;
  replyTo: AddressEntry[] | null;
  to: AddressEntry[] | null;
  cc: AddressEntry[] | null;
  bcc: AddressEntry[] | null;
  inReplyTo: string | null;
  messageId: string | null;
}

export interface MimeNode {
  /** Offset of the first header byte. */
  start: number;
  /** Offset of the first body byte (after the blank line), equal to `end` when there is no body. */
  bodyStart: number;
  /** Offset one past the last byte of this part. */
  end: number;
  contentType: ParamValue;
  disposition: ParamValue | null;
  encoding: string;
  contentId: string | null;
  description: string | null;
  language: string | null;
  location: string | null;
  md5: string | null;
  /** Number of lines in the body (BODYSTRUCTURE for text/* and message/rfc822). */
  bodyLines: number;
  /** Sub-parts of a multipart/*. */
  children?: MimeNode[];
  /** The embedded message of a message/rfc822 (or message/global) part. */
  message?: MimeNode;
  /** Set on the root node and on the root of every embedded message. */
  envelope?: Envelope;
}

export interface MessageStructure {
  size: number;
  root: MimeNode;
  /** The start of its text (preview.ts); absent in structures stored before it was made. */
  preview?: string;
  /** What SORT and THREAD read of it (sort-fields.ts); absent in structures stored before it was made. */
  sort?: SortFields;
}

/**
 * Limits on the work and the size of the structure of one message; what
 * lies beyond them stays in the stored bytes (BODY[] is always whole) but is
 * not described by the structure (docs/decisions.md, "Bounded parsing"):
 * - deeper nesting than MAX_DEPTH: the part is a leaf (its body is opaque);
 * - more than MAX_PARTS parts in all: the multipart that would exceed it
 *   ends with the part before, which runs to the multipart's end;
 * - a header block longer than MAX_HEADER_BYTES, or with more than
 *   MAX_HEADER_FIELDS fields: the rest is not read for the structure;
 * - more than MAX_ADDRESSES entries in an address field: the rest is left out.
 * Dovecot bounds the same things (message_max_parts 10,000, depth 100).
 */
export const MAX_DEPTH = 64;
export const MAX_PARTS = 10_000;
export const MAX_HEADER_BYTES = 1024 * 1024;
export const MAX_HEADER_FIELDS = 5_000;

const CR = 0x0d;
const LF = 0x0a;

/** Finds the end of the header block: returns [headerEnd, bodyStart]. */
function findHeaderEnd(buf: Buffer, start: number, end: number): [number, number] {
  let i = start;
  // A part that starts with an empty line has an empty header.
  if (buf[i] === LF) return [i, i + 1];
  if (buf[i] === CR && buf[i + 1] === LF) return [i, i + 2];
  while (i < end) {
    const nl = buf.indexOf(LF, i);
    if (nl === -1 || nl >= end) return [end, end];
    const next = nl + 1;
    if (next >= end) return [end, end];
    if (buf[next] === LF) return [next, next + 1];
    if (buf[next] === CR && next + 1 < end && buf[next + 1] === LF) return [next, next + 2];
    i = next;
  }
  return [end, end];
}

/** Where the body of a message starts (after the blank line ending its header); its length when there is none. */
export function bodyOffset(buf: Buffer): number {
  return findHeaderEnd(buf, 0, buf.length)[1];
}

export function parseHeaderBlock(text: string, maxFields = MAX_HEADER_FIELDS): HeaderField[] {
  const fields: HeaderField[] = [];
  const lines = text.split(/\r?\n/);
  let current: string | null = null;
  const flush = () => {
    if (current === null) return;
    const colon = current.indexOf(':');
    if (colon > 0) {
      fields.push({
        key: current.slice(0, colon).trim().toLowerCase(),
        value: current.slice(colon + 1).replace(/^[ \t]+/, ''),
      });
    }
    current = null;
  };
  for (const line of lines) {
    if (fields.length >= maxFields) break;
    const c = line.charCodeAt(0);
    if ((c === 0x20 || c === 0x09) && current !== null) {
      // RFC 5322 §2.2.3: unfolding removes the CRLF, keeping the white space.
      current += line;
    } else {
      flush();
      if (line.length > 0) current = line;
    }
  }
  flush();
  return fields;
}

function splitParams(value: string): string[] {
  const out: string[] = [];
  let buf = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted && c === '\\' && i + 1 < value.length) {
      buf += c + value[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ';' && !quoted) {
      out.push(buf);
      buf = '';
    } else {
      buf += c;
    }
  }
  out.push(buf);
  return out;
}

/** Parses `type/subtype; a=b; c="d"` (RFC 2045 §5.1). Parameter names are lower-cased. */
export function parseParamValue(value: string): ParamValue {
  const [head = '', ...rest] = splitParams(value);
  const params: Record<string, string> = {};
  for (const part of rest) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    let val = part.slice(eq + 1).trim();
    if (val.startsWith('"') && val.endsWith('"') && val.length >= 2) {
      val = val.slice(1, -1).replace(/\\(.)/g, '$1');
    }
    if (key) params[key] = val;
  }
  return { value: head.trim().toLowerCase(), params };
}

function parseAddresses(value: string | undefined): AddressEntry[] | null {
  if (value === undefined) return null;
  const out = parseAddressList(value);
  return out.length > 0 ? out : null;
}

/** The first value of each field name: one pass, so a header of many fields costs no more than reading it. */
function firstValues(fields: HeaderField[]): (key: string) => string | undefined {
  const map = new Map<string, string>();
  for (const f of fields) if (!map.has(f.key)) map.set(f.key, f.value);
  return (key) => map.get(key);
}

export function buildEnvelope(fields: HeaderField[]): Envelope {
  const first = firstValues(fields);
  const from = parseAddresses(first('from'));
  return {
    date: first('date') ?? null,
    subject: first('subject') ?? null,
    from,
    // RFC 3501 §7.4.2: sender and reply-to default to from.
    sender: parseAddresses(first('sender')) ?? from,
    replyTo: parseAddresses(first('reply-to')) ?? from,
    to: parseAddresses(first('to')),
    cc: parseAddresses(first('cc')),
    bcc: parseAddresses(first('bcc')),
    inReplyTo: first('in-reply-to')?.trim() ?? null,
    messageId: first('message-id')?.trim() ?? null,
  };
}

function countLines(buf: Buffer, start: number, end: number): number {
  if (end <= start) return 0;
  let n = 0;
  let i = start;
  for (;;) {
    const nl = buf.indexOf(LF, i);
    if (nl === -1 || nl >= end) break;
    n++;
    i = nl + 1;
  }
  return i < end ? n + 1 : n;
}

/**
 * Locates the body parts of a multipart between `start` and `end`
 * (RFC 2046 §5.1.1): a delimiter is CRLF "--" boundary at the start of a line;
 * the line break before it belongs to the delimiter, not to the part.
 */
function findParts(
  buf: Buffer,
  start: number,
  end: number,
  boundary: string,
  budget: Budget,
): Array<[number, number]> {
  const delim = Buffer.from(`--${boundary}`, 'latin1');
  const parts: Array<[number, number]> = [];
  let partStart = -1;
  let i = start;
  while (i < end) {
    const at = buf.indexOf(delim, i);
    if (at === -1 || at + delim.length > end) break;
    const lineStart = at === start || buf[at - 1] === LF;
    if (!lineStart) {
      i = at + 1;
      continue;
    }
    const afterDelim = at + delim.length;
    const closing = buf[afterDelim] === 0x2d && buf[afterDelim + 1] === 0x2d;
    // The rest of the delimiter line may hold only transport padding.
    let j = closing ? afterDelim + 2 : afterDelim;
    while (j < end && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
    const eol = j >= end || buf[j] === LF || (buf[j] === CR && buf[j + 1] === LF);
    if (!eol) {
      i = at + 1;
      continue;
    }
    if (partStart !== -1) {
      // Out of parts: the part being read (the last one) runs to the end of the multipart, delimiters and all.
      if (budget.parts <= 1) break;
      budget.parts--;
      let partEnd = at;
      if (partEnd > partStart && buf[partEnd - 1] === LF) partEnd--;
      if (partEnd > partStart && buf[partEnd - 1] === CR) partEnd--;
      parts.push([partStart, Math.max(partStart, partEnd)]);
    }
    if (closing) return parts;
    const nl = buf.indexOf(LF, j);
    partStart = nl === -1 || nl >= end ? end : nl + 1;
    i = partStart;
  }
  // A missing closing delimiter (or the budget spent): the last part runs to the end.
  if (partStart !== -1 && partStart < end && budget.parts > 0) {
    budget.parts--;
    parts.push([partStart, end]);
  }
  return parts;
}

/** How many more parts one message may have described; and its References:, which no node keeps. */
interface Budget {
  parts: number;
  references?: string | null;
}

function parseNode(
  buf: Buffer,
  start: number,
  end: number,
  depth: number,
  defaultType: string,
  isMessageRoot: boolean,
  budget: Budget,
): MimeNode {
  const [headerEnd, bodyStart] = findHeaderEnd(buf, start, end);
  const fields = parseHeaderBlock(buf.toString('utf8', start, Math.min(headerEnd, start + MAX_HEADER_BYTES)));
  const get = firstValues(fields);
  const ctRaw = get('content-type');
  let contentType = ctRaw ? parseParamValue(ctRaw) : { value: defaultType, params: {} };
  if (!contentType.value.includes('/')) contentType = { value: defaultType, params: contentType.params };
  if (contentType.value === 'text/plain' && !ctRaw) contentType.params.charset = 'us-ascii';
  const dispRaw = get('content-disposition');
  const node: MimeNode = {
    start,
    bodyStart,
    end,
    contentType,
    disposition: dispRaw ? parseParamValue(dispRaw) : null,
    encoding: (get('content-transfer-encoding') ?? '7bit').trim().toLowerCase(),
    contentId: get('content-id')?.trim() ?? null,
    description: get('content-description') ?? null,
    language: get('content-language')?.trim() ?? null,
    location: get('content-location')?.trim() ?? null,
    md5: get('content-md5')?.trim() ?? null,
    bodyLines: countLines(buf, bodyStart, end),
  };
  if (isMessageRoot) node.envelope = buildEnvelope(fields);
  if (depth === 0) budget.references = get('references') ?? null;
  if (depth >= MAX_DEPTH) return node;
  const [type, subtype] = contentType.value.split('/') as [string, string];
  if (type === 'multipart' && contentType.params.boundary) {
    const childDefault = subtype === 'digest' ? 'message/rfc822' : 'text/plain';
    node.children = findParts(buf, bodyStart, end, contentType.params.boundary, budget).map(([s, e]) =>
      parseNode(buf, s, e, depth + 1, childDefault, false, budget),
    );
  } else if (type === 'message' && (subtype === 'rfc822' || subtype === 'global') && budget.parts > 0) {
    budget.parts--;
    node.message = parseNode(buf, bodyStart, end, depth + 1, 'text/plain', true, budget);
  }
  return node;
}

/** The structure of a message, within the limits above; linear in its size (times the nesting depth, at most 64). */
export function parseMessage(raw: Buffer): MessageStructure {
  const budget: Budget = { parts: MAX_PARTS };
  const root = parseNode(raw, 0, raw.length, 0, 'text/plain', true, budget);
  return {
    size: raw.length,
    root,
    preview: messagePreview(raw, root),
    sort: sortFields(root.envelope!, budget.references),
  };
}

/**
 * Resolves an IMAP section part number such as `1.2` (RFC 3501 §6.4.5) to its
 * node. The parts of a message (the top level, or the one inside a
 * message/rfc822 part) are its children when it is multipart; otherwise it
 * has one part, numbered 1: its own body, whose node is the message's. The
 * sub-parts of a message/rfc822 part are the parts of the message inside it,
 * so for such a part `3`, `3.1` is the inner message's first part and
 * BODY[3] is the whole inner message.
 */
export function findPart(root: MimeNode, path: number[]): MimeNode | null {
  let node: MimeNode | null = null;
  let message: MimeNode = root;
  for (const n of path) {
    if (node) {
      if (node.children) {
        node = node.children[n - 1] ?? null;
        if (!node) return null;
        continue;
      }
      if (!node.message) return null;
      message = node.message;
    }
    // The n-th part of `message`.
    if (message.children) node = message.children[n - 1] ?? null;
    else node = n === 1 ? message : null;
    if (!node) return null;
  }
  return node;
}

function shiftNode(node: MimeNode, by: number, isRoot: boolean): MimeNode {
  const out: MimeNode = {
    ...node,
    start: isRoot ? 0 : node.start + by,
    bodyStart: node.bodyStart + by,
    end: node.end + by,
  };
  if (node.children) out.children = node.children.map((c) => shiftNode(c, by, false));
  if (node.message) out.message = shiftNode(node.message, by, false);
  return out;
}

/**
 * The structure of the same message with `prefixLength` bytes of header
 * fields (Return-Path:, Delivered-To: …) put in front, without parsing it
 * again: the delivery of one message to many recipients parses it once.
 */
export function withPrependedHeaders(structure: MessageStructure, prefixLength: number): MessageStructure {
  return {
    size: structure.size + prefixLength,
    root: shiftNode(structure.root, prefixLength, true),
    // Header fields in front change no text.
    ...(structure.preview !== undefined ? { preview: structure.preview } : {}),
    ...(structure.sort !== undefined ? { sort: structure.sort } : {}),
  };
}
