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

export function messagePreview(raw: Buffer, root: MimeNode): string {
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
  const part = plain ?? html;
  if (!part) return '';
  const cut = { ...part, end: Math.min(part.end, part.bodyStart + PREVIEW_SOURCE) };
  let text = decodePartBody(raw, cut);
  if (part === html) text = htmlText(text);
  else
    text = text
      .split(/\r?\n/)
      .filter((line) => !line.startsWith('>'))
      .join(' ');
  const flat = text.replace(/\s+/g, ' ').trim();
  return [...flat.slice(0, 2 * PREVIEW_CHARS)].slice(0, PREVIEW_CHARS).join('').trimEnd();
}
