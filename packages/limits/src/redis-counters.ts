/** Counters in Redis (the shared setup): one atomic round trip per call, windows by PEXPIRE NX. */
import { Redis } from 'ioredis';
import type { Counters } from './counters.ts';

export class RedisCounters implements Counters {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(url: string, prefix = 'mailwerk:') {
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true });
    // A Redis that goes away is reported by the calls that fail; the client reconnects by itself.
    this.redis.on('error', () => undefined);
    this.prefix = prefix;
  }

  async hit(key: string, windowMs: number): Promise<number> {
    const k = this.prefix + key;
    // INCR and PEXPIRE NX in one round trip: the window starts with the first hit only.
    const r = await this.redis.multi().incr(k).pexpire(k, windowMs, 'NX').exec();
    return Number(r?.[0]?.[1] ?? 0);
  }

  async count(key: string): Promise<number> {
    return Number((await this.redis.get(this.prefix + key)) ?? 0);
  }

  async ttl(key: string): Promise<number> {
    return Math.max(0, await this.redis.pttl(this.prefix + key));
  }

  async reset(key: string): Promise<void> {
    await this.redis.del(this.prefix + key);
  }

  async put(key: string, value: string, ttlMs: number, onlyIfAbsent = false): Promise<string> {
    const k = this.prefix + key;
    if (!onlyIfAbsent) {
      await this.redis.set(k, value, 'PX', ttlMs);
      return value;
    }
    const set = await this.redis.set(k, value, 'PX', ttlMs, 'NX');
    return set === 'OK' ? value : ((await this.redis.get(k)) ?? value);
  }

  async get(key: string): Promise<string | null> {
    return this.redis.get(this.prefix + key);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
