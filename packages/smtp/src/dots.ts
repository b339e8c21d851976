/**
 * Reading the message data of DATA as RFC 5321 §4.5.2 says, from the bytes
 * as the wire brings them, cut anywhere:
 *
 * - a line holding a single dot, between two CRLFs, ends the data;
 * - any other line that starts with a dot loses that dot (`.x` is stored as
 *   `x`, `..` as `.`);
 * - a dot alone on a line that a bare CR or LF begins or ends (`\n.\n`,
 *   `\n.\r\n`, `\r.\r` …) is what SMTP smuggling sends: some servers read it as
 *   the end of the data and others do not. It is not an end here; the reader
 *   is marked (`smuggling`) and the server refuses the message. The check runs
 *   on the bytes as they came, so a stuffed line such as `..\r\r\n` (two dots:
 *   never an end anywhere) is content, stored as `.\r\r\n`.
 *
 * The work is linear in the bytes: one `indexOf` pass for dots, at most two
 * bytes held back between chunks. Past `limit` bytes of content the rest is
 * counted and dropped, so an oversized message costs no more memory than the
 * limit. The chunks of BDAT (RFC 3030) go through `take`, as they are.
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

export class DataReader {
  /** Content bytes, unstuffed (also those dropped past the limit). */
  size = 0;
  /** Wire bytes fed so far (for the transfer rate). */
  wireBytes = 0;
  /** Whether the data held a dot line with a bare line ending. */
  smuggling = false;
  private readonly limit: number;
  private chunks: Buffer[] = [];
  private over = false;
  /** The two wire bytes before the next one (the data begins a line, as if after a CRLF). */
  private t0 = CR;
  private t1 = LF;
  /** Bytes held back until the next chunk tells what a dot near the end is. */
  private hold: Buffer | null = null;

  constructor(limit: number) {
    this.limit = limit;
  }

  /**
   * Takes the next bytes from the wire: null while the data goes on, or, once its end marker
   * was read, what followed it (the next commands, possibly empty).
   */
  feed(chunk: Buffer): Buffer | null {
    this.wireBytes += chunk.length;
    const buf = this.hold ? Buffer.concat([this.hold, chunk]) : chunk;
    this.hold = null;
    const { t0, t1 } = this;
    const at = (k: number): number => (k >= 0 ? buf[k]! : k === -1 ? t1 : t0);
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
      const n1 = buf[d + 1];
      if (p1 === LF && at(d - 2) === CR && n1 === CR && buf[d + 2] === LF) {
        // CRLF "." CRLF: the end of the data; the CRLF before the dot is the content's last line end.
        this.keep(buf.subarray(from, d));
        return buf.subarray(d + 3);
      }
      // A dot alone on a line with a bare CR or LF on either side: smuggling, never an end.
      if (n1 === CR || n1 === LF) this.smuggling = true;
      // A line that starts with a dot (after a line feed) loses it.
      if (p1 === LF) {
        this.keep(buf.subarray(from, d));
        from = d + 1;
      }
    }
    this.keep(buf.subarray(from, end));
    if (end < buf.length) this.hold = buf.subarray(end);
    this.t0 = at(end - 2);
    this.t1 = at(end - 1);
    return null;
  }

  /** Takes a BDAT chunk's bytes as they are: no dot rule, no end marker (RFC 3030 §2). */
  take(chunk: Buffer): void {
    this.wireBytes += chunk.length;
    this.keep(chunk);
  }

  /** The message, or null when it went over the limit. */
  message(): Buffer | null {
    if (this.over) return null;
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
  }

  private keep(piece: Buffer): void {
    if (!piece.length) return;
    this.size += piece.length;
    if (this.over) return;
    if (this.size > this.limit) {
      this.over = true;
      this.chunks = [];
      return;
    }
    this.chunks.push(piece);
  }
}
