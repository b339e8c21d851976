/**
 * Address rules shared by the CLI, SMTP and LMTP.
 *
 * Canonical form: the local part lower-cased (mailbox names are matched
 * case-insensitively, as Postfix and Dovecot users expect), the domain as a
 * lower-case A-label (IDNA), so `Bücher.example` and `xn--bcher-kva.example`
 * are one domain. Non-ASCII local parts (RFC 6531) must already be in Unicode
 * NFC: a differently composed spelling of the same address is refused rather
 * than silently becoming a second mailbox.
 */
import { domainToASCII } from 'node:url';
import { StoreError } from './errors.ts';

/** RFC 5322 atext, extended by RFC 6531 §3.3 with any non-ASCII UTF-8 character. */
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+$/u;
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function invalid(input: string, why: string): StoreError {
  return new StoreError('invalid', `invalid address "${printable(input)}": ${why}`);
}

function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Domains normalized lately (input → A-label form): a message names a few domains several times over
 * (MAIL, RCPT, the queue, the MDA), and domainToASCII with the checks costs tens of microseconds.
 * Only what normalized is kept; cleared when full.
 */
const normalized = new Map<string, string>();
const NORMALIZED_MAX = 2000;

/** Returns the canonical A-label form of a domain, or throws `invalid`. */
export function normalizeDomain(input: string): string {
  const known = normalized.get(input);
  if (known !== undefined) return known;
  const ascii = checkDomain(input);
  if (normalized.size >= NORMALIZED_MAX) normalized.clear();
  normalized.set(input, ascii);
  return ascii;
}

function checkDomain(input: string): string {
  if (input.length === 0) throw new StoreError('invalid', 'invalid domain "": empty');
  if (input.normalize('NFC') !== input) {
    throw new StoreError('invalid', `invalid domain "${printable(input)}": not in Unicode NFC form`);
  }
  if (/[\s\u0000-\u001f\u007f@]/.test(input) || input.startsWith('.') || input.endsWith('.')) {
    throw new StoreError('invalid', `invalid domain "${printable(input)}"`);
  }
  const ascii = domainToASCII(input);
  if (!ascii) throw new StoreError('invalid', `invalid domain "${printable(input)}": not a valid IDNA name`);
  if (ascii.length > 253)
    throw new StoreError('invalid', `invalid domain "${input}": longer than 253 octets`);
  for (const label of ascii.split('.')) {
    if (!LDH_LABEL.test(label))
      throw new StoreError('invalid', `invalid domain "${input}": bad label "${label}"`);
  }
  if (/^[0-9.]+$/.test(ascii)) throw new StoreError('invalid', `invalid domain "${input}": an IP address`);
  return ascii;
}

export interface ParsedAddress {
  local: string;
  domain: string;
  /** `local@domain` in canonical form. */
  address: string;
}

/**
 * Parses and canonicalises `local@domain`. Only dot-atom local parts are
 * accepted: quoted local parts and source routes are what relay tricks are
 * made of (`"a@ext"@local`, `@local:a@ext`), and no account needs them.
 */
export function parseAddress(input: string): ParsedAddress {
  const at = input.lastIndexOf('@');
  if (at <= 0) throw invalid(input, at === 0 ? 'empty local part' : 'missing "@"');
  const localRaw = input.slice(0, at);
  const domainRaw = input.slice(at + 1);
  if (localRaw.normalize('NFC') !== localRaw) throw invalid(input, 'not in Unicode NFC form');
  if (!ATEXT.test(localRaw.replaceAll('.', ''))) {
    throw invalid(input, "the local part may hold only letters, digits and #$&'*+-/=?^_`{|}~.");
  }
  // `%` and `!` route mail on old MTAs (a%b@relay, b!a@relay): never part of an address we own or accept.
  if (/[%!]/.test(localRaw))
    throw invalid(input, '"%" and "!" (source routing) are not allowed in the local part');
  if (localRaw.startsWith('.') || localRaw.endsWith('.') || localRaw.includes('..')) {
    throw invalid(input, 'misplaced "." in the local part');
  }
  if (Buffer.byteLength(localRaw) > 64) throw invalid(input, 'local part longer than 64 octets');
  let domain: string;
  try {
    domain = normalizeDomain(domainRaw);
  } catch {
    throw invalid(input, `bad domain "${printable(domainRaw)}"`);
  }
  const local = localRaw.toLowerCase();
  const address = `${local}@${domain}`;
  if (Buffer.byteLength(address) > 254) throw invalid(input, 'longer than 254 octets');
  return { local, domain, address };
}

export const normalizeAddress = (input: string): string => parseAddress(input).address;

/** `@domain` (a catch-all) or a full address, canonicalised. */
export function normalizeAliasSource(input: string): { address: string; domain: string; catchAll: boolean } {
  if (input.startsWith('@')) {
    const domain = normalizeDomain(input.slice(1));
    return { address: `@${domain}`, domain, catchAll: true };
  }
  const p = parseAddress(input);
  return { address: p.address, domain: p.domain, catchAll: false };
}

/** Splits plus-addressing: `user+tag@d` → `{ base: 'user@d', tag: 'tag' }`; null when there is no tag. */
export function splitPlus(address: string): { base: string; tag: string } | null {
  const at = address.lastIndexOf('@');
  const local = address.slice(0, at);
  const plus = local.indexOf('+');
  if (plus <= 0) return null;
  return { base: `${local.slice(0, plus)}${address.slice(at)}`, tag: local.slice(plus + 1) };
}
