/**
 * Greylisting (RFC 6647), off unless the admin turns it on: the first
 * delivery attempt of a (client network, sender, recipient) triplet is
 * answered 451 4.7.1; a retry after `delayMs` passes, and the triplet is
 * then let through at once for `passMs`. Client networks are /24 for IPv4
 * and /64 for IPv6, so senders that retry from another host of their pool pass.
 */
import { isIPv6 } from 'node:net';
import type { Counters } from './counters.ts';

export interface GreylistOptions {
  delayMs?: number;
  /** How long a first attempt is remembered, waiting for its retry. */
  retryWindowMs?: number;
  /** How long a triplet that retried properly passes without delay. */
  passMs?: number;
  now?: () => number;
}

export function clientNetwork(ip: string): string {
  const addr = ip.replace(/^::ffff:/, '');
  if (isIPv6(addr)) {
    const groups = addr.split('::');
    const head = (groups[0] ?? '').split(':').filter(Boolean);
    const tail = groups.length > 1 ? (groups[1] ?? '').split(':').filter(Boolean) : [];
    const full = [...head, ...Array(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
    return `${full.slice(0, 4).join(':')}::/64`;
  }
  return `${addr.split('.').slice(0, 3).join('.')}.0/24`;
}

export class Greylist {
  private readonly counters: Counters;
  private readonly o: Required<Omit<GreylistOptions, 'now'>> & { now: () => number };

  constructor(counters: Counters, options: GreylistOptions = {}) {
    this.counters = counters;
    this.o = {
      delayMs: 300_000,
      retryWindowMs: 86_400_000,
      passMs: 36 * 86_400_000,
      now: Date.now,
      ...options,
    };
  }

  /** null when the triplet may pass; otherwise the milliseconds until a retry will. */
  async check(ip: string, sender: string, recipient: string): Promise<number | null> {
    const triplet = `${clientNetwork(ip)}|${sender.toLowerCase()}|${recipient.toLowerCase()}`;
    const passKey = `grey:pass:${triplet}`;
    if (await this.counters.get(passKey)) return null;
    const now = this.o.now();
    const first = Number(
      await this.counters.put(`grey:first:${triplet}`, String(now), this.o.retryWindowMs, true),
    );
    const waited = now - first;
    if (waited >= this.o.delayMs) {
      await this.counters.put(passKey, '1', this.o.passMs);
      return null;
    }
    return this.o.delayMs - waited;
  }
}
