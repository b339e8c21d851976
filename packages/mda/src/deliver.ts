/**
 * Delivery of one message to the recipients of one LMTP transaction: one
 * result per recipient (RFC 2033 §4.2), never all-or-nothing.
 *
 * Invariants:
 * - The message is parsed once; each recipient's copy only gets its own
 *   Return-Path:/Delivered-To: in front (structure offsets shifted, not re-parsed).
 * - A change event is published only after the message row has committed.
 * - With a delivery key (the MTA's queue id), a retried delivery that already
 *   reached an account is reported as delivered, not stored twice.
 */
import type { Bus } from '@mailwerk/bus';
import { type MessageStructure, withPrependedHeaders } from '@mailwerk/mime';
import { reply, type SmtpError } from '@mailwerk/smtp';
import {
  type Account,
  contentId,
  type Expansion,
  isStoreError,
  type Mailbox,
  type MailStore,
} from '@mailwerk/store';

export interface DeliveryInput {
  store: MailStore;
  bus: Bus;
  /** Envelope sender; '' for `<>`. */
  sender: string;
  raw: Buffer;
  structure: MessageStructure;
  /** Idempotency key for this message (see NewMessage.deliveryKey), or null. */
  deliveryKey: string | null;
}

/** `X-Spam: Yes`, as the MX writes it (after removing any such field that came from outside). */
function markedAsSpam(structure: MessageStructure, raw: Buffer): boolean {
  const root = structure.root;
  return /(^|\n)X-Spam:[ \t]*Yes[ \t]*\r?\n/i.test(raw.toString('latin1', root.start, root.bodyStart));
}

/**
 * Picks the folder: the Junk folder (special-use \Junk) for mail the MX marked
 * as spam; else the `+tag` folder when the account has one (case-insensitively);
 * else INBOX.
 */
async function targetMailbox(
  store: MailStore,
  account: Account,
  tag: string | null,
  spam: boolean,
): Promise<Mailbox> {
  if (spam) {
    const boxes = await store.listMailboxes(account.id);
    const junk =
      boxes.find((m) => m.specialUse === '\\Junk') ?? boxes.find((m) => m.name.toLowerCase() === 'junk');
    if (junk) return junk;
    return store.createMailbox(account.id, 'Junk', { specialUse: '\\Junk', subscribed: true });
  }
  if (tag) {
    const exact = await store.getMailbox(account.id, tag);
    if (exact) return exact;
    const lower = tag.toLowerCase();
    const match = (await store.listMailboxes(account.id)).find((m) => m.name.toLowerCase() === lower);
    if (match) return match;
  }
  const inbox = await store.getMailbox(account.id, 'INBOX');
  if (inbox) return inbox;
  // An account without INBOX (removed by hand) gets it back rather than losing mail.
  return store.createMailbox(account.id, 'INBOX', { subscribed: true });
}

export type AccountOutcome = 'delivered' | 'duplicate' | 'over_quota';

/** Stores the message for one account. Over quota is a temporary failure (RFC 3463 4.2.2). */
export async function deliverToAccount(
  input: DeliveryInput,
  account: Account,
  tag: string | null,
): Promise<AccountOutcome> {
  const { store, bus } = input;
  const mailbox = await targetMailbox(store, account, tag, markedAsSpam(input.structure, input.raw));
  const prefix = Buffer.from(`Return-Path: <${input.sender}>\r\nDelivered-To: ${account.address}\r\n`);
  const bytes = Buffer.concat([prefix, input.raw]);
  try {
    const m = await store.appendMessage({
      accountId: account.id,
      mailboxId: mailbox.id,
      blobId: contentId(bytes),
      data: bytes,
      size: bytes.length,
      structure: withPrependedHeaders(input.structure, prefix.length),
      ...(input.deliveryKey ? { deliveryKey: input.deliveryKey } : {}),
    });
    await bus.publish({
      type: 'message.new',
      accountId: account.id,
      mailboxId: mailbox.id,
      uid: m.uid,
      modseq: m.modseq,
    });
    return 'delivered';
  } catch (err) {
    if (isStoreError(err, 'exists') && input.deliveryKey) return 'duplicate';
    if (isStoreError(err, 'over_quota')) return 'over_quota';
    throw err;
  }
}

export type RecipientResult = { ok: true; text: string } | { ok: false; error: SmtpError };

/**
 * Delivers to every account one RCPT expanded to. `done` holds the accounts
 * already served in this transaction, so an account reached twice (directly
 * and through an alias) gets one copy.
 *
 * The MDA never queues mail itself, so it can stand behind any MTA: our MTA
 * expands aliases before LMTP and sends account addresses only; an alias
 * that forwards outside is refused at RCPT (see lmtp.ts). An alias to several
 * accounts is all or nothing: when a member is over quota, nobody gets the
 * message now and the whole RCPT is 452 (RFC 3463 4.2.2), so the MTA in front
 * retries it instead of a member losing it.
 */
export async function deliverToRecipient(
  input: DeliveryInput,
  rcpt: string,
  expansion: Expansion,
  done: Set<string>,
): Promise<RecipientResult> {
  const full = () => ({
    ok: false as const,
    error: reply(452, '4.2.2', `<${rcpt}> mailbox full, try again later`),
  });
  const todo = expansion.accounts.filter(({ account }) => !done.has(account.id));
  if (
    todo.length > 1 &&
    todo.some(({ account: a }) => a.quotaBytes !== null && a.usedBytes + input.raw.length > a.quotaBytes)
  )
    return full();
  let overQuota = 0;
  for (const { account, tag } of todo) {
    if ((await deliverToAccount(input, account, tag)) === 'over_quota') overQuota++;
    else done.add(account.id);
  }
  if (overQuota > 0) return full();
  return { ok: true, text: `2.0.0 <${rcpt}> delivered` };
}
