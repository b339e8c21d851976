/**
 * Cuts the client's byte stream into commands (RFC 3501 §2.2, §4.3; RFC 7888
 * for non-synchronising literals; RFC 3516 for `~{n}`). A command is its
 * text lines with the literals between them: `parts` alternates text (bytes
 * as a latin1 string, CRLF removed) and literal bytes, starting and ending
 * with text.
 *
 * Bounds, checked before anything is allocated:
 * - the text of one command (all its lines, literals excluded): `maxLine`;
 * - a literal's size: asked of `onLiteral`, which knows the command (APPEND
 *   takes a message, anything else a short string); a synchronising literal
 *   is refused with the answer it gives, a non-synchronising one that is too
 *   large ends the session, since its bytes are already on their way;
 * - the number of literals in one command: `maxLiterals`.
 */

export type Part = string | Buffer;

export interface Frame {
  parts: Part[];
}

export interface LiteralRequest {
  /** The command so far (its first text part holds the tag and the command name). */
  head: Part[];
  size: number;
  /** `{n}`: the server answers `+` (or refuses) before the client sends the bytes. */
  sync: boolean;
  /** `~{n}`: a BINARY literal (RFC 3516), which may hold NUL. */
  binary: boolean;
}

/** null: take it; otherwise the response that refuses it (a tagged NO or BAD). */
export type LiteralDecision = null | string;

export class FrameError extends Error {}

export interface FramerOptions {
  maxLine: number;
  maxLiterals?: number;
  onLiteral(request: LiteralRequest): LiteralDecision;
  /** Sends `+ …` for an accepted synchronising literal. */
  onContinue(): void;
  /** A refused synchronising literal: its command is dropped; the refusal goes out in order. */
  onRefused(response: string): void;
}

const LITERAL = /(~?)\{(\d{1,12})(\+?)\}$/;

export class Framer {
  private readonly opts: FramerOptions;
  private parts: Part[] = [];
  /** Bytes of the line being read. */
  private line: Buffer[] = [];
  private lineLength = 0;
  /** Text bytes of the current command so far. */
  private textLength = 0;
  private literal: Buffer | null = null;
  private literalFilled = 0;

  constructor(options: FramerOptions) {
    this.opts = options;
  }

  /** Drops what is buffered (after STARTTLS: plaintext sent early must never be acted on). */
  reset(): void {
    this.parts = [];
    this.line = [];
    this.lineLength = 0;
    this.textLength = 0;
    this.literal = null;
    this.literalFilled = 0;
  }

  /** True while part of a command has been read. */
  get pending(): boolean {
    return this.parts.length > 0 || this.lineLength > 0 || this.literal !== null;
  }

  /** Takes bytes; returns the commands they complete. Throws FrameError when a bound is broken. */
  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.literal) {
        const n = Math.min(chunk.length - i, this.literal.length - this.literalFilled);
        chunk.copy(this.literal, this.literalFilled, i, i + n);
        this.literalFilled += n;
        i += n;
        if (this.literalFilled === this.literal.length) {
          this.parts.push(this.literal);
          this.literal = null;
          this.literalFilled = 0;
        }
        continue;
      }
      const nl = chunk.indexOf(0x0a, i);
      const end = nl === -1 ? chunk.length : nl;
      if (this.textLength + this.lineLength + (end - i) > this.opts.maxLine)
        throw new FrameError('Line too long');
      this.line.push(chunk.subarray(i, end));
      this.lineLength += end - i;
      if (nl === -1) break;
      i = nl + 1;
      const frame = this.endLine();
      if (frame) out.push(frame);
    }
    return out;
  }

  private endLine(): Frame | null {
    let text = Buffer.concat(this.line, this.lineLength).toString('latin1');
    this.line = [];
    this.lineLength = 0;
    if (text.endsWith('\r')) text = text.slice(0, -1);
    this.textLength += text.length;
    const m = LITERAL.exec(text);
    if (!m) {
      this.parts.push(text);
      const frame = { parts: this.parts };
      this.parts = [];
      this.textLength = 0;
      return frame;
    }
    this.parts.push(text);
    const literals = (this.parts.length - 1) / 2 + 1;
    const size = Number(m[2]);
    const sync = m[3] !== '+';
    if (literals > (this.opts.maxLiterals ?? 1000)) throw new FrameError('Too many literals in one command');
    const refusal = this.opts.onLiteral({ head: this.parts, size, sync, binary: m[1] === '~' });
    if (refusal !== null) {
      // The bytes of a non-synchronising literal are coming anyway: there is no telling where the next command starts.
      if (!sync) throw new FrameError(refusal);
      this.parts = [];
      this.textLength = 0;
      this.opts.onRefused(refusal);
      return null;
    }
    if (size === 0) {
      this.parts.push(Buffer.alloc(0));
    } else {
      this.literal = Buffer.allocUnsafe(size);
      this.literalFilled = 0;
    }
    if (sync) this.opts.onContinue();
    return null;
  }
}
