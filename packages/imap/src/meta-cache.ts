/**
 * The rows of a mailbox without their structure (UID, flags, MODSEQ, size,
 * date, blob), kept in memory for every session of the process, as Dovecot
 * keeps its index. A mail client asks for all flags, searches UNSEEN and
 * expunges many times a minute; reading and decoding every row of the
 * mailbox for each was a third of the engine's time under a client's mix
 * (bench/imap-mix.ts).
 *
 * Invariants:
 * - The store is the truth. Each read asks it for the mailbox's highest
 *   MODSEQ (one row); when that moved, the change journal since the cached
 *   MODSEQ is applied (new rows are read, flags set, expunged rows dropped),
 *   so a read never returns what the store no longer holds. The journal
 *   keeps far more than a cache lags behind (100,000 changes per mailbox);
 *   past `maxLag` changes the mailbox is read again whole.
 * - Rows handed out are shared and never changed in place: an update
 *   replaces the row object.
 * - Bounded: at most `maxRows` rows over all mailboxes; the mailbox used
 *   least recently goes first.
 */
import { journalFollows, type Mailbox, type MailStore, type MessageMeta } from '@mailwerk/store';

interface Entry {
  /** The mailbox row read by the last refresh. */
  mailbox: Mailbox | null;
  modseq: number;
  rows: Map<number, MessageMeta>;
  /** The UIDs in order, or null after a removal (rebuilt when read). */
  order: number[] | null;
}

export class MetaCache {
  private readonly store: MailStore;
  private readonly entries = new Map<string, Entry>();
  private readonly maxRows: number;
  private readonly maxLag: number;
  private rows = 0;
  /** One refresh per mailbox at a time; readers that come meanwhile wait for it. */
  private readonly pending = new Map<string, Promise<Entry>>();

  constructor(store: MailStore, options: { maxRows?: number; maxLag?: number } = {}) {
    this.store = store;
    this.maxRows = options.maxRows ?? 200_000;
    this.maxLag = options.maxLag ?? 5_000;
  }

  /** The rows of the mailbox with UIDs in the range, in UID order. */
  async list(mailboxId: string, range: { uidFrom?: number; uidTo?: number } = {}): Promise<MessageMeta[]> {
    if (this.maxRows <= 0) return this.store.listMessageMeta(mailboxId, range);
    return rowsOf(await this.current(mailboxId), range);
  }

  /**
   * The mailbox row and all its rows as of one MODSEQ, for SELECT; null when
   * the two did not come from the same moment (the caller asks the store).
   */
  async view(mailboxId: string): Promise<{ mailbox: Mailbox; rows: MessageMeta[] } | null> {
    if (this.maxRows <= 0) return null;
    const entry = await this.current(mailboxId);
    if (!entry.mailbox || entry.mailbox.highestModseq !== entry.modseq) return null;
    // Both from this one entry, with no await in between: the same moment.
    return { mailbox: entry.mailbox, rows: rowsOf(entry, {}) };
  }

  private async current(mailboxId: string): Promise<Entry> {
    const running = this.pending.get(mailboxId);
    if (running) return running;
    const p = this.refresh(mailboxId).finally(() => this.pending.delete(mailboxId));
    this.pending.set(mailboxId, p);
    return p;
  }

  private async refresh(mailboxId: string): Promise<Entry> {
    const mb = await this.store.getMailboxById(mailboxId);
    if (!mb) {
      this.drop(mailboxId);
      return { mailbox: null, modseq: 0, rows: new Map(), order: [] };
    }
    let entry = this.entries.get(mailboxId);
    if (entry) {
      // Most recently used last: Map order is the eviction order.
      this.entries.delete(mailboxId);
      this.entries.set(mailboxId, entry);
      if (entry.modseq === mb.highestModseq) {
        entry.mailbox = mb;
        return entry;
      }
      if (mb.highestModseq - entry.modseq <= this.maxLag && (await this.apply(mailboxId, entry, mb)))
        return entry;
      this.drop(mailboxId);
    }
    // The mailbox row first: what changes while the rows are read is applied again next time (idempotently);
    // a message that arrived meanwhile waits for that, so no row is above the UIDNEXT the entry knows.
    const list = (await this.store.listMessageMeta(mailboxId)).filter((m) => m.uid < mb.uidNext);
    entry = {
      mailbox: mb,
      modseq: mb.highestModseq,
      rows: new Map(list.map((m) => [m.uid, m])),
      order: list.map((m) => m.uid),
    };
    this.entries.set(mailboxId, entry);
    this.rows += list.length;
    this.evict(mailboxId);
    return entry;
  }

  /**
   * Brings the entry up to date from the journal; false when it cannot (the
   * caller reads it whole). Everything is read first and the entry changed in
   * one synchronous step, so no reader ever sees it half updated.
   */
  private async apply(mailboxId: string, entry: Entry, mb: Mailbox): Promise<boolean> {
    const since = entry.modseq;
    const changes = await this.store.changesSince(mailboxId, since);
    if (changes.length > this.maxLag) return false;
    // The journal pruned past the entry cannot say what changed: the caller reads the mailbox whole.
    if (mb.highestModseq > since && !journalFollows(changes, since)) return false;
    const added = new Set<number>();
    for (const c of changes) {
      if (c.kind === 'append') added.add(c.uid);
      else if (c.kind === 'expunge') added.delete(c.uid);
    }
    const fresh = added.size
      ? await this.store.listMessageMeta(mailboxId, {
          uidFrom: Math.min(...added),
          uidTo: Math.max(...added),
        })
      : [];
    // Another refresh may not have run meanwhile (one at a time per mailbox), but be sure.
    if (entry.modseq !== since) return true;
    for (const c of changes) {
      if (c.kind === 'expunge') {
        if (entry.rows.delete(c.uid)) {
          this.rows--;
          entry.order = null;
        }
      } else if (c.kind !== 'append') {
        const m = entry.rows.get(c.uid);
        if (m && c.flags && c.modseq >= m.modseq)
          entry.rows.set(c.uid, { ...m, flags: c.flags, modseq: c.modseq });
      }
      if (c.modseq > entry.modseq) entry.modseq = c.modseq;
    }
    for (const m of fresh) {
      if (!added.has(m.uid)) continue;
      if (!entry.rows.has(m.uid)) {
        this.rows++;
        if (entry.order && m.uid > (entry.order.at(-1) ?? 0)) entry.order.push(m.uid);
        else entry.order = null;
      }
      entry.rows.set(m.uid, m);
    }
    // The mailbox row goes with the rows only when both are of the same MODSEQ (view() checks).
    entry.mailbox = mb;
    return true;
  }

  private drop(mailboxId: string): void {
    const e = this.entries.get(mailboxId);
    if (!e) return;
    this.rows -= e.rows.size;
    this.entries.delete(mailboxId);
  }

  /** Least recently used mailboxes out until the rows fit (never the one just read). */
  private evict(keep: string): void {
    for (const id of this.entries.keys()) {
      if (this.rows <= this.maxRows) return;
      if (id !== keep) this.drop(id);
    }
  }
}

function rowsOf(entry: Entry, range: { uidFrom?: number; uidTo?: number }): MessageMeta[] {
  const from = range.uidFrom ?? 1;
  const to = range.uidTo ?? Number.MAX_SAFE_INTEGER;
  entry.order ??= [...entry.rows.keys()].sort((a, b) => a - b);
  const order = entry.order;
  const out: MessageMeta[] = [];
  for (let i = lowerBound(order, from); i < order.length && order[i]! <= to; i++)
    out.push(entry.rows.get(order[i]!)!);
  return out;
}

/** The first index whose value is at least `x`. */
function lowerBound(sorted: number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
