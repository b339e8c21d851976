/**
 * Sieve's syntax (RFC 5228 §8.2) into a tree: commands with their arguments, tests and blocks. Only the
 * shape is checked here; validate.ts knows which commands, tests and arguments exist. Nesting is
 * bounded (`maxDepth`), so a hostile script cannot exhaust the stack.
 */
import { SieveError } from './errors.ts';
import { type Token, tokenize } from './lexer.ts';

export interface Position {
  line: number;
  column: number;
}

export type Argument =
  | ({ kind: 'tag'; name: string } & Position)
  | ({ kind: 'number'; value: number } & Position)
  | ({ kind: 'strings'; values: string[]; list: boolean } & Position);

export interface Test extends Position {
  name: string;
  args: Argument[];
  tests: Test[];
}

export interface Command extends Position {
  name: string;
  args: Argument[];
  /** The test of if/elsif, or of another command that takes one. */
  tests: Test[];
  /** The block in braces, or null when the command ends with ";". */
  block: Command[] | null;
}

export interface ParseOptions {
  /** Blocks and test lists within one another (default 32). */
  maxDepth?: number;
}

export function parse(script: string, options: ParseOptions = {}): Command[] {
  const tokens = tokenize(script);
  const maxDepth = options.maxDepth ?? 32;
  let p = 0;
  const last = tokens.at(-1);
  const endPos = last ? { line: last.line, column: last.column + last.text.length } : { line: 1, column: 1 };
  const peek = (): Token | undefined => tokens[p];
  const fail = (message: string, t: Position | undefined = peek()): never => {
    const at = t ?? endPos;
    throw new SieveError(message, at.line, at.column);
  };
  const describe = (t: Token | undefined) =>
    !t
      ? 'the end of the script'
      : t.kind === 'string'
        ? 'a string'
        : JSON.stringify(t.kind === 'tag' ? `:${t.text}` : t.text);
  const expect = (kind: Token['kind'], what: string): Token => {
    const t = peek();
    if (t?.kind !== kind) fail(`expected ${what}, found ${describe(t)}`);
    p++;
    return t!;
  };

  function args(): Argument[] {
    const out: Argument[] = [];
    for (;;) {
      const t = peek();
      if (t?.kind === 'tag') out.push({ kind: 'tag', name: t.text, line: t.line, column: t.column });
      else if (t?.kind === 'number')
        out.push({ kind: 'number', value: t.number!, line: t.line, column: t.column });
      else if (t?.kind === 'string')
        out.push({ kind: 'strings', values: [t.text], list: false, line: t.line, column: t.column });
      else if (t?.kind === '[') {
        p++;
        const values: string[] = [];
        for (;;) {
          values.push(expect('string', 'a string in the list').text);
          if (peek()?.kind === ',') {
            p++;
            continue;
          }
          expect(']', '"," or "]" in a string list');
          break;
        }
        out.push({ kind: 'strings', values, list: true, line: t.line, column: t.column });
        continue;
      } else return out;
      p++;
    }
  }

  function test(depth: number): Test {
    if (depth > maxDepth) fail(`tests nested deeper than ${maxDepth}`);
    const name = expect('identifier', 'a test');
    const a = args();
    let tests: Test[] = [];
    if (peek()?.kind === '(') tests = testList(depth + 1);
    else if (peek()?.kind === 'identifier') tests = [test(depth + 1)];
    return { name: name.text, args: a, tests, line: name.line, column: name.column };
  }

  function testList(depth: number): Test[] {
    expect('(', '"("');
    const out = [test(depth)];
    while (peek()?.kind === ',') {
      p++;
      out.push(test(depth));
    }
    expect(')', '"," or ")" in a test list');
    return out;
  }

  function commands(depth: number, inBlock: boolean): Command[] {
    if (depth > maxDepth) fail(`blocks nested deeper than ${maxDepth}`);
    const out: Command[] = [];
    for (;;) {
      const t = peek();
      if (!t) {
        if (inBlock) fail('a block is not closed with "}"');
        return out;
      }
      if (t.kind === '}') {
        if (!inBlock) fail('a "}" without its "{"');
        return out;
      }
      const name = expect('identifier', 'a command');
      const a = args();
      let tests: Test[] = [];
      if (peek()?.kind === '(') tests = testList(depth + 1);
      else if (peek()?.kind === 'identifier') tests = [test(depth + 1)];
      let block: Command[] | null = null;
      if (peek()?.kind === '{') {
        p++;
        block = commands(depth + 1, true);
        expect('}', '"}"');
      } else expect(';', `";" after ${name.text}`);
      out.push({ name: name.text, args: a, tests, block, line: name.line, column: name.column });
    }
  }

  return commands(0, false);
}
