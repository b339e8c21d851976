/**
 * Mailbox names as the store keeps them: Unicode (NFC), hierarchy separated
 * by "/", INBOX spelled in upper case (RFC 3501 §5.1: INBOX is
 * case-insensitive). IMAP's modified UTF-7 is decoded by the IMAP layer
 * before a name reaches the store.
 */
import { StoreError } from './errors.ts';

export const DELIMITER = '/';
const MAX_COMPONENT_BYTES = 255;
const MAX_NAME_BYTES = 1024;
const MAX_DEPTH = 32;

export function normalizeMailboxName(input: string): string {
  const fail = (why: string) => new StoreError('invalid', `invalid mailbox name: ${why}`);
  if (input.length === 0) throw fail('empty');
  if (input.normalize('NFC') !== input) throw fail('not in Unicode NFC form');
  if (/[\u0000-\u001f\u007f-\u009f]/.test(input)) throw fail('control characters');
  // LIST wildcards (RFC 3501 §6.3.8) cannot be part of a name a client can address.
  if (/[*%]/.test(input)) throw fail('"*" and "%" are not allowed');
  if (Buffer.byteLength(input) > MAX_NAME_BYTES) throw fail(`longer than ${MAX_NAME_BYTES} octets`);
  const parts = input.split(DELIMITER);
  if (parts.length > MAX_DEPTH) throw fail(`deeper than ${MAX_DEPTH} levels`);
  for (const part of parts) {
    if (part.length === 0) throw fail('empty hierarchy component');
    if (part === '.' || part === '..') throw fail(`"${part}" component`);
    if (part.trim() !== part) throw fail('leading or trailing white space in a component');
    if (Buffer.byteLength(part) > MAX_COMPONENT_BYTES) throw fail('component too long');
  }
  if (parts[0]!.toUpperCase() === 'INBOX') parts[0] = 'INBOX';
  return parts.join(DELIMITER);
}

/** Every ancestor of a name, outermost first: `a/b/c` → `['a', 'a/b']`. */
export function parentNames(name: string): string[] {
  const parts = name.split(DELIMITER);
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join(DELIMITER));
}

export const isSameOrChild = (name: string, parent: string): boolean =>
  name === parent || name.startsWith(parent + DELIMITER);
