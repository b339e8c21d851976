/**
 * The server name (SNI, RFC 6066 §3) and the ALPN protocols (RFC 7301 §3.1) of a TLS ClientHello, read
 * from the first bytes a client sends, before any TLS library sees them: the HTTPS listener answers an
 * ACME TLS-ALPN-01 validation (RFC 8737), which offers the protocol `acme-tls/1`, with the challenge's
 * certificate, and hands every other connection on untouched.
 *
 * Untrusted input: every length is checked against what is there, and anything malformed, truncated or
 * spread over more than the first record is null (the connection then goes on as a normal one).
 */
export interface ClientHelloInfo {
  serverName: string | null;
  alpn: string[];
}

/** At most one TLS record of plaintext (RFC 8446 §5.1) and its header. */
export const MAX_CLIENT_HELLO = 5 + 16_384;

class Reader {
  readonly buf: Buffer;
  pos: number;
  readonly end: number;
  constructor(buf: Buffer, start: number, end: number) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }
  u8(): number {
    if (this.pos + 1 > this.end) throw TRUNCATED;
    return this.buf[this.pos++]!;
  }
  u16(): number {
    if (this.pos + 2 > this.end) throw TRUNCATED;
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u24(): number {
    return (this.u8() << 16) | this.u16();
  }
  skip(n: number): void {
    if (this.pos + n > this.end) throw TRUNCATED;
    this.pos += n;
  }
  /** A sub-reader over the next `n` bytes, which this one skips. */
  sub(n: number): Reader {
    if (this.pos + n > this.end) throw TRUNCATED;
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
  get left(): number {
    return this.end - this.pos;
  }
}
const TRUNCATED = new Error('truncated');

export function readClientHello(data: Buffer): ClientHelloInfo | null {
  try {
    const rec = new Reader(data, 0, Math.min(data.length, MAX_CLIENT_HELLO));
    if (rec.u8() !== 22) return null; // handshake record
    rec.skip(2); // legacy record version
    const hs = rec.sub(rec.u16());
    if (hs.u8() !== 1) return null; // ClientHello
    const body = hs.sub(hs.u24());
    body.skip(2 + 32); // legacy version, random
    body.skip(body.u8()); // legacy session id
    body.skip(body.u16()); // cipher suites
    body.skip(body.u8()); // compression methods
    const info: ClientHelloInfo = { serverName: null, alpn: [] };
    if (body.left === 0) return info;
    const exts = body.sub(body.u16());
    while (exts.left > 0) {
      const type = exts.u16();
      const ext = exts.sub(exts.u16());
      if (type === 0) {
        const list = ext.sub(ext.u16());
        while (list.left > 0) {
          const kind = list.u8();
          const name = list.sub(list.u16());
          if (kind === 0 && info.serverName === null)
            info.serverName = data.toString('latin1', name.pos, name.end).toLowerCase();
        }
      } else if (type === 16) {
        const list = ext.sub(ext.u16());
        while (list.left > 0) {
          const p = list.sub(list.u8());
          info.alpn.push(data.toString('latin1', p.pos, p.end));
        }
      }
    }
    return info;
  } catch (err) {
    if (err === TRUNCATED) return null;
    throw err;
  }
}
