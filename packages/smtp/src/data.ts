/** Checks on a message's header, and the edits the MX and submission make to it. */

/** The header block: up to the first empty line. */
export function headerBlock(data: Buffer): string {
  const crlf = data.indexOf('\r\n\r\n');
  const lf = data.indexOf('\n\n');
  const ends = [crlf, lf].filter((n) => n !== -1);
  const end = ends.length ? Math.min(...ends) : data.length;
  return data.toString('latin1', 0, end);
}

/** Whether the MX marked the message as spam (`X-Spam: Yes`; it removes any such field that came from outside). */
export function markedAsSpam(data: Buffer): boolean {
  return /(^|\n)X-Spam:[ \t]*Yes[ \t]*(\r?\n|$)/i.test(headerBlock(data));
}

/** How many header fields named `name` the message has (RFC 5321 §6.3 counts Received: for loop detection). */
export function countHeaderFields(data: Buffer, name: string): number {
  const re = new RegExp(`^${name}:`, 'gim');
  return headerBlock(data).match(re)?.length ?? 0;
}

/**
 * Breaks lines longer than `max` octets (RFC 5321 §4.5.3.1.6: 998 plus CRLF)
 * the way Postfix does (smtp_line_length_limit): CRLF and a space are
 * inserted, so a long header line becomes a folded one. Returns the same
 * buffer when no line is too long.
 */
export function foldLongLines(data: Buffer, max = 998): Buffer {
  let long = false;
  for (let start = 0; start < data.length; ) {
    const nl = data.indexOf(0x0a, start);
    const end = nl === -1 ? data.length : nl;
    const len = end - start - (end > start && data[end - 1] === 0x0d ? 1 : 0);
    if (len > max) {
      long = true;
      break;
    }
    start = end + 1;
  }
  if (!long) return data;
  const out: Buffer[] = [];
  for (let start = 0; start < data.length; ) {
    const nl = data.indexOf(0x0a, start);
    const next = nl === -1 ? data.length : nl + 1;
    const contentEnd = nl === -1 ? data.length : data[nl - 1] === 0x0d ? nl - 1 : nl;
    let pos = start;
    let room = max;
    while (contentEnd - pos > room) {
      out.push(data.subarray(pos, pos + room), Buffer.from('\r\n '));
      pos += room;
      room = max - 1;
    }
    out.push(data.subarray(pos, next));
    start = next;
  }
  return Buffer.concat(out);
}

/**
 * Rewrites the header section field by field, keeping the body's bytes as
 * they are: `edit` sees each field's lower-cased name and its raw text
 * (folding and line ending included) and returns it unchanged, a replacement
 * (complete lines ending in CRLF), or null to drop it.
 */
export function editHeader(data: Buffer, edit: (name: string, raw: string) => string | null): Buffer {
  // The header ends after the line ending that precedes the empty line.
  const crlf = data.indexOf('\r\n\r\n');
  const lf = data.indexOf('\n\n');
  const ends = [crlf === -1 ? -1 : crlf + 2, lf === -1 ? -1 : lf + 1].filter((n) => n > 0);
  const end = ends.length ? Math.min(...ends) : data.length;
  const fields: string[] = [];
  for (const line of data.toString('latin1', 0, end).split(/(?<=\n)/)) {
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1] += line;
    else if (line) fields.push(line);
  }
  let changed = false;
  const out = fields.map((f) => {
    const colon = f.indexOf(':');
    const name = colon > 0 ? f.slice(0, colon).trim().toLowerCase() : '';
    const r = name ? edit(name, f) : f;
    if (r !== f) changed = true;
    return r ?? '';
  });
  if (!changed) return data;
  return Buffer.concat([Buffer.from(out.join(''), 'latin1'), data.subarray(end)]);
}
