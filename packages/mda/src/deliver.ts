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
import { decodeWords, type MessageStructure, parseHeaderBlock, withPrependedHeaders } from '@mailwerk/mime';
import { type Action, type Command, compile, run } from '@mailwerk/sieve';
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
  /** Lines for the log: what a Sieve script did that the admin should know (it failed, a folder was missing). */
  log?: (level: 'info' | 'warn', message: string, fields: Record<string, unknown>) => void;
}

/** Compiled Sieve scripts by their text, so an unchanged script is compiled once per process. */
const compiled = new Map<string, Command[]>();

/**
 * What the account's active Sieve script does with the message (packages/sieve), or null when it has
 * none. A script that does not compile or fails at run time is logged and treated as absent: the message
 * goes where it would have gone without one, never lost (RFC 5228 §2.10.6).
 */
async function sieveActions(input: DeliveryInput, account: Account, rcpt: string): Promise<Action[] | null> {
  const script = await input.store.getActiveSieveScript(account.id);
  if (!script) return null;
  try {
    let tree = compiled.get(script.content);
    if (!tree) {
      tree = compile(script.content);
      if (compiled.size >= 1000) compiled.clear();
      compiled.set(script.content, tree);
    }
    const root = input.structure.root;
    const fields = parseHeaderBlock(input.raw.toString('utf8', root.start, root.bodyStart));
    const header = (name: string) => {
      const key = name.toLowerCase();
      return fields.filter((f) => f.key === key).map((f) => decodeWords(f.value));
    };
    return run(tree, { header, size: input.raw.length }, { from: input.sender, to: rcpt });
  } catch (err) {
    input.log?.('warn', 'sieve script failed; the message is delivered as without it', {
      user: account.address,
      script: script.name,
      error: (err as Error).message,
    });
    return null;
  }
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

export type AccountOutcome = 'delivered' | 'duplicate' | 'over_quota' | { rejected: string };

/** A mailbox named by a Sieve fileinto: as written, created with :create (RFC 5490), else null. */
async function namedMailbox(
  store: MailStore,
  account: Account,
  name: string,
  create: boolean,
): Promise<Mailbox | null> {
  const found = await store.getMailbox(account.id, name.toUpperCase() === 'INBOX' ? 'INBOX' : name);
  if (found) return found;
  if (!create) return null;
  return store.createMailbox(account.id, name, { subscribed: true });
}

/**
 * Stores the message for one account: where its Sieve script says (keep, fileinto, with flags), else
 * in the folder targetMailbox picks. Over quota is a temporary failure (RFC 3463 4.2.2).
 */
export async function deliverToAccount(
  input: DeliveryInput,
  account: Account,
  tag: string | null,
  rcpt = account.address,
): Promise<AccountOutcome> {
  const { store, bus } = input;
  const actions = (await sieveActions(input, account, rcpt)) ?? [{ type: 'keep' as const }];
  const reject = actions.find((a) => a.type === 'reject');
  if (reject) return { rejected: reject.reason };
  const copies: Array<{ mailbox: Mailbox | null; flags: string[] }> = [];
  for (const a of actions) {
    if (a.type === 'keep') copies.push({ mailbox: null, flags: a.flags ?? [] });
    else if (a.type === 'fileinto') {
      const box = await namedMailbox(store, account, a.mailbox, a.create);
      if (!box)
        input.log?.('warn', 'sieve fileinto a folder that does not exist; the message is kept instead', {
          user: account.address,
          folder: a.mailbox,
        });
      copies.push({ mailbox: box, flags: a.flags ?? [] });
    } else if (a.type === 'redirect') {
      // Redirect needs the MTA's queue (with SRS), which the MDA does not write to yet: kept, and said so.
      input.log?.('warn', 'sieve redirect is not carried out yet; the message is kept instead', {
        user: account.address,
        to: a.address,
      });
      copies.push({ mailbox: null, flags: [] });
    }
  }
  if (copies.length === 0) {
    input.log?.('info', 'sieve discarded a message', { user: account.address });
    return 'delivered';
  }
  // The folder a keep goes to, looked up only when a copy needs it (a script that files everything does not).
  let fallback: Mailbox | null = null;
  const prefix = Buffer.from(`Return-Path: <${input.sender}>\r\nDelivered-To: ${account.address}\r\n`);
  const bytes = Buffer.concat([prefix, input.raw]);
  const done = new Set<string>();
  let outcome: AccountOutcome = 'delivered';
  for (const [i, copy] of copies.entries()) {
    if (!copy.mailbox && !fallback)
      fallback = await targetMailbox(store, account, tag, markedAsSpam(input.structure, input.raw));
    const mailbox = copy.mailbox ?? fallback!;
    // One copy per folder (keep and a fileinto of the same folder are one message).
    if (done.has(mailbox.id)) continue;
    done.add(mailbox.id);
    try {
      const m = await store.appendMessage({
        accountId: account.id,
        mailboxId: mailbox.id,
        blobId: contentId(bytes),
        data: bytes,
        size: bytes.length,
        structure: withPrependedHeaders(input.structure, prefix.length),
        ...(copy.flags.length ? { flags: copy.flags } : {}),
        // Each copy its own key, the same on a retry, so a retried delivery stores none twice.
        ...(input.deliveryKey
          ? { deliveryKey: i === 0 ? input.deliveryKey : `${input.deliveryKey}#${i}` }
          : {}),
      });
      await bus.publish({
        type: 'message.new',
        accountId: account.id,
        mailboxId: mailbox.id,
        uid: m.uid,
        modseq: m.modseq,
      });
    } catch (err) {
      if (isStoreError(err, 'exists') && input.deliveryKey) {
        outcome = 'duplicate';
        continue;
      }
      if (isStoreError(err, 'over_quota')) return 'over_quota';
      throw err;
    }
  }
  return outcome;
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
    const outcome = await deliverToAccount(input, account, tag, rcpt);
    if (typeof outcome === 'object')
      // Sieve reject at delivery time (RFC 5429 §2.1): the sender's server gets the refusal, no bounce.
      return {
        ok: false,
        error: reply(
          550,
          '5.7.1',
          `<${rcpt}> refused by the recipient: ${outcome.rejected.replace(/[\r\n]+/g, ' ').slice(0, 400)}`,
        ),
      };
    if (outcome === 'over_quota') overQuota++;
    else done.add(account.id);
  }
  if (overQuota > 0) return full();
  return { ok: true, text: `2.0.0 <${rcpt}> delivered` };
}
