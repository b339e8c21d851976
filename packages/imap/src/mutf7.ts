/**
 * Modified UTF-7 for mailbox names (RFC 3501 §5.1.3). Clients that have not
 * enabled UTF8=ACCEPT send and expect names in this form; the store keeps
 * Unicode. Decoding is strict: only the canonical encoding of a name is
 * accepted, so one mailbox can never be reached under two spellings.
 */

export class MailboxNameError extends Error {}

const toB64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '').replace(/\//g, ',');

export function encodeMutf7(name: string): string {
  let out = '';
  let pending = '';
  const flush = () => {
    if (!pending) return;
    const utf16 = Buffer.from(pending, 'utf16le');
    utf16.swap16(); // UTF-16BE, as the RFC requires
    out += `&${toB64(utf16)}-`;
    pending = '';
  };
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x20 && c <= 0x7e) {
      flush();
      out += ch === '&' ? '&-' : ch;
    } else {
      pending += ch;
    }
  }
  flush();
  return out;
}

export function decodeMutf7(encoded: string): string {
  let out = '';
  let i = 0;
  while (i < encoded.length) {
    const c = encoded.charCodeAt(i);
    if (c < 0x20 || c > 0x7e)
      throw new MailboxNameError('mailbox name is not 7-bit: use modified UTF-7 or ENABLE UTF8=ACCEPT');
    if (encoded[i] !== '&') {
      out += encoded[i];
      i++;
      continue;
    }
    const end = encoded.indexOf('-', i + 1);
    if (end === -1) throw new MailboxNameError('unterminated modified UTF-7 sequence');
    const b64 = encoded.slice(i + 1, end);
    if (b64 === '') {
      out += '&';
    } else {
      if (!/^[A-Za-z0-9+,]+$/.test(b64) || b64.length % 4 === 1)
        throw new MailboxNameError('bad modified UTF-7 sequence');
      const bytes = Buffer.from(b64.replace(/,/g, '/'), 'base64');
      if (bytes.length % 2 !== 0) throw new MailboxNameError('bad modified UTF-7 sequence');
      bytes.swap16();
      const text = bytes.toString('utf16le');
      if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text)) {
        throw new MailboxNameError('bad modified UTF-7 sequence (unpaired surrogate)');
      }
      out += text;
    }
    i = end + 1;
  }
  // Only the canonical form: no printable ASCII encoded, no split or padded sequences.
  if (encodeMutf7(out) !== encoded)
    throw new MailboxNameError('mailbox name is not in canonical modified UTF-7');
  return out;
}
