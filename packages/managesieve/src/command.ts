/**
 * ManageSieve's command syntax (RFC 5804 §4): a command name, then quoted strings, literals
 * (`{n+}` CRLF and n octets; `{n}` is taken the same, as Dovecot does, since clients do not wait), and
 * numbers, ended by CRLF. The framer cuts the byte stream into whole commands with their literals, bounded
 * in line length and literal size; what breaks the syntax is a CommandError, answered with NO, and the
 * session goes on with the next line.
 */

export type Value = string | number;

export interface Parsed {
  name: string;
  args: Value[];
}

export class CommandError extends Error {}

export interface FramerLimits {
  maxLine: number;
  maxLiteral: number;
}

/** Whole commands out of a byte stream. */
export class Framer {
  private buf: Buffer = Buffer.alloc(0);
  private readonly limits: FramerLimits;

  constructor(limits: FramerLimits) {
    this.limits = limits;
  }

  /**
   * Adds bytes; returns the commands now complete, each as the raw text of its lines and its literals.
   * A line or literal over the limits is a CommandError (the connection should then end: what follows
   * cannot be told from the rest of that command).
   */
  push(chunk: Buffer): Array<{ parts: Array<string | Buffer> }> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Array<{ parts: Array<string | Buffer> }> = [];
    for (;;) {
      const c = this.next();
      if (!c) break;
      out.push(c);
    }
    if (this.buf.length > this.limits.maxLine + this.limits.maxLiteral + 64)
      throw new CommandError('Command too long');
    return out;
  }

  private next(): { parts: Array<string | Buffer> } | null {
    const parts: Array<string | Buffer> = [];
    let pos = 0;
    for (;;) {
      const nl = this.buf.indexOf(0x0a, pos);
      if (nl < 0) {
        if (this.buf.length - pos > this.limits.maxLine) throw new CommandError('Line too long');
        return null;
      }
      if (nl - pos > this.limits.maxLine) throw new CommandError('Line too long');
      const line = this.buf.toString('utf8', pos, nl).replace(/\r$/, '');
      const m = /\{(\d{1,10})\+?\}$/.exec(line);
      if (!m) {
        parts.push(line);
        this.buf = this.buf.subarray(nl + 1);
        return { parts };
      }
      const size = Number(m[1]);
      if (size > this.limits.maxLiteral) throw new CommandError(`Literal of ${size} octets is too large`);
      if (this.buf.length < nl + 1 + size) return null;
      parts.push(line.slice(0, m.index));
      parts.push(this.buf.subarray(nl + 1, nl + 1 + size));
      pos = nl + 1 + size;
    }
  }
}

/** A whole command's parts (text, literal, text, …) into its name and arguments. */
export function parseCommand(parts: Array<string | Buffer>): Parsed {
  const args: Value[] = [];
  let name = '';
  parts.forEach((part, index) => {
    if (Buffer.isBuffer(part)) {
      args.push(part.toString('utf8'));
      return;
    }
    let i = 0;
    const s = part;
    while (i < s.length) {
      const c = s[i]!;
      if (c === ' ') {
        i++;
        continue;
      }
      if (c === '"') {
        let v = '';
        let j = i + 1;
        for (;;) {
          if (j >= s.length) throw new CommandError('A quoted string is not closed');
          const d = s[j]!;
          if (d === '"') break;
          if (d === '\\') {
            const e = s[j + 1];
            if (e !== '"' && e !== '\\')
              throw new CommandError('Only \\" and \\\\ may be escaped in a quoted string');
            v += e;
            j += 2;
            continue;
          }
          v += d;
          j++;
        }
        args.push(v);
        i = j + 1;
        continue;
      }
      let j = i;
      while (j < s.length && s[j] !== ' ') j++;
      const word = s.slice(i, j);
      i = j;
      if (index === 0 && name === '' && args.length === 0) {
        if (!/^[A-Za-z]{1,20}$/.test(word)) throw new CommandError('Expected a command name');
        name = word.toUpperCase();
      } else if (/^\d{1,10}$/.test(word)) args.push(Number(word));
      else throw new CommandError(`Unexpected ${JSON.stringify(word.slice(0, 40))}`);
    }
  });
  if (!name) throw new CommandError('Expected a command name');
  return { name, args };
}

/** A string for the client: quoted (with \\" and \\\\) when it can be, a literal when it has line ends (RFC 5804 §4). */
export function encodeString(s: string): string {
  if (!/[\r\n\0]/.test(s) && Buffer.byteLength(s) <= 1024) return `"${s.replace(/["\\]/g, '\\$&')}"`;
  return `{${Buffer.byteLength(s)}}\r\n${s}`;
}
