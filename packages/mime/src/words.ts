/**
 * Decoding what headers and bodies carry encoded: RFC 2047 encoded words, quoted-printable (RFC 2045
 * §6.7) and a declared charset. Total: malformed input decodes to something, never an exception. Used by
 * IMAP SEARCH and by Sieve's header tests, which both compare decoded text.
 */
import type { MimeNode } from './index.ts';

export function decodeCharset(bytes: Buffer, charset: string | undefined): string {
  try {
    return new TextDecoder(charset?.trim() || 'utf-8').decode(bytes);
  } catch {
    // An unknown charset: the bytes as UTF-8 with replacement characters still match ASCII words.
    return new TextDecoder('utf-8').decode(bytes);
  }
}

export function decodeQuotedPrintable(text: string, header = false): Buffer {
  const src = header ? text.replace(/_/g, ' ') : text.replace(/=\r?\n/g, '');
  const out = Buffer.allocUnsafe(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src.charCodeAt(i);
    if (c === 0x3d && i + 2 < src.length && /^[0-9A-Fa-f]{2}$/.test(src.slice(i + 1, i + 3))) {
      out[n++] = Number.parseInt(src.slice(i + 1, i + 3), 16);
      i += 2;
    } else {
      out[n++] = c & 0xff;
    }
  }
  return out.subarray(0, n);
}

/** Decodes RFC 2047 encoded words; adjacent words separated only by white space join. */
export function decodeWords(value: string): string {
  if (!value.includes('=?')) return value;
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

/**
 * The body of a leaf part with its Content-Transfer-Encoding undone (RFC 2045 §6): base64 and
 * quoted-printable decoded, 7bit, 8bit and binary as they are; null for an encoding not known here.
 */
export function decodeTransfer(raw: Buffer, node: MimeNode): Buffer | null {
  const body = raw.subarray(node.bodyStart, node.end);
  switch (node.encoding.toLowerCase()) {
    case 'base64':
      return Buffer.from(body.toString('latin1'), 'base64');
    case 'quoted-printable':
      return decodeQuotedPrintable(body.toString('latin1'));
    case '7bit':
    case '8bit':
    case 'binary':
      return body;
    default:
      return null;
  }
}

/** The body of a leaf part as text: its transfer encoding undone (an unknown one left as is), in its charset. */
export function decodePartBody(raw: Buffer, node: MimeNode): string {
  const bytes = decodeTransfer(raw, node) ?? raw.subarray(node.bodyStart, node.end);
  return decodeCharset(bytes, node.contentType.params.charset);
}
