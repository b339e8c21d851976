/**
 * A message's preview (IMAP PREVIEW, RFC 8970): the start of what it says,
 * as a list of messages shows it. Made when the message is parsed (at
 * delivery and APPEND) and kept in its stored structure, so listing a
 * mailbox never reads message bodies for it.
 *
 * The text is the first text/plain part that is not an attachment (else the
 * first text/html, without its markup), its transfer encoding and charset
 * undone, quoted lines ("> ") left out, white space collapsed, cut to
 * PREVIEW_CHARS characters. Bounded: at most PREVIEW_SOURCE bytes of the part
 * are decoded, and the walk over the parts is the structure's own bound.
 */
import type { MimeNode } from './index.ts';
import { decodePartBody } from './words.ts';

export const PREVIEW_CHARS = 200;
const PREVIEW_SOURCE = 16 * 1024;

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** The text of the markup: no tags, no style or script, the common entities decoded. */
function htmlText(html: string): string {
  return html
    .replace(/<(style|script)\b[^>]*>[^<]*(?:<(?!\/\1)[^<]*)*<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#\d{1,7}|#x[0-9a-f]{1,6}|[a-z]{2,6});/gi, (all, e: string) => {
      if (e[0] !== '#') return ENTITIES[e.toLowerCase()] ?? all;
      const n = e[1] === 'x' || e[1] === 'X' ? Number.parseInt(e.slice(2), 16) : Number(e.slice(1));
      return n > 0 && n <= 0x10ffff ? String.fromCodePoint(n) : ' ';
    });
}

/**
 * How much of a text/plain part is decoded first. When the lines it holds whole give enough text the
 * preview is theirs (a 5 KB message's preview cost three quarters of its parse when the whole part was
 * decoded); else the part is decoded again up to PREVIEW_SOURCE, as it always was.
 */
const PREVIEW_WINDOW = 2048;

/** White space collapsed: what the preview is cut from. */
const flatten = (text: string) => text.replace(/\s+/g, ' ').trim();

/** At most PREVIEW_CHARS characters (code points, not UTF-16 units) of the flattened text. */
function cut(flat: string): string {
  let end = 0;
  for (let n = 0; n < PREVIEW_CHARS && end < flat.length; n++) {
    const c = flat.charCodeAt(end);
    const pair = c >= 0xd800 && c <= 0xdbff && (flat.charCodeAt(end + 1) & 0xfc00) === 0xdc00;
    end += pair ? 2 : 1;
  }
  return flat.slice(0, end).trimEnd();
}

/** `window`: the first part of a text/plain part decoded (the tests set it to check any cut gives the same). */
export function messagePreview(raw: Buffer, root: MimeNode, window = PREVIEW_WINDOW): string {
  let plain: MimeNode | null = null;
  let html: MimeNode | null = null;
  // Depth first, in order, with an explicit stack (the structure's depth is bounded anyway).
  const stack: MimeNode[] = [root];
  while (stack.length && !plain) {
    const n = stack.pop()!;
    if (n.children) {
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]!);
      continue;
    }
    if (n.disposition?.value === 'attachment') continue;
    const type = n.contentType.value;
    if (type === 'text/plain') plain = n;
    else if (type === 'text/html') html ??= n;
  }
  const upTo = (part: MimeNode, size: number) => ({
    ...part,
    end: Math.min(part.end, part.bodyStart + size),
  });
  if (!plain) return html ? cut(flatten(htmlText(decodePartBody(raw, upTo(html, PREVIEW_SOURCE))))) : '';
  for (let size = Math.min(window, PREVIEW_SOURCE); ; size = PREVIEW_SOURCE) {
    const part = upTo(plain, size);
    const last = part.end === plain.end || size >= PREVIEW_SOURCE;
    const lines = decodePartBody(raw, part).split(/\r?\n/);
    // A window ends anywhere (in a line, a character, a base64 quantum, a quoted-printable escape), and all
    // of that lies in its last line: without it, the lines are the start of the part's, and so is the text.
    if (!last) lines.pop();
    const flat = flatten(lines.filter((line) => !line.startsWith('>')).join(' '));
    if (last || flat.length >= 2 * PREVIEW_CHARS) return cut(flat);
  }
}
