/**
 * The selected mailbox as one session sees it (RFC 3501 §2.3.1, §5.2, §7.4.1).
 *
 * Invariants:
 * - `uids` is the client's view: sequence number n is its n-th entry. It
 *   changes only when the client is told: `* n EXISTS` adds, `* n EXPUNGE`
 *   removes. A message expunged by someone else stays in the view, in
 *   `expunged`, until an EXPUNGE may be sent (never during FETCH, STORE or
 *   SEARCH and their UID forms).
 * - `modseq` is how far the session has read the store's change journal; the
 *   journal, not the bus, is the truth (a missed event only delays).
 * - Changes the session made itself are answered by its own command (STORE's
 *   FETCH, EXPUNGE's EXPUNGE); `own` holds their modseqs so the journal does
 *   not announce them twice.
 * - A message is \Recent in this session when this session was the first to
 *   be shown it (the store's claim, RFC 3501 §2.3.2); EXAMINE claims nothing.
 * - Keywords the client has not been told of are announced with FLAGS and
 *   PERMANENTFLAGS before the FETCH that shows them.
 */
import {
  type Change,
  hasFlag,
  journalFollows,
  type Mailbox,
  type MailboxView,
  type MailStore,
} from '@mailwerk/store';
import { type ContextChanges, contextChanges, type SearchContext } from './contexts.ts';
import type { MetaCache } from './meta-cache.ts';
import { flagList, str } from './protocol/encode.ts';
import { formatUids, UidList } from './protocol/sequence.ts';

export const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'];

/** What the selected mailbox needs of its session: somewhere to write untagged responses. */
export interface Output {
  untagged(text: string): void;
  readonly condstore: boolean;
  readonly qresync: boolean;
}

/**
 * What `MailStore.viewMailbox` answers (claiming \Recent), from the shared row
 * cache when it holds the mailbox as of one MODSEQ: a client SELECTs often,
 * and the cache spares reading every row again.
 */
async function viewFromCache(
  store: MailStore,
  cache: MetaCache,
  mailboxId: string,
): Promise<MailboxView | null> {
  const v = await cache.view(mailboxId);
  if (!v) return null;
  const uids = v.rows.map((m) => m.uid);
  let firstUnseen: number | null = null;
  const keywords = new Map<string, string>();
  for (const m of v.rows) {
    if (firstUnseen === null && !hasFlag(m.flags, '\\Seen')) firstUnseen = m.uid;
    for (const f of m.flags)
      if (!f.startsWith('\\') && !keywords.has(f.toLowerCase())) keywords.set(f.toLowerCase(), f);
  }
  const recentAbove = await store.claimRecent(mailboxId, uids.at(-1) ?? 0);
  return { mailbox: v.mailbox, uids, recentAbove, firstUnseen, keywords: [...keywords.values()] };
}

export class Selected {
  readonly mailbox: Mailbox;
  readonly readOnly: boolean;
  readonly uids: UidList;
  modseq: number;
  /** Messages above this UID that this session claimed are \Recent; ranges of [low, high]. */
  private recent: Array<[number, number]> = [];
  private readonly keywords = new Map<string, string>();
  readonly expunged = new Set<number>();
  /**
   * Flag changes this session made and answered itself, the UIDs by mod-sequence: the journal's record of
   * them is not sent again. By message, since one STORE of several messages shares one mod-sequence.
   */
  private readonly own = new Map<number, Set<number>>();
  /** RFC 5182 SEARCHRES: the UIDs the last SEARCH … RETURN (SAVE) found, `$` in later commands; empty at SELECT. */
  saved: number[] = [];
  /** UIDs this session's own APPEND, COPY or MOVE put here: NOTIFY's MessageNew FETCH leaves them out (RFC 5465 §5.2). */
  readonly madeByUs = new Set<number>();
  /** Results kept current for the client (CONTEXT=SEARCH/SORT), by the tag of the command that asked. */
  readonly contexts = new Map<string, SearchContext>();
  /** Set by the notifier: the journal may have something new. */
  dirty = false;
  private readonly store: MailStore;

  private constructor(store: MailStore, mailbox: Mailbox, readOnly: boolean, uids: number[], modseq: number) {
    this.store = store;
    this.mailbox = mailbox;
    this.readOnly = readOnly;
    this.uids = new UidList(uids);
    this.modseq = modseq;
  }

  static async open(
    store: MailStore,
    mailbox: Mailbox,
    readOnly: boolean,
    cache?: MetaCache,
  ): Promise<{ selected: Selected; firstUnseen: number | null }> {
    const view =
      (!readOnly && cache && (await viewFromCache(store, cache, mailbox.id))) ||
      (await store.viewMailbox(mailbox.id, { claimRecent: !readOnly }));
    const s = new Selected(store, view.mailbox, readOnly, view.uids, view.mailbox.highestModseq);
    const top = s.uids.last;
    if (top > view.recentAbove) s.recent.push([view.recentAbove + 1, top]);
    for (const k of view.keywords) s.keywords.set(k.toLowerCase(), k);
    return { selected: s, firstUnseen: view.firstUnseen };
  }

  get exists(): number {
    return this.uids.length;
  }

  get recentCount(): number {
    let n = 0;
    for (const [lo, hi] of this.recent) {
      // Count the UIDs of the view inside [lo, hi].
      for (let s = this.uids.length; s >= 1; s--) {
        const u = this.uids.uidAt(s);
        if (u < lo) break;
        if (u <= hi) n++;
      }
    }
    return n;
  }

  isRecent(uid: number): boolean {
    for (const [lo, hi] of this.recent) if (uid >= lo && uid <= hi) return true;
    return false;
  }

  /** IMAP4rev2 (RFC 9051 Appendix E): no \Recent flag and no RECENT response. */
  hideRecent = false;

  /** The flags as FETCH shows them: \Recent added for this session's recent messages (not under rev2). */
  flagsOf(uid: number, flags: readonly string[]): string {
    return flagList(!this.hideRecent && this.isRecent(uid) ? [...flags, '\\Recent'] : flags);
  }

  /** `* FLAGS` and `* OK [PERMANENTFLAGS]` (RFC 3501 §7.2.6, §7.1). */
  announceFlags(out: Output): void {
    const all = [...SYSTEM_FLAGS, ...this.keywords.values()];
    out.untagged(`FLAGS ${flagList(all)}`);
    out.untagged(
      this.readOnly
        ? 'OK [PERMANENTFLAGS ()] Read-only mailbox'
        : `OK [PERMANENTFLAGS ${flagList([...all, '\\*'])}] Flags permitted`,
    );
  }

  /** Records keywords in `flags`; true when one was new (the caller announces them). */
  learn(flags: readonly string[]): boolean {
    let added = false;
    for (const f of flags) {
      if (f.startsWith('\\')) continue;
      const k = f.toLowerCase();
      if (!this.keywords.has(k)) {
        this.keywords.set(k, f);
        added = true;
      }
    }
    return added;
  }

  /** Writes the EXPUNGE responses owed, highest sequence number first, and drops them from the view. */
  /** A flag change this session made and answers itself (STORE, FETCH setting \Seen). */
  madeHere(uid: number, modseq: number): void {
    const uids = this.own.get(modseq);
    if (uids) uids.add(uid);
    else this.own.set(modseq, new Set([uid]));
  }

  /** The highest UID the session may know of: the mailbox's UIDNEXT at SELECT, or what came since. */
  get topUid(): number {
    return Math.max(this.mailbox.uidNext - 1, this.uids.last);
  }

  flushExpunges(out: Output): void {
    if (this.expunged.size === 0) return;
    // RFC 5267 §4.3.4: a context's REMOVEFROM goes before the EXPUNGE, while its numbers still hold.
    for (const ctx of this.contexts.values())
      this.tellContext(
        out,
        ctx,
        ctx.result.filter((u) => !this.expunged.has(u)),
      );
    const seqs: number[] = [];
    for (const u of this.expunged) {
      const s = this.uids.seqOf(u);
      if (s) seqs.push(s);
    }
    if (out.qresync) {
      // RFC 7162 §3.2.10: with QRESYNC, one VANISHED with the UIDs instead of an EXPUNGE each.
      const uids = [...this.expunged].filter((u) => this.uids.has(u)).sort((a, b) => a - b);
      if (uids.length) out.untagged(`VANISHED ${formatUids(uids)}`);
    } else {
      // From the highest down, so each number is still right when the client reads it.
      seqs.sort((a, b) => b - a);
      for (const s of seqs) out.untagged(`${s} EXPUNGE`);
    }
    this.uids.removeAll(this.expunged);
    this.expunged.clear();
  }

  /**
   * Reads the journal from `modseq` and tells the client what changed: new
   * messages (EXISTS, RECENT), flag changes (FETCH; not with `flags` false:
   * NOTIFY without FlagChange) and, when `expunge` is allowed, removals
   * (EXPUNGE).
   */
  async sync(out: Output, expunge: boolean, flags = true): Promise<void> {
    this.dirty = false;
    const { changes, upTo } = await this.changes();
    let added = 0;
    const flagged = new Map<number, { flags: string[]; modseq: number }>();
    let newKeywords = false;
    for (const c of changes) {
      if (c.modseq > this.modseq) this.modseq = c.modseq;
      if (c.kind === 'append') {
        if (!this.uids.has(c.uid) && !this.expunged.has(c.uid)) {
          this.uids.add(c.uid);
          added++;
        }
        if (c.flags && this.learn(c.flags)) newKeywords = true;
      } else if (c.kind === 'expunge') {
        if (this.uids.has(c.uid)) this.expunged.add(c.uid);
        flagged.delete(c.uid);
      } else if (this.own.get(c.modseq)?.delete(c.uid)) {
        // Already answered by the command that made it.
      } else if (this.uids.has(c.uid) && !this.expunged.has(c.uid) && c.flags) {
        flagged.set(c.uid, { flags: c.flags, modseq: c.modseq });
        if (this.learn(c.flags)) newKeywords = true;
      }
    }
    if (upTo > this.modseq) this.modseq = upTo;
    // Own changes the journal has passed can be forgotten.
    for (const m of this.own.keys()) if (m <= this.modseq) this.own.delete(m);
    if (expunge) this.flushExpunges(out);
    if (added) {
      if (!this.readOnly) {
        const top = this.uids.last;
        const shown = await this.store.claimRecent(this.mailbox.id, top);
        if (top > shown) this.recent.push([shown + 1, top]);
      }
      out.untagged(`${this.uids.length} EXISTS`);
      if (!this.hideRecent) out.untagged(`${this.recentCount} RECENT`);
    }
    if (newKeywords) this.announceFlags(out);
    for (const [uid, f] of flags ? flagged : []) {
      const seq = this.uids.seqOf(uid);
      if (!seq) continue;
      out.untagged(
        `${seq} FETCH (UID ${uid} FLAGS ${this.flagsOf(uid, f.flags)}${out.condstore ? ` MODSEQ (${f.modseq})` : ''})`,
      );
    }
    // RFC 5267 §4.3.3: after EXISTS, so the new sequence numbers are valid. Own changes count too: they
    // are in the journal read above (a STORE can take a message out of an UNSEEN search).
    if (changes.length) for (const ctx of this.contexts.values()) this.tellContext(out, ctx, await ctx.run());
  }

  /**
   * The changes since what the session has read, and the MODSEQ they bring it to: from the journal, or,
   * when the journal was pruned past that point (journalFollows), made from the rows themselves: what left
   * the view is expunged, what is above it appended, what changed after the session's MODSEQ flagged; up
   * to the mailbox's MODSEQ, whatever the rows say (the last change may have been an expunge).
   */
  private async changes(): Promise<{ changes: Change[]; upTo: number }> {
    const changes = await this.store.changesSince(this.mailbox.id, this.modseq);
    if (journalFollows(changes, this.modseq)) return { changes, upTo: 0 };
    const mb = await this.store.getMailboxById(this.mailbox.id);
    if (!mb || mb.highestModseq <= this.modseq) return { changes, upTo: 0 };
    const rows = await this.store.listMessageMeta(this.mailbox.id);
    const present = new Set(rows.map((m) => m.uid));
    const last = this.uids.last;
    const made: Change[] = [];
    for (const uid of this.uids.toArray())
      if (!present.has(uid)) made.push({ mailboxId: mb.id, modseq: mb.highestModseq, kind: 'expunge', uid });
    for (const m of rows)
      if (m.uid > last)
        made.push({ mailboxId: mb.id, modseq: m.modseq, kind: 'append', uid: m.uid, flags: m.flags });
      else if (m.modseq > this.modseq && this.uids.has(m.uid))
        made.push({ mailboxId: mb.id, modseq: m.modseq, kind: 'flags', uid: m.uid, flags: m.flags });
    return { changes: made.sort((a, b) => a.modseq - b.modseq), upTo: mb.highestModseq };
  }

  /** Tells the client how the context's result became `now` (RFC 5267 §4.3.2), and keeps `now`. */
  private tellContext(out: Output, ctx: SearchContext, now: number[]): void {
    const changes = contextChanges(ctx.result, now, ctx.sorted);
    ctx.result = now;
    const item = (name: string, pairs: ContextChanges['removed']) =>
      pairs.length
        ? ` ${name} (${pairs.map(([pos, ids]) => `${pos} ${this.idsOf(ctx, ids)}`).join(' ')})`
        : '';
    const data = item('REMOVEFROM', changes.removed) + item('ADDTO', changes.added);
    if (data) out.untagged(`ESEARCH (TAG ${str(ctx.tag)})${ctx.uid ? ' UID' : ''}${data}`);
  }

  /** UIDs as the context's command gave them: UIDs, or sequence numbers in the view as it is now. */
  private idsOf(ctx: SearchContext, uids: number[]): string {
    return formatUids(ctx.uid ? uids : uids.map((u) => this.uids.seqOf(u) ?? 0).filter((n) => n > 0));
  }
}
