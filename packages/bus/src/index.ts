/**
 * Typed change events. Publishers publish only after the write they describe
 * has committed, so a subscriber that reacts by reading the store sees it.
 * Events are hints to look at the change journal, never the only record of a
 * change: a subscriber that misses one (a restart, a dropped Redis
 * connection) catches up from `changesSince`.
 */
export type MailEvent =
  | { type: 'message.new'; accountId: string; mailboxId: string; uid: number; modseq: number }
  | { type: 'message.flags'; accountId: string; mailboxId: string; uids: number[]; modseq: number }
  | { type: 'message.expunge'; accountId: string; mailboxId: string; uids: number[]; modseq: number }
  | { type: 'mailbox.change'; accountId: string; mailboxId: string };

export type Listener = (event: MailEvent) => void;

export interface Bus {
  publish(event: MailEvent): Promise<void>;
  /** Events of one account; returns the unsubscribe function. */
  subscribe(accountId: string, listener: Listener): () => void;
  /**
   * Called when the bus comes back after an outage, during which events may
   * have been lost: subscribers re-read the journal then. Returns the
   * unsubscribe function. (A bus that cannot lose events never calls it.)
   */
  onReconnect?(listener: () => void): () => void;
  close(): Promise<void>;
}

/** The embedded bus: one process, no network. */
export class InProcessBus implements Bus {
  private readonly listeners = new Map<string, Set<Listener>>();

  async publish(event: MailEvent): Promise<void> {
    this.deliver(event);
  }

  /** Hands an event to this process's subscribers (a bus that relays events from elsewhere calls it too). */
  deliver(event: MailEvent): void {
    for (const listener of this.listeners.get(event.accountId) ?? []) {
      // A failing subscriber must not break the publisher or the others.
      try {
        listener(event);
      } catch {
        /* the subscriber's own problem; it catches up from the journal */
      }
    }
  }

  subscribe(accountId: string, listener: Listener): () => void {
    let set = this.listeners.get(accountId);
    if (!set) {
      set = new Set();
      this.listeners.set(accountId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(accountId);
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
