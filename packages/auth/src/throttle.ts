/**
 * Failed-login throttling, shared by IMAP, POP3 and submission. Failures are
 * counted per client address and per account name within a window; past a
 * few failures every further attempt from that address waits a delay that
 * doubles with each failure, up to a cap, and past a second threshold the
 * address is blocked until the window ends. The real user, signing in from
 * their own address, is not affected by a guesser elsewhere: the account's
 * own count only slows attempts down after many failures (a guess spread over
 * many addresses). A success clears both counts.
 *
 * The delay is applied before the answer, with the same reply for an unknown
 * user and a wrong password, so timing tells nothing about which it was.
 * The counts live in @mailwerk/limits counters: in process, or in Redis
 * when several processes share them.
 */
import { type Counters, InProcessCounters } from '@mailwerk/limits';

export interface ThrottleOptions {
  /** Where the counts live (Redis to share them between processes); in process by default. */
  counters?: Counters;
  /** Failures from one address allowed without delay. */
  freeFailures?: number;
  /**
   * Failures for one account (from any address) allowed without delay. High, so the real user signing
   * in from their own address is not slowed by a guesser elsewhere, yet a slow spread-out guess still meets it.
   */
  accountFreeFailures?: number;
  /** The first delay, doubled for each further failure. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Failures from one address after which it is refused outright until the window ends. */
  blockAfter?: number;
  windowMs?: number;
  /**
   * Told of every refused sign-in, whatever the protocol (see checkLogin), to
   * write the one log line fail2ban reads (infra/fail2ban/).
   */
  onFailure?: (failure: AuthFailure) => void;
}

/** A refused sign-in: the fields of the log line, in the order they are written. */
export interface AuthFailure {
  service: 'submission' | 'imap' | 'pop3' | 'managesieve';
  /** The client's address; an IPv4 address mapped into IPv6 is written as IPv4. */
  ip: string;
  /** The user name as given (at most 256 characters). */
  user: string;
  /** `invalid`: no such user, a disabled one or a wrong password (not told apart); `blocked`: too many failures. */
  reason: 'invalid' | 'blocked';
  /** The protocol session's id, to find its other log lines. */
  session?: string;
}

export type ThrottleVerdict = { blocked: true; retryAfterMs: number } | { blocked: false; delayMs: number };

export class AuthThrottle {
  private readonly counters: Counters;
  private readonly freeFailures: number;
  private readonly accountFreeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly blockAfter: number;
  private readonly windowMs: number;
  private readonly onFailure: ((failure: AuthFailure) => void) | undefined;

  constructor(options: ThrottleOptions = {}) {
    this.counters = options.counters ?? new InProcessCounters();
    this.freeFailures = options.freeFailures ?? 3;
    this.accountFreeFailures = options.accountFreeFailures ?? 30;
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 8000;
    this.blockAfter = options.blockAfter ?? 20;
    this.windowMs = options.windowMs ?? 15 * 60_000;
    this.onFailure = options.onFailure;
  }

  /** Reports a refused sign-in (checkLogin calls it once per refusal). */
  report(failure: AuthFailure): void {
    this.onFailure?.({
      service: failure.service,
      ip: failure.ip.startsWith('::ffff:') && failure.ip.includes('.') ? failure.ip.slice(7) : failure.ip,
      user: failure.user.slice(0, 256),
      reason: failure.reason,
      ...(failure.session ? { session: failure.session } : {}),
    });
  }

  private static ipKey = (address: string) => `auth:ip:${address}`;
  private static accountKey = (account: string) => `auth:account:${account.toLowerCase()}`;

  /** What to do with an attempt before checking the password. */
  async check(address: string, account: string): Promise<ThrottleVerdict> {
    const ip = await this.counters.count(AuthThrottle.ipKey(address));
    if (ip >= this.blockAfter)
      return { blocked: true, retryAfterMs: await this.counters.ttl(AuthThrottle.ipKey(address)) };
    const acct = await this.counters.count(AuthThrottle.accountKey(account));
    return {
      blocked: false,
      delayMs: Math.max(this.delayFor(ip, this.freeFailures), this.delayFor(acct, this.accountFreeFailures)),
    };
  }

  async failed(address: string, account: string): Promise<void> {
    await this.counters.hit(AuthThrottle.ipKey(address), this.windowMs);
    await this.counters.hit(AuthThrottle.accountKey(account), this.windowMs);
  }

  async succeeded(address: string, account: string): Promise<void> {
    await this.counters.reset(AuthThrottle.ipKey(address));
    await this.counters.reset(AuthThrottle.accountKey(account));
  }

  private delayFor(failures: number, free: number): number {
    if (failures === 0 || failures < free) return 0;
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (failures - free));
  }
}
