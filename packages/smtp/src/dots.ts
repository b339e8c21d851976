/**
 * Reading the message data of DATA as RFC 5321 §4.5.2 says, on
 * smtp-server's stream (pinned to an exact version for this reason):
 *
 * - a line holding a single dot, between two CRLFs, ends the data;
 * - any other line that starts with a dot loses that dot (smtp-server took
 *   it away only when a second dot followed, so `.x` was stored as `.x`);
 * - a dot alone on a line that a bare CR or LF begins or ends (`\n.\n`,
 *   `\n.\r\n`, `\r.\r` …) is what SMTP smuggling sends: some servers read it as
 *   the end of the data and others do not. It is not an end here; the data
 *   stream is marked (`smuggling`), and the MX and submission refuse it. The
 *   check runs on the bytes as they came, so a stuffed line such as `..\r\r\n`
 *   (two dots: never an end anywhere) is content, stored as `.\r\r\n`.
 *
 * smtp-server's own `_feedDataStream` is replaced whole (a wrap cannot change
 * its unstuffing); test/dots.test.ts fails if the members this relies on
 * (`_feedDataStream`, `_endDataMode`, `_countDataBytes`, `startDataMode`,
 * `_dataStream`) disappear from a future smtp-server.
 */
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

interface DataStream {
  write(b: Buffer): boolean;
  writable: boolean;
  destroyed: boolean;
  once(ev: string, fn: () => void): void;
  removeListener(ev: string, fn: () => void): void;
  /** Set when the data held a dot line with a bare line ending. */
  smuggling?: boolean;
}

interface Stream {
  _dataStream: DataStream | null;
  startDataMode(maxBytes?: number): DataStream;
  _feedDataStream(chunk: Buffer, done: (err?: Error) => void): void;
  _endDataMode(chunk: Buffer | false, remainder: Buffer, done: (err?: Error) => void): void;
  _countDataBytes(n: number): void;
  /** The two wire bytes before the next one, and bytes held back for look-ahead. */
  _dotTail?: [number, number];
  _dotHold?: Buffer | null;
}

/** Checks that smtp-server still has what the reader replaces and calls (see the test). */
export const REQUIRED_MEMBERS = [
  '_feedDataStream',
  '_endDataMode',
  '_countDataBytes',
  'startDataMode',
] as const;

export function installDotReader(): void {
  const proto = SMTPStream.prototype as unknown as Stream & { _dotReader?: boolean };
  if (proto._dotReader) return;
  proto._dotReader = true;

  const startDataMode = proto.startDataMode;
  proto.startDataMode = function startWithDots(maxBytes) {
    // The data begins a line, as if after a CRLF.
    this._dotTail = [CR, LF];
    this._dotHold = null;
    return startDataMode.call(this, maxBytes);
  };

  proto._feedDataStream = function feedDataStream(chunk, done) {
    const stream = this._dataStream!;
    const buf = this._dotHold ? Buffer.concat([this._dotHold, chunk]) : chunk;
    this._dotHold = null;
    const tail = this._dotTail ?? [CR, LF];
    const at = (k: number): number => (k >= 0 ? buf[k]! : k === -1 ? tail[1] : tail[0]);
    const pieces: Buffer[] = [];
    let from = 0;
    let end = buf.length;
    for (let d = buf.indexOf(DOT); d !== -1 && d < end; d = buf.indexOf(DOT, d + 1)) {
      const p1 = at(d - 1);
      if (p1 !== LF && p1 !== CR) continue;
      // Two bytes after the dot decide what it is; wait for them when they are not here yet.
      if (d + 2 >= buf.length && !(d + 1 < buf.length && buf[d + 1] !== CR && buf[d + 1] !== LF)) {
        end = d;
        break;
      }
      const p2 = at(d - 2);
      const n1 = buf[d + 1];
      const n2 = buf[d + 2];
      const crlfBefore = p1 === LF && p2 === CR;
      if (crlfBefore && n1 === CR && n2 === LF) {
        // CRLF "." CRLF: the end of the data.
        if (d > from) pieces.push(buf.subarray(from, d));
        const content = pieces.length ? Buffer.concat(pieces) : null;
        if (content) this._countDataBytes(content.length);
        this._endDataMode(content ?? false, buf.subarray(d + 3), done);
        return;
      }
      // A dot alone on a line with a bare CR or LF on either side: smuggling, never an end.
      if (n1 === CR || n1 === LF) stream.smuggling = true;
      // A line that starts with a dot (after a line feed) loses it.
      if (p1 === LF) {
        if (d > from) pieces.push(buf.subarray(from, d));
        from = d + 1;
      }
    }
    if (end > from) pieces.push(buf.subarray(from, end));
    if (end < buf.length) {
      this._dotHold = buf.subarray(end);
      this._dotTail = [at(end - 2), at(end - 1)];
    } else {
      this._dotTail = [at(buf.length - 2), at(buf.length - 1)];
    }
    if (!pieces.length) return done();
    const data = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    this._countDataBytes(data.length);
    if (!stream.writable) return done();
    if (stream.write(data) || stream.destroyed) return done();
    // Wait for the reader; a stream that is destroyed never drains, it only closes.
    const go = () => {
      stream.removeListener('drain', go);
      stream.removeListener('close', go);
      done();
    };
    stream.once('drain', go);
    stream.once('close', go);
  };
}
