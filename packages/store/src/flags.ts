/**
 * Flag rules shared by the adapters (RFC 3501 §2.3.2): system flags are
 * matched case-insensitively and kept in their canonical spelling; keywords
 * are kept as given but compared case-insensitively; each flag appears once.
 */
import { StoreError } from './errors.ts';
import type { FlagOperation } from './types.ts';

const SYSTEM_FLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'];
const SYSTEM_BY_LOWER = new Map(SYSTEM_FLAGS.map((f) => [f.toLowerCase(), f]));
/** RFC 3501 atom characters, minus the flag-list specials. */
const KEYWORD = /^[!#$&'+\-.0-9:;<=>?@A-Z^_`a-z|~]+$/;

export function normalizeFlags(flags: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const flag of flags) {
    let canonical: string;
    if (flag.startsWith('\\')) {
      const system = SYSTEM_BY_LOWER.get(flag.toLowerCase());
      if (!system) throw new StoreError('invalid', `unknown system flag ${flag}`);
      canonical = system;
    } else {
      if (!KEYWORD.test(flag) || flag.length > 128)
        throw new StoreError('invalid', `invalid keyword "${flag}"`);
      canonical = flag;
    }
    const key = canonical.toLowerCase();
    if (!seen.has(key)) {
      seen.add(key);
      out.push(canonical);
    }
  }
  return out;
}

/** Applies a STORE operation; returns the new list, or null when nothing changes. */
export function applyFlagOperation(
  current: readonly string[],
  op: FlagOperation,
  flags: readonly string[],
): string[] | null {
  const change = normalizeFlags(flags);
  const has = new Set(current.map((f) => f.toLowerCase()));
  let next: string[];
  if (op === 'set') next = change;
  else if (op === 'add') next = [...current, ...change.filter((f) => !has.has(f.toLowerCase()))];
  else {
    const drop = new Set(change.map((f) => f.toLowerCase()));
    next = current.filter((f) => !drop.has(f.toLowerCase()));
  }
  const same = next.length === current.length && next.every((f) => has.has(f.toLowerCase()));
  return same ? null : next;
}

export const hasFlag = (flags: readonly string[], flag: string): boolean =>
  flags.some((f) => f.toLowerCase() === flag.toLowerCase());
