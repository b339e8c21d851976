/**
 * Reads the arguments of one command (RFC 3501 §9, RFC 9051 §9), token by
 * token, over the parts the framer assembled: text (bytes as latin1) and
 * literals. Every method either returns what it read or throws a BAD; none
 * recurses, so no input can exhaust the stack.
 *
 * Strings come out as "raw" strings, one character per byte; `utf8()` turns
 * them into text (strictly: invalid UTF-8 is a BAD).
 */
import { bad } from '../errors.ts';
import type { Part } from './framer.ts';

/** RFC 3501 atom-specials: `(` `)` `{` SP CTL `%` `*` `"` `\` `]`. */
function isAtomChar(c: number): boolean {
  return (
    c > 0x20 &&
    c < 0x7f &&
    c !== 0x28 &&
    c !== 0x29 &&
    c !== 0x7b &&
    c !== 0x25 &&
    c !== 0x2a &&
    c !== 0x22 &&
    c !== 0x5c &&
    c !== 0x5d
  );
}

const LITERAL_MARKER = /~?\{\d+\+?\}$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Raw (one char per byte) to text; a BAD when the bytes are not UTF-8. */
export function utf8(raw: string): string {
  // Pure ASCII needs no decoding.
  if (!/[\x80-\xff]/.test(raw)) return raw;
  try {
    return strictUtf8.decode(Buffer.from(raw, 'latin1'));
  } catch {
    throw bad('Invalid UTF-8 in a string');
  }
}

export class Cursor {
  private readonly parts: Part[];
  /** Index of the text part being read (even). */
  private pi = 0;
  private pos = 0;
  /** Where the literal marker of each text part starts (its length when there is none). */
  private readonly markers: number[] = [];

  constructor(parts: Part[], start = 0) {
    this.parts = parts;
    for (let i = 0; i < parts.length; i += 2) {
      const t = parts[i] as string;
      const m = i + 1 < parts.length ? LITERAL_MARKER.exec(t) : null;
      this.markers.push(m ? m.index : t.length);
    }
    this.pos = start;
  }

  private get text(): string {
    return this.parts[this.pi] as string;
  }

  private get limit(): number {
    return this.markers[this.pi / 2]!;
  }

  /** At a literal: the text before its marker is used up and a literal follows. */
  private atLiteral(): boolean {
    return this.pos === this.limit && this.pi + 1 < this.parts.length;
  }

  /** The next character, '' at the end (a literal shows as '{'). */
  peek(): string {
    if (this.atLiteral()) return '{';
    return this.pos < this.limit ? this.text[this.pos]! : '';
  }

  atEnd(): boolean {
    return this.pos >= this.limit && this.pi + 1 >= this.parts.length;
  }

  /** Everything was read. */
  end(): void {
    if (!this.atEnd()) throw bad(`Unexpected "${this.rest().slice(0, 20)}" at the end of the command`);
  }

  /** The unread text of the current part (for error messages and line-oriented commands). */
  rest(): string {
    return this.text.slice(this.pos, this.limit);
  }

  /** The atom ahead, upper-cased, without taking it ('' when none); reads at most 16 characters. */
  peekWord(): string {
    const t = this.text;
    let i = this.pos;
    const lim = Math.min(this.limit, this.pos + 16);
    while (i < lim && isAtomChar(t.charCodeAt(i))) i++;
    return t.slice(this.pos, i).toUpperCase();
  }

  /** Takes the next character when it is `c`. */
  take(c: string): boolean {
    if (this.pos < this.limit && this.text[this.pos] === c) {
      this.pos++;
      return true;
    }
    return false;
  }

  expect(c: string, what = `"${c}"`): void {
    if (!this.take(c)) throw bad(`Expected ${what}`);
  }

  space(): void {
    this.expect(' ', 'a space');
  }

  /** An atom (RFC 3501), optionally also taking some of the specials (`]` for astring, `%*` for list-mailbox). */
  atom(extra = ''): string {
    const start = this.pos;
    const t = this.text;
    const lim = this.limit;
    while (this.pos < lim) {
      const ch = t.charCodeAt(this.pos);
      if (isAtomChar(ch) || extra.includes(t[this.pos]!)) this.pos++;
      else break;
    }
    if (this.pos === start)
      throw bad(this.atEnd() ? 'Missing argument' : `Unexpected "${t[this.pos] ?? ''}"`);
    return t.slice(start, this.pos);
  }

  /** An atom, upper-cased (command words, keywords). */
  word(extra = ''): string {
    return this.atom(extra).toUpperCase();
  }

  /** A name of letters, digits, `.` and `-` (FETCH items such as `BODY.PEEK`, `RFC822.SIZE`), upper-cased. */
  name(): string {
    const start = this.pos;
    const t = this.text;
    while (this.pos < this.limit && /[A-Za-z0-9.-]/.test(t[this.pos]!)) this.pos++;
    if (this.pos === start) throw bad(this.atEnd() ? 'Missing argument' : `Unexpected "${t[this.pos]}"`);
    return t.slice(start, this.pos).toUpperCase();
  }

  /** Digits as a number; at most `max` (default 2^32 - 1, the largest UID or count). */
  number(max = 0xffffffff): number {
    const start = this.pos;
    const t = this.text;
    while (this.pos < this.limit && t.charCodeAt(this.pos) >= 0x30 && t.charCodeAt(this.pos) <= 0x39)
      this.pos++;
    const digits = t.slice(start, this.pos);
    if (!digits) throw bad('Expected a number');
    if (digits.length > 20) throw bad('Number too large');
    const n = Number(digits);
    if (n > max) throw bad('Number too large');
    return n;
  }

  nzNumber(max = 0xffffffff): number {
    const n = this.number(max);
    if (n === 0) throw bad('Expected a number above zero');
    return n;
  }

  /** A mod-sequence (RFC 7162): up to 2^63 - 1; JavaScript numbers are exact up to 2^53. */
  modseq(): number {
    return this.number(Number.MAX_SAFE_INTEGER);
  }

  private quoted(): string {
    // The opening quote is taken.
    let out = '';
    const t = this.text;
    for (;;) {
      if (this.pos >= this.limit) throw bad('Unterminated quoted string');
      const c = t[this.pos++]!;
      if (c === '"') return out;
      if (c === '\\') {
        const e = t[this.pos++];
        if (e !== '"' && e !== '\\') throw bad('Invalid escape in a quoted string');
        out += e;
      } else {
        out += c;
      }
    }
  }

  /** The literal here, as bytes; moves to the text after it. */
  literalBytes(): Buffer {
    if (!this.atLiteral()) throw bad('Expected a literal');
    const data = this.parts[this.pi + 1] as Buffer;
    this.pi += 2;
    this.pos = 0;
    return data;
  }

  /** True when the next token is a literal announced with `~` (RFC 3516 BINARY). */
  atBinaryLiteral(): boolean {
    return this.atLiteral() && this.text[this.limit] === '~';
  }

  /** A string (quoted or literal), raw. */
  string(): string {
    if (this.take('"')) return this.quoted();
    if (this.atLiteral()) return this.literalBytes().toString('latin1');
    throw bad('Expected a string');
  }

  /** astring: an atom (with `]`) or a string, raw. */
  astring(): string {
    const c = this.peek();
    if (c === '"' || c === '{') return this.string();
    return this.atom(']');
  }

  /** nstring: NIL or a string. */
  nstring(): string | null {
    const c = this.peek();
    if (c === '"' || c === '{') return this.string();
    const a = this.atom();
    if (a.toUpperCase() !== 'NIL') throw bad('Expected a string or NIL');
    return null;
  }

  /** list-mailbox (RFC 3501): an atom that may hold `%`, `*` and `]`, or a string; raw. */
  listMailbox(): string {
    const c = this.peek();
    if (c === '"' || c === '{') return this.string();
    return this.atom('%*]');
  }

  /** A flag: `\Name` or a keyword; `\*` only where `star` is allowed. */
  flag(): string {
    if (this.take('\\')) {
      if (this.take('*')) return '\\*';
      return `\\${this.atom()}`;
    }
    return this.atom();
  }

  /** `(a b c)`: calls `item` for each element; a list may be empty. */
  list(item: () => void): void {
    this.expect('(');
    if (this.take(')')) return;
    for (;;) {
      item();
      if (this.take(')')) return;
      this.space();
    }
  }

  /** A flag list `(\Seen $Work)`; with `bare`, also flags without parentheses (STORE). */
  flags(bare = false): string[] {
    const out: string[] = [];
    if (this.peek() === '(') {
      this.list(() => out.push(this.flag()));
      return out;
    }
    if (!bare) throw bad('Expected a flag list');
    out.push(this.flag());
    while (this.peek() === ' ') {
      this.space();
      out.push(this.flag());
    }
    return out;
  }
}
