/**
 * A message as it goes on the wire of a dot-terminated transfer: SMTP and
 * LMTP DATA (RFC 5321 §4.5.2), POP3 RETR and TOP (RFC 1939 §3). A dot that
 * starts a line (at offset 0 or after a LF, the byte a receiver splits on) is
 * doubled, every other byte is kept, and the terminating `.` line follows.
 * `lastLine` is what must end the last line before it: any LF for POP3 (the
 * client splits on LF), CRLF for SMTP and LMTP; a message ending otherwise gets
 * a CRLF. Linear in the message.
 */
export function dotStuff(data: Buffer, lastLine: 'lf' | 'crlf'): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let d = data.indexOf(0x2e); d !== -1; d = data.indexOf(0x2e, d + 1)) {
    if (d !== 0 && data[d - 1] !== 0x0a) continue;
    parts.push(data.subarray(from, d), Buffer.from('.'));
    from = d;
  }
  parts.push(data.subarray(from));
  const n = data.length;
  const ended = n === 0 || (data[n - 1] === 0x0a && (lastLine === 'lf' || (n >= 2 && data[n - 2] === 0x0d)));
  parts.push(Buffer.from(ended ? '.\r\n' : '\r\n.\r\n'));
  return Buffer.concat(parts);
}
