// Writing to a long-lived TLS connection without Node keeping a buffer as large as the largest write.
//
// Node's TLS socket encrypts each write into an output buffer (NodeBIO) that it sizes to the write (the
// allocation hint of nodejs/node#31499) and keeps, once drained, as its write head for the life of the
// connection; a stream's queued writes are joined into one write by writev. So an IMAP connection that
// once sent a 20 MB attachment in one write holds 20 MB until it closes. Measured on Node 24 (OpenSSL
// 3.5) with 1,000 connections that each received 2 MB and then stayed open: 2,009 KiB resident per
// connection when written at once, 70 KiB when written as below (docs/decisions.md).
//
// PacedWriter hands the socket at most SLICE bytes per write and the next slice only once the previous
// one has gone out, so the TLS output buffer stays at one record's size. Plain sockets lose nothing by it.
import { Writable } from 'node:stream';

/** A TLS record carries at most 16,384 bytes; a little less leaves room for its header and tag in one 16 KiB buffer. */
export const SLICE = 16_000;

export class PacedWriter extends Writable {
  private readonly socket: Writable;

  /** `highWaterMark`: bytes queued here before write() returns false and 'drain' is worth awaiting. */
  constructor(socket: Writable, highWaterMark = 1024 * 1024) {
    super({ highWaterMark });
    this.socket = socket;
    // A failed write means the socket failed or closed; its owner learns that from the socket itself.
    this.on('error', () => undefined);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    let offset = 0;
    const next = (err?: Error | null): void => {
      if (err || offset >= chunk.length) {
        done(err);
        return;
      }
      if (this.socket.destroyed) {
        done(new Error('socket closed'));
        return;
      }
      const part = chunk.subarray(offset, offset + SLICE);
      offset += part.length;
      this.socket.write(part, next);
    };
    next();
  }

  override _final(done: (err?: Error | null) => void): void {
    if (this.socket.destroyed || this.socket.writableEnded) done();
    else this.socket.end(() => done());
  }
}
