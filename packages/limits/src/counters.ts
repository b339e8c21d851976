/**
 * Counters for abuse limits: how many times something happened within a
 * window (connections per client address, failed RCPTs, failed sign-ins) and
 * small values that expire (greylisting's first-seen times). In process on
 * the embedded default (shared between its processes through the
 * supervisor, see @mailwerk/runtime); in Redis when configured
 * (redis-counters.ts), so several MTA and access processes share them.
 *
 * Windows are fixed: the first increment starts the window and sets its
 * expiry; later ones count into it. That is what Postfix's anvil and most
 * rate limiters do, and it needs one atomic Redis command pair.
 */

export interface Counters {
  /** Adds 1 to `key` and returns the count in its window (started by the first increment, `windowMs` long). */
  hit(key: string, windowMs: number): Promise<number>;
  /** The current count (0 when none or expired). */
  count(key: string): Promise<number>;
  /** Milliseconds until `key` expires (0 when it does not exist). */
  ttl(key: string): Promise<number>;
  /** Forgets `key`. */
  reset(key: string): Promise<void>;
  /** Stores a value that expires after `ttlMs`; with `onlyIfAbsent`, keeps an existing one. Returns the value now stored. */
  put(key: string, value: string, ttlMs: number, onlyIfAbsent?: boolean): Promise<string>;
  get(key: string): Promise<string | null>;
  close(): Promise<void>;
}

interface Slot {
  count: number;
  value: string | null;
  until: number;
}

export class InProcessCounters implements Counters {
  private readonly slots = new Map<string, Slot>();
  private readonly now: () => number;
  private sweeps = 0;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  private live(key: string): Slot | undefined {
    const s = this.slots.get(key);
    if (s && s.until <= this.now()) {
      this.slots.delete(key);
      return undefined;
    }
    return s;
  }

  /** Expired entries go every few thousand writes, so memory follows the traffic of the last window. */
  private sweep(): void {
    if (++this.sweeps < 4096) return;
    this.sweeps = 0;
    const now = this.now();
    for (const [k, s] of this.slots) if (s.until <= now) this.slots.delete(k);
  }

  async hit(key: string, windowMs: number): Promise<number> {
    this.sweep();
    const s = this.live(key);
    if (s) return ++s.count;
    this.slots.set(key, { count: 1, value: null, until: this.now() + windowMs });
    return 1;
  }

  async count(key: string): Promise<number> {
    return this.live(key)?.count ?? 0;
  }

  async ttl(key: string): Promise<number> {
    const s = this.live(key);
    return s ? s.until - this.now() : 0;
  }

  async reset(key: string): Promise<void> {
    this.slots.delete(key);
  }

  async put(key: string, value: string, ttlMs: number, onlyIfAbsent = false): Promise<string> {
    this.sweep();
    const s = this.live(key);
    if (s && onlyIfAbsent && s.value !== null) return s.value;
    this.slots.set(key, { count: 0, value, until: this.now() + ttlMs });
    return value;
  }

  async get(key: string): Promise<string | null> {
    return this.live(key)?.value ?? null;
  }

  async close(): Promise<void> {
    this.slots.clear();
  }
}
