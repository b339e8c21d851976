/**
 * Matching for the tests: `:matches` wildcards (RFC 5228 §2.7.1) with the match variables they set
 * (RFC 5229 §3.2), and `:regex` (draft-ietf-sieve-regex, as Pigeonhole has it) through re2js, RE2's
 * linear-time engine: neither ever backtracks exponentially, whatever the script and the message.
 */
import { RE2JS } from 're2js';
import { SieveRuntimeError } from './errors.ts';

/**
 * The captures of `value` against a `:matches` pattern (`*`, `?`, `\` escaping): [whole value, then one
 * entry per wildcard], or null when it does not match. `folded` is the value as compared (case folded
 * as the comparator says, same length); the captures are cut from `value`. Two pointers: earlier stars
 * take as little as they can, the last one what is left; time proportional to the value times the
 * pattern at worst.
 */
export function wildcardCaptures(value: string, pattern: string, folded = value): string[] | null {
  const p: Array<{ any: boolean; star: boolean; c: string }> = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) p.push({ any: false, star: false, c: pattern[++i]! });
    else p.push({ any: c === '?', star: c === '*', c });
  }
  const v = [...folded];
  const begin = new Array<number>(p.length).fill(0);
  const len = new Array<number>(p.length).fill(0);
  let vi = 0;
  let pi = 0;
  let starP = -1;
  let starV = 0;
  while (vi < v.length) {
    const t = p[pi];
    if (t && !t.star && (t.any || t.c === v[vi])) {
      begin[pi] = vi;
      vi++;
      pi++;
    } else if (t?.star) {
      begin[pi] = vi;
      len[pi] = 0;
      starP = pi++;
      starV = vi;
    } else if (starP >= 0) {
      len[starP] = ++starV - begin[starP]!;
      pi = starP + 1;
      vi = starV;
    } else return null;
  }
  while (p[pi]?.star) {
    begin[pi] = vi;
    len[pi++] = 0;
  }
  if (pi !== p.length) return null;
  const o = [...value];
  const out = [value];
  p.forEach((t, i) => {
    if (t.star) out.push(o.slice(begin[i], begin[i]! + len[i]!).join(''));
    else if (t.any) out.push(o[begin[i]!]!);
  });
  return out;
}

export const wildcardMatch = (value: string, pattern: string): boolean =>
  wildcardCaptures(value, pattern) !== null;

const compiledRegex = new Map<string, RE2JS>();

/** A `:regex` key compiled (cached), case-insensitive for i;ascii-casemap; a bad one is a run-time error. */
function regex(pattern: string, caseless: boolean): RE2JS {
  const key = `${caseless ? 'i' : 's'}${pattern}`;
  let re = compiledRegex.get(key);
  if (!re) {
    try {
      re = RE2JS.compile(pattern, caseless ? RE2JS.CASE_INSENSITIVE : 0);
    } catch (err) {
      throw new SieveRuntimeError(`not a regular expression: "${pattern}" (${(err as Error).message})`);
    }
    if (compiledRegex.size >= 1000) compiledRegex.clear();
    compiledRegex.set(key, re);
  }
  return re;
}

/** Whether a `:regex` key is a valid expression (for the validator), or why not. */
export function regexProblem(pattern: string): string | null {
  try {
    RE2JS.compile(pattern);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The groups of the first match of `pattern` anywhere in `value` (POSIX regexec is unanchored), or null. */
export function regexCaptures(value: string, pattern: string, caseless: boolean): string[] | null {
  const m = regex(pattern, caseless).matcher(value);
  if (!m.find()) return null;
  const out: string[] = [];
  for (let i = 0; i <= Math.min(m.groupCount(), 9); i++) out.push(m.group(i) ?? '');
  return out;
}
