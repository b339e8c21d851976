/**
 * Failed-login throttling, shared by IMAP, POP3 and submission. Failures are
 * counted per client address and per account name within a window; past a
 * threshold every further attempt from that address (or for that account)
 * waits a delay that doubles with each failure, up to a cap, and past a
 * second threshold the address is blocked until the window ends. A success
 * clears the address's count, so a user who mistypes once is not punished
 * later; the account's count is only cleared by a success, so a slow
 * distributed guesser still meets the delay.
 *
 * The delay is applied before the answer, with the same reply for an unknown
 * user and a wrong password, so timing tells nothing about which it was.
 * In-process; a Redis-backed implementation of the same interface serves
 * several processes (the abuse-limits issue).
 */

export interface ThrottleOptions {
  /** Failures allowed without delay, per address and per account. */
  freeFailures?: number;
  /** The first delay, doubled for each further failure. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Failures from one address after which it is refused outright until the window ends. */
  blockAfter?: number;
  windowMs?: number;
  now?: () => number;
}

export type ThrottleVerdict = { blocked: true; retryAfterMs: number } | { blocked: false; delayMs: number };

interface Counter {
  failures: number;
  until: number;
}

export class AuthThrottle {
  private readonly byAddress = new Map<string, Counter>();
  private readonly byAccount = new Map<string, Counter>();
  private readonly freeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly blockAfter: number;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(options: ThrottleOptions = {}) {
    this.freeFailures = options.freeFailures ?? 3;
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 8000;
    this.blockAfter = options.blockAfter ?? 20;
    this.windowMs = options.windowMs ?? 15 * 60_000;
    this.now = options.now ?? Date.now;
  }

  /** What to do with an attempt before checking the password. */
  check(address: string, account: string): ThrottleVerdict {
    const now = this.now();
    const ip = this.current(this.byAddress, address, now);
    if (ip && ip.failures >= this.blockAfter) return { blocked: true, retryAfterMs: ip.until - now };
    const acct = this.current(this.byAccount, account.toLowerCase(), now);
    const failures = Math.max(ip?.failures ?? 0, acct?.failures ?? 0);
    return { blocked: false, delayMs: this.delayFor(failures) };
  }

  failed(address: string, account: string): void {
    const now = this.now();
    this.bump(this.byAddress, address, now);
    this.bump(this.byAccount, account.toLowerCase(), now);
    this.prune(now);
  }

  succeeded(address: string, account: string): void {
    this.byAddress.delete(address);
    this.byAccount.delete(account.toLowerCase());
  }

  private delayFor(failures: number): number {
    if (failures === 0 || failures < this.freeFailures) return 0;
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (failures - this.freeFailures));
  }

  private current(map: Map<string, Counter>, key: string, now: number): Counter | undefined {
    const c = map.get(key);
    if (c && c.until <= now) {
      map.delete(key);
      return undefined;
    }
    return c;
  }

  private bump(map: Map<string, Counter>, key: string, now: number): void {
    const c = this.current(map, key, now);
    map.set(key, { failures: (c?.failures ?? 0) + 1, until: now + this.windowMs });
  }

  /** Keeps memory bounded under a spray of addresses or names. */
  private prune(now: number): void {
    for (const map of [this.byAddress, this.byAccount]) {
      if (map.size < 10_000) continue;
      for (const [k, c] of map) if (c.until <= now) map.delete(k);
    }
  }
}
