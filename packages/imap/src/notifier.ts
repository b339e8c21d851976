/**
 * Live updates for imap-core's connections: EXISTS, FETCH (flags) and
 * EXPUNGE for the selected mailbox, read from the store's change journal.
 *
 * The bus says *that* an account changed; the journal says *what* changed,
 * from the modseq the session has seen. So a missed event loses nothing:
 * the next event, or the poll when the writer is another process without a
 * shared bus, catches up from the journal.
 *
 * A session's own changes are already answered in its command responses
 * (STORE's FETCH, EXPUNGE's EXPUNGE); they are marked with the session's id
 * so imap-core does not announce them to it twice.
 */
import type { Bus } from '@mailwerk/bus';
import type { MailStore } from '@mailwerk/store';
import type { ImapSession, Notifier } from './core.ts';

type Handler = (message?: unknown) => void;

interface Listening {
  handler: Handler;
  unsubscribe: () => void;
}

const OWN_LIMIT = 10_000;

export class StoreNotifier implements Notifier {
  private readonly listening = new Map<ImapSession, Listening>();
  /** `mailboxId:modseq` → the session that made the change. Insertion-ordered, trimmed to OWN_LIMIT. */
  private readonly own = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly store: MailStore;
  private readonly bus: Bus;

  /** `pollMs` > 0: also look at the journal of every selected mailbox that often (for writers in other processes). */
  constructor(store: MailStore, bus: Bus, pollMs = 0) {
    this.store = store;
    this.bus = bus;
    if (pollMs > 0) {
      this.timer = setInterval(() => this.poke(), pollMs);
      this.timer.unref();
    }
  }

  addListener(session: ImapSession, handler: Handler): void {
    const accountId = session.user?.id;
    if (!accountId) return;
    // imap-core's handler reads `this`, so it is always called as a method of its entry.
    const entry: Listening = { handler, unsubscribe: () => undefined };
    entry.unsubscribe = this.bus.subscribe(accountId, (event) => {
      const selected = session.selected;
      if (!selected || event.mailboxId !== selected.mailbox) return;
      if (event.type !== 'mailbox.change') return entry.handler();
      // The selected mailbox was renamed or deleted elsewhere; if deleted, imap-core ends the session with BYE.
      this.store.getMailboxById(event.mailboxId).then(
        (mb) => (mb ? undefined : entry.handler({ command: 'DROP', mailbox: event.mailboxId })),
        () => undefined,
      );
    });
    this.listening.set(session, entry);
  }

  removeListener(session: ImapSession): void {
    this.listening.get(session)?.unsubscribe();
    this.listening.delete(session);
  }

  getUpdates(
    mailboxId: string,
    modifyIndex: number,
    callback: (err: Error | null, updates?: Array<Record<string, unknown>>) => void,
  ): void {
    this.store.changesSince(mailboxId, modifyIndex).then(
      (changes) =>
        callback(
          null,
          changes.map((c) => {
            const ignore = this.own.get(`${mailboxId}:${c.modseq}`);
            const command = c.kind === 'append' ? 'EXISTS' : c.kind === 'expunge' ? 'EXPUNGE' : 'FETCH';
            return {
              command,
              uid: c.uid,
              modseq: c.modseq,
              ...(c.flags ? { flags: c.flags } : {}),
              ...(ignore ? { ignore } : {}),
            };
          }),
        ),
      (err: Error) => callback(err),
    );
  }

  /** Records changes a session made itself (it has answered them already). */
  markOwn(mailboxId: string, modseqs: Iterable<number>, session: ImapSession): void {
    for (const m of modseqs) this.own.set(`${mailboxId}:${m}`, session.id);
    if (this.own.size > OWN_LIMIT) {
      const drop = this.own.size - OWN_LIMIT;
      let i = 0;
      for (const key of this.own.keys()) {
        if (i++ >= drop) break;
        this.own.delete(key);
      }
    }
  }

  /** Makes every session with a selected mailbox look at its journal (IDLE start, polling). */
  poke(session?: ImapSession): void {
    if (session) {
      if (session.selected) this.listening.get(session)?.handler();
      return;
    }
    for (const [s, l] of this.listening) if (s.selected) l.handler();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const l of this.listening.values()) l.unsubscribe();
    this.listening.clear();
  }
}
