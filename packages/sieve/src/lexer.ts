/**
 * Sieve's lexical grammar (RFC 5228 §2.2-2.4, §8.1): identifiers, tags, numbers with K/M/G, quoted
 * strings with their two escapes, multi-line `text:` strings with dot-stuffing, comments of both kinds,
 * and the punctuation. One pass over the script, linear in its length; every token knows its line and
 * column (1-based) for the error messages ManageSieve and `mailwerk sieve check` show.
 */
import { SieveError } from './errors.ts';

export type TokenKind =
  | 'identifier'
  | 'tag'
  | 'number'
  | 'string'
  | '['
  | ']'
  | '('
  | ')'
  | ','
  | ';'
  | '{'
  | '}';

export interface Token {
  kind: TokenKind;
  /** The identifier or tag (lower case, tag without its colon), the string's value, or the punctuation. */
  text: string;
  /** Numbers only: the value with its quantifier applied. */
  number?: number;
  /** Strings only: written as `text:` … `.`. */
  multiline?: boolean;
  line: number;
  column: number;
}

const QUANTIFIER: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
/** RFC 5228 §2.4.1: implementations must support at least 2^31; larger is refused, not wrapped. */
export const MAX_NUMBER = 2 ** 53 - 1;

export function tokenize(script: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const n = script.length;
  const fail = (message: string, at = i): never => {
    throw new SieveError(message, line, at - lineStart + 1);
  };
  /** Moves past `to`, counting the line ends crossed. */
  const advance = (to: number) => {
    for (; i < to; i++)
      if (script.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
  };
  while (i < n) {
    const c = script[i]!;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      advance(i + 1);
      continue;
    }
    if (c === '#') {
      const end = script.indexOf('\n', i);
      advance(end < 0 ? n : end);
      continue;
    }
    if (c === '/' && script[i + 1] === '*') {
      const end = script.indexOf('*/', i + 2);
      if (end < 0) fail('a comment that begins with /* is not closed with */');
      advance(end + 2);
      continue;
    }
    const start = { line, column: i - lineStart + 1 };
    if ('[](),;{}'.includes(c)) {
      tokens.push({ kind: c as TokenKind, text: c, ...start });
      i++;
      continue;
    }
    if (c === '"') {
      let value = '';
      let j = i + 1;
      for (;;) {
        if (j >= n) fail('a string is not closed with "', i);
        const d = script[j]!;
        if (d === '"') break;
        if (d === '\\') {
          // §2.4.2: \" and \\ stand for themselves; before any other character the backslash is dropped.
          if (j + 1 >= n) fail('a string is not closed with "', i);
          value += script[j + 1];
          j += 2;
          continue;
        }
        value += d;
        j++;
      }
      tokens.push({ kind: 'string', text: value, ...start });
      advance(j + 1);
      continue;
    }
    if (c >= '0' && c <= '9') {
      let j = i;
      while (j < n && script[j]! >= '0' && script[j]! <= '9') j++;
      let value = Number(script.slice(i, j));
      const q = QUANTIFIER[script[j]?.toLowerCase() ?? ''];
      if (q) {
        value *= q;
        j++;
      }
      if (!Number.isSafeInteger(value) || value > MAX_NUMBER) fail('a number too large');
      if (/[A-Za-z0-9_]/.test(script[j] ?? '')) fail('a number followed by letters', j);
      tokens.push({ kind: 'number', text: script.slice(i, j), number: value, ...start });
      i = j;
      continue;
    }
    if (c === ':' || /[A-Za-z_]/.test(c)) {
      let j = c === ':' ? i + 1 : i;
      if (!/[A-Za-z_]/.test(script[j] ?? '')) fail('a ":" not followed by a tag name');
      while (j < n && /[A-Za-z0-9_]/.test(script[j]!)) j++;
      const word = script.slice(c === ':' ? i + 1 : i, j).toLowerCase();
      if (c === ':') {
        tokens.push({ kind: 'tag', text: word, ...start });
        i = j;
        continue;
      }
      if (word === 'text' && script[j] === ':') {
        // §2.4.2: "text:", then white space or a comment up to the end of the line, then lines up to ".".
        let k = j + 1;
        while (script[k] === ' ' || script[k] === '\t') k++;
        if (script[k] === '#') while (k < n && script[k] !== '\n') k++;
        if (script[k] === '\r') k++;
        if (script[k] !== '\n') fail('"text:" must end its line', k);
        k++;
        const lines: string[] = [];
        for (;;) {
          if (k >= n) fail('a multi-line string is not ended by a line with "." alone', i);
          let end = script.indexOf('\n', k);
          if (end < 0) end = n;
          const l = script.slice(k, end).replace(/\r$/, '');
          k = end + 1;
          if (l === '.') break;
          lines.push(l.startsWith('..') ? l.slice(1) : l);
        }
        const value = lines.map((l) => `${l}\r\n`).join('');
        tokens.push({ kind: 'string', text: value, multiline: true, ...start });
        advance(Math.min(k, n));
        continue;
      }
      tokens.push({ kind: 'identifier', text: word, ...start });
      i = j;
      continue;
    }
    fail(`unexpected character ${JSON.stringify(c)}`);
  }
  return tokens;
}
