/**
 * The shared bus: change events over Redis pub/sub (ioredis), one channel per
 * account, so an IMAP session in one process hears of mail the MDA stored in
 * another. Events stay hints: a subscriber that misses one while Redis
 * reconnects catches up from the change journal with the next.
 */
import { Redis } from 'ioredis';
import type { Bus, Listener, MailEvent } from './index.ts';

export class RedisBus implements Bus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly reconnected = new Set<() => void>();
  private connectedOnce = false;

  constructor(url: string, prefix = 'mailwerk:events:') {
    this.pub = new Redis(url, { maxRetriesPerRequest: 2 });
    this.sub = new Redis(url, { maxRetriesPerRequest: null });
    // Connection trouble shows in the publishes that fail; both clients reconnect by themselves.
    this.pub.on('error', () => undefined);
    this.sub.on('error', () => undefined);
    this.prefix = prefix;
    // ioredis resubscribes by itself after a reconnect; what was published meanwhile is lost, so subscribers
    // are told to look at the journal.
    this.sub.on('ready', () => {
      if (this.connectedOnce) for (const l of this.reconnected) l();
      this.connectedOnce = true;
    });
    this.sub.on('message', (channel: string, text: string) => {
      const set = this.listeners.get(channel.slice(this.prefix.length));
      if (!set) return;
      let event: MailEvent;
      try {
        event = JSON.parse(text) as MailEvent;
      } catch {
        return;
      }
      for (const l of set) {
        try {
          l(event);
        } catch {
          /* the subscriber's own problem; it catches up from the journal */
        }
      }
    });
  }

  async publish(event: MailEvent): Promise<void> {
    await this.pub.publish(this.prefix + event.accountId, JSON.stringify(event));
  }

  subscribe(accountId: string, listener: Listener): () => void {
    let set = this.listeners.get(accountId);
    if (!set) {
      set = new Set();
      this.listeners.set(accountId, set);
      this.sub.subscribe(this.prefix + accountId).catch(() => undefined);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(accountId) === set) {
        this.listeners.delete(accountId);
        this.sub.unsubscribe(this.prefix + accountId).catch(() => undefined);
      }
    };
  }

  onReconnect(listener: () => void): () => void {
    this.reconnected.add(listener);
    return () => this.reconnected.delete(listener);
  }

  /** Resolves once the subscriber connection has taken every SUBSCRIBE sent so far. */
  async ready(): Promise<void> {
    await this.sub.ping().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all([
      this.pub.quit().catch(() => this.pub.disconnect()),
      this.sub.quit().catch(() => this.sub.disconnect()),
    ]);
  }
}
