/**
 * Tells sessions that their selected mailbox may have changed.
 *
 * The bus says *that* an account changed; the journal says *what* changed,
 * from the modseq the session has seen. So a missed event loses nothing: the
 * session also reads the journal on a slower poll, and every session is
 * poked when the bus says it reconnected (events may have been lost while
 * it was away).
 */
import type { Bus, MailEvent } from '@mailwerk/bus';

export interface Watcher {
  accountId: string;
  /** A change in the account (or a poll): the session decides whether it concerns its mailbox. */
  onEvent(event: MailEvent | null): void;
}

export class Notifier {
  private readonly watchers = new Set<Watcher>();
  private readonly unsubscribe = new Map<Watcher, () => void>();
  private readonly timer: NodeJS.Timeout | null;
  private readonly bus: Bus;
  private readonly offReconnect: (() => void) | undefined;

  /** `pollMs`: how often every session looks at the journal regardless of events (0: never). */
  constructor(bus: Bus, pollMs: number) {
    this.bus = bus;
    this.timer = pollMs > 0 ? setInterval(() => this.pokeAll(), pollMs) : null;
    this.timer?.unref();
    this.offReconnect = bus.onReconnect?.(() => this.pokeAll());
  }

  watch(w: Watcher): () => void {
    this.watchers.add(w);
    this.unsubscribe.set(
      w,
      this.bus.subscribe(w.accountId, (event) => w.onEvent(event)),
    );
    return () => {
      this.unsubscribe.get(w)?.();
      this.unsubscribe.delete(w);
      this.watchers.delete(w);
    };
  }

  /** Every session re-reads its journal (a poll, or the bus came back after an outage). */
  pokeAll(): void {
    for (const w of this.watchers) w.onEvent(null);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.offReconnect?.();
    for (const u of this.unsubscribe.values()) u();
    this.unsubscribe.clear();
    this.watchers.clear();
  }
}
