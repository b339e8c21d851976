/**
 * What a string becomes when the script runs: encoded characters (RFC 5228 §2.4.2.4, `${hex:…}` and
 * `${unicode:…}`) when the script requires "encoded-character", then variables (RFC 5229 §3, `${name}`,
 * `${0}`…`${9}`) when it requires "variables". One pass each, linear; every value is cut at
 * MAX_VARIABLE characters, so repeated `set "a" "${a}${a}"` cannot grow without end (RFC 5229 §6).
 */
import { SieveRuntimeError } from './errors.ts';

export const MAX_VARIABLE = 4096;
/** Variables per script (RFC 5229 §6 asks for a bound). */
export const MAX_VARIABLES = 255;

export function decodeEncodedCharacters(s: string): string {
  if (!s.includes('${')) return s;
  return s.replace(/\$\{(hex|unicode):([\s0-9a-fA-F]*)\}/gi, (whole, kind: string, body: string) => {
    const items = body.trim().split(/\s+/).filter(Boolean);
    if (items.length === 0) return '';
    if (kind.toLowerCase() === 'hex') {
      if (items.some((h) => h.length % 2 !== 0)) return whole;
      return Buffer.from(items.join(''), 'hex').toString('utf8');
    }
    return items
      .map((h) => {
        const cp = Number.parseInt(h, 16);
        if (h.length > 6 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
          throw new SieveRuntimeError(`\${unicode:${h}} is not a Unicode scalar value`);
        return String.fromCodePoint(cp);
      })
      .join('');
  });
}

/** `${name}` and `${n}` replaced by `lookup` (unknown names: empty); anything else with `${` stays as written. */
export function expandVariables(s: string, lookup: (name: string) => string): string {
  if (!s.includes('${')) return s;
  const out = s.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[0-9]+)\}/g,
    (_w, name: string) => lookup(name),
  );
  return out.length > MAX_VARIABLE * 4 ? out.slice(0, MAX_VARIABLE * 4) : out;
}

/** `set`'s modifiers (RFC 5229 §4.1), applied by precedence: case, first letter, quoting, length. */
export function applyModifiers(value: string, modifiers: Set<string>): string {
  let v = value;
  if (modifiers.has('lower')) v = v.toLowerCase();
  if (modifiers.has('upper')) v = v.toUpperCase();
  if (modifiers.has('lowerfirst')) v = v.charAt(0).toLowerCase() + v.slice(1);
  if (modifiers.has('upperfirst')) v = v.charAt(0).toUpperCase() + v.slice(1);
  if (modifiers.has('quotewildcard')) v = v.replace(/[*?\\]/g, '\\$&');
  if (modifiers.has('quoteregex')) v = v.replace(/[\\^$.[\]|()?*+{}]/g, '\\$&');
  if (modifiers.has('length')) v = String([...v].length);
  return v.length > MAX_VARIABLE ? v.slice(0, MAX_VARIABLE) : v;
}
