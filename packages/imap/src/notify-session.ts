/**
 * A session's NOTIFY in force (RFC 5465): what it owes the client for
 * mailboxes other than the selected one, gathered from the account's events
 * and written when the session is free (between commands, in IDLE) or
 * before a command's tagged answer.
 *
 * - Message events (§5.1–5.3) of another mailbox: one STATUS (MESSAGES
 *   UIDNEXT UIDVALIDITY, and HIGHESTMODSEQ with FlagChange or CONDSTORE)
 *   per mailbox however many events came, with the values of when it is
 *   written.
 * - MailboxName and SubscriptionChange (§5.4, §5.5): the account's mailboxes
 *   are read again and compared with what was known: a new name is a LIST,
 *   a gone one LIST (\NonExistent), a renamed one LIST with OLDNAME, a
 *   subscription turned on or off LIST with or without \Subscribed.
 * Bounded: owed STATUS are kept per mailbox (at most the account's
 * mailboxes), the names read once per flush.
 */
import type { MailEvent } from '@mailwerk/bus';
import type { Mailbox } from '@mailwerk/store';
import { writeStatus } from './commands/status.ts';
import type { MailboxFacts, NotifyEvent, NotifySpec } from './notify.ts';
import { mailboxName } from './protocol/encode.ts';
import type { Session } from './session.ts';

const KIND: Record<string, NotifyEvent> = {
  'message.new': 'MessageNew',
  'message.expunge': 'MessageExpunge',
  'message.flags': 'FlagChange',
};

export class NotifyState {
  readonly spec: NotifySpec;
  /** The account's mailboxes as the client was last told of them, by id. */
  private known = new Map<string, MailboxFacts>();
  /** Mailboxes with message events not yet told, and which. */
  private readonly owed = new Map<string, Set<NotifyEvent>>();
  private namesChanged = false;

  constructor(spec: NotifySpec) {
    this.spec = spec;
  }

  /** Reads the account's mailboxes: what later changes are compared with. */
  async start(s: Session, accountId: string): Promise<Mailbox[]> {
    const boxes = await s.ctx.store.listMailboxes(accountId);
    this.known = facts(boxes);
    return boxes;
  }

  /** Notes an event of the account; true when something may be owed (the session then flushes). */
  notice(event: MailEvent, selectedId: string | null): boolean {
    if (event.type === 'mailbox.change') {
      this.namesChanged = true;
      return true;
    }
    if (event.mailboxId === selectedId) return false;
    const kind = KIND[event.type];
    if (!kind) return false;
    const kinds = this.owed.get(event.mailboxId) ?? new Set<NotifyEvent>();
    kinds.add(kind);
    this.owed.set(event.mailboxId, kinds);
    return true;
  }

  get pending(): boolean {
    return this.namesChanged || this.owed.size > 0;
  }

  /** Writes what is owed. */
  async flush(s: Session, accountId: string, selectedId: string | null): Promise<void> {
    if (this.namesChanged) {
      this.namesChanged = false;
      const before = this.known;
      const boxes = await s.ctx.store.listMailboxes(accountId);
      this.known = facts(boxes);
      for (const [id, now] of this.known) {
        const was = before.get(id);
        const isSelected = id === selectedId;
        if (!was) {
          if (this.spec.wants(now, 'MailboxName', isSelected)) this.list(s, now, []);
        } else if (was.name !== now.name) {
          if (
            this.spec.wants(now, 'MailboxName', isSelected) ||
            this.spec.wants(was, 'MailboxName', isSelected)
          )
            this.list(s, now, [], was.name);
        } else if (
          was.subscribed !== now.subscribed &&
          this.spec.wants(now, 'SubscriptionChange', isSelected)
        )
          this.list(s, now, []);
      }
      for (const [id, was] of before)
        if (!this.known.has(id) && this.spec.wants(was, 'MailboxName', false))
          this.list(s, was, ['\\NonExistent']);
    }
    for (const [id, kinds] of [...this.owed]) {
      this.owed.delete(id);
      const box = this.known.get(id);
      if (!box || id === selectedId || ![...kinds].some((k) => this.spec.wants(box, k, false))) continue;
      const mb = await s.ctx.store.getMailboxById(id);
      if (mb) await this.status(s, mb);
    }
  }

  /**
   * STATUS of a mailbox as §5.2 and §5.3 ask (and §3.1's STATUS indicator): MESSAGES, UIDNEXT and
   * UIDVALIDITY; HIGHESTMODSEQ too where flag changes are asked for (§5.1) or CONDSTORE is on.
   */
  async status(s: Session, mb: Mailbox): Promise<void> {
    const items = ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY'];
    if (s.condstore || this.spec.wants(mb, 'FlagChange', false)) items.push('HIGHESTMODSEQ');
    await writeStatus(s, mb, items);
  }

  /** `* LIST (…) "/" name`, with OLDNAME after a rename (§5.4, RFC 5258 extended data). */
  private list(s: Session, box: MailboxFacts, attrs: string[], oldName?: string): void {
    const all = box.subscribed && !attrs.includes('\\NonExistent') ? [...attrs, '\\Subscribed'] : attrs;
    if (oldName === undefined)
      s.write(`* LIST (${all.join(' ')}) "/" `, mailboxName(box.name, s.utf8), '\r\n');
    else
      s.write(
        `* LIST (${all.join(' ')}) "/" `,
        mailboxName(box.name, s.utf8),
        ' ("OLDNAME" (',
        mailboxName(oldName, s.utf8),
        '))\r\n',
      );
  }
}

const facts = (boxes: Mailbox[]) =>
  new Map(boxes.map((b) => [b.id, { name: b.name, subscribed: b.subscribed } satisfies MailboxFacts]));
