/**
 * The Sender Rewriting Scheme (SRS, after Shevek's "Sender Rewriting Scheme" paper and libsrs2's
 * guarded form): mail we forward to another domain goes out with an envelope sender of our own domain,
 * so SPF passes at the receiver (RFC 7208 §1.1.3 names forwarding as what breaks it), and a bounce to
 * that address is turned back into the original sender, only when we made the address.
 *
 *   SRS0=HHHHHH=TT=orig.domain=orig-local@our.domain        first forwarder
 *   SRS1=HHHHHH=first.forwarder==HHHHHH=TT=orig.domain=orig-local@our.domain
 *                                                          forwarding an SRS0 address again: the first
 *                                                          forwarder's part is kept, so a bounce goes
 *                                                          straight back to it
 *
 * HHHHHH: the first 6 base32 characters (30 bits) of an HMAC-SHA256 under a secret of the store over
 * the rest, lower-cased (some MTAs change a local part's case; the base32 alphabet has one case).
 * TT: the day (days since 1970, modulo 1024) in 2 base32 characters; an address is honoured for
 * `maxAgeDays` (21, as libsrs2) and a day ahead for clocks that differ.
 *
 * Bounded: addresses over 512 characters are refused; every step is a linear scan.
 */
import { createHmac } from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const MAX_ADDRESS = 512;
const DAY_MS = 86_400_000;

export interface SrsOptions {
  /** The HMAC key (MailStore.secret('srs')). */
  secret: Buffer;
  /** Today, for the timestamp (tests set it). */
  now?: Date;
  /** How long an SRS address is honoured (default 21 days). */
  maxAgeDays?: number;
}

export class SrsError extends Error {}

function hash(secret: Buffer, ...parts: string[]): string {
  const mac = createHmac('sha256', secret).update(parts.join('\0').toLowerCase()).digest();
  let out = '';
  // 30 bits: six 5-bit groups from the first four bytes.
  const n = mac.readUInt32BE(0);
  for (let i = 0; i < 6; i++) out += BASE32[(n >>> (27 - i * 5)) & 31];
  return out;
}

const today = (now: Date) => Math.floor(now.getTime() / DAY_MS) % 1024;
const stamp = (day: number) => BASE32[day >> 5]! + BASE32[day & 31]!;

function split(address: string): [string, string] {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) throw new SrsError(`<${address}> is not an address`);
  return [address.slice(0, at), address.slice(at + 1)];
}

/** Whether an address's local part is in SRS form (what RCPT must check with srsReverse). */
export function isSrsAddress(address: string): boolean {
  return /^srs[01][=+-]/i.test(address);
}

/**
 * The envelope sender to use when forwarding mail from `sender` through `domain`: `<>` stays `<>`; an
 * address without a domain stays as it is; an SRS address is wrapped once more as SRS1.
 */
export function srsForward(sender: string, domain: string, options: SrsOptions): string {
  if (sender === '' || !sender.includes('@')) return sender;
  if (sender.length > MAX_ADDRESS) throw new SrsError('the sender address is too long to rewrite');
  const [local, host] = split(sender);
  const { secret } = options;
  if (/^srs1[=+-]/i.test(local)) {
    // SRS1=HHHHHH=first.forwarder=rest: keep the first forwarder and its part; sign it for us.
    const m = /^srs1[=+-][^=]*=([^=]+)=(.*)$/is.exec(local);
    if (m) return `SRS1=${hash(secret, m[1]!, m[2]!)}=${m[1]}=${m[2]}@${domain}`;
  } else if (/^srs0[=+-]/i.test(local)) {
    const rest = local.slice(4);
    return `SRS1=${hash(secret, host, rest)}=${host}=${rest}@${domain}`;
  }
  const tt = stamp(today(options.now ?? new Date()));
  return `SRS0=${hash(secret, tt, host, local)}=${tt}=${host}=${local}@${domain}`;
}

/**
 * The address a bounce to an SRS address of ours goes back to: for SRS0 the original sender, for SRS1
 * the first forwarder's SRS0 address. Throws SrsError when the address is not one we made (a wrong
 * hash), is malformed, or has expired.
 */
export function srsReverse(address: string, options: SrsOptions): string {
  if (address.length > MAX_ADDRESS) throw new SrsError('the address is too long');
  const [local] = split(address);
  const { secret } = options;
  if (/^srs1[=+-]/i.test(local)) {
    const m = /^srs1[=+-]([^=]*)=([^=]+)=(.*)$/is.exec(local);
    if (!m) throw new SrsError('malformed SRS1 address');
    if (m[1]!.toUpperCase() !== hash(secret, m[2]!, m[3]!))
      throw new SrsError('the SRS hash does not check out');
    return `SRS0${m[3]}@${m[2]}`;
  }
  const m = /^srs0[=+-]([^=]*)=([^=]*)=([^=]+)=(.+)$/is.exec(local);
  if (!m) throw new SrsError('malformed SRS0 address');
  const [, h, tt, host, orig] = m as unknown as [string, string, string, string, string];
  if (h.toUpperCase() !== hash(secret, tt, host, orig)) throw new SrsError('the SRS hash does not check out');
  const t = tt.toUpperCase();
  if (t.length !== 2 || !BASE32.includes(t[0]!) || !BASE32.includes(t[1]!))
    throw new SrsError('malformed SRS timestamp');
  const age =
    (today(options.now ?? new Date()) - (BASE32.indexOf(t[0]!) * 32 + BASE32.indexOf(t[1]!)) + 1024) % 1024;
  if (age > (options.maxAgeDays ?? 21) && age !== 1023) throw new SrsError('the SRS address has expired');
  return `${orig}@${host}`;
}
