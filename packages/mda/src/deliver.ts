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

import { createHash } from 'node:crypto';
import type { Bus } from '@mailwerk/bus';
import {
  bodyOffset,
  decodePartBody,
  decodeWords,
  type MessageStructure,
  type MimeNode,
  parseHeaderBlock,
  parseMessage,
  withPrependedHeaders,
} from '@mailwerk/mime';
import {
  type Action,
  type BodyTransform,
  type Command,
  compile,
  type HeaderEdits,
  type RunOptions,
  run,
  type SieveMessage,
  type Vacation,
} from '@mailwerk/sieve';
import { editHeader, markedAsSpam, reply, SIEVE_REFUSAL, type SmtpError, srsForward } from '@mailwerk/smtp';
import {
  type Account,
  type Expansion,
  isStoreError,
  type Mailbox,
  type MailStore,
  normalizeAddress,
} from '@mailwerk/store';
import { headerField, vacationReply } from './vacation.ts';

/** Mail a delivery generates (a Sieve redirect, a vacation reply), for the MTA's queue. */
export interface GeneratedMail {
  kind: 'redirect' | 'vacation';
  /** The envelope sender; '' for <>. */
  sender: string;
  recipient: string;
  data: Buffer;
  /** DKIM-sign for this domain (a reply we write); null: send as it is (a redirect keeps its signatures). */
  signFor: string | null;
  /** ARC-seal for this domain where sealing is configured (a redirect to another domain, RFC 8617). */
  sealFor?: string;
  /** Queued once per key until then (NewQueueEntry.once). */
  once?: { key: string; until: Date };
  /** For the log: whose delivery made it. */
  user: string;
}

/** Where generated mail goes: the MTA's queue (runtime/src/services/mda.ts). */
export interface Outbox {
  /** Queues it; false when its once key was used already (nothing queued). */
  send(mail: GeneratedMail): Promise<boolean>;
}

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
  /**
   * Where Sieve's redirects and vacation replies go. Without one (an MDA with no MTA of ours to hand
   * them to), a redirect keeps the message instead and a vacation sends nothing, each with a log line.
   */
  outbox?: Outbox;
  /** The name in the Message-ID of a vacation reply. */
  hostname?: string;
}

/** How long a redirect's once key is kept: longer than a message waits in any queue for its delivery. */
const REDIRECT_ONCE_MS = 14 * 86_400_000;

/** Compiled Sieve scripts by their text, so an unchanged script is compiled once per process. */
const compiled = new Map<string, Command[]>();
function compiledScript(text: string): Command[] {
  let tree = compiled.get(text);
  if (!tree) {
    tree = compile(text);
    if (compiled.size >= 1000) compiled.clear();
    compiled.set(text, tree);
  }
  return tree;
}

/**
 * What the account's active Sieve script does with the message (packages/sieve), or null when it has
 * none. A script that does not compile or fails at run time is logged and treated as absent: the message
 * goes where it would have gone without one, never lost (RFC 5228 §2.10.6).
 */
async function sieveActions(input: DeliveryInput, account: Account, rcpt: string): Promise<Action[] | null> {
  const script = await input.store.getActiveSieveScript(account.id);
  if (!script) return null;
  try {
    // The user's other scripts, for include :personal (RFC 6609), read only when the script includes.
    const others = /\binclude\b/i.test(script.content)
      ? new Map((await input.store.listSieveScripts(account.id)).map((s) => [s.name, s.content]))
      : new Map<string, string>();
    const text = [script.content, ...others.values()].join('\n');
    const boxes = /mailboxexists/i.test(text)
      ? new Set((await input.store.listMailboxes(account.id)).map((m) => m.name))
      : null;
    const fields = headerOf(input);
    const message: SieveMessage = {
      header: fields.header,
      size: input.raw.length,
      body: (transform) => sieveBody(input, transform),
      fields: fields.all,
    };
    const hostname = input.hostname ?? 'localhost';
    const options: RunOptions = {
      include: (name) => {
        const t = others.get(name);
        return t === undefined ? null : compiledScript(t);
      },
      // RFC 5183 §4: what this MDA can say about itself.
      environment: {
        domain: hostname.includes('.') ? hostname.slice(hostname.indexOf('.') + 1) : hostname,
        host: hostname,
        location: 'MDA',
        name: 'Mailwerk',
        phase: 'during',
      },
      spam: spamScore(fields.header('x-spam-status')[0]),
      ...(boxes
        ? { mailboxExists: (n: string) => boxes.has(n.toUpperCase() === 'INBOX' ? 'INBOX' : n) }
        : {}),
    };
    const tree = compiledScript(script.content);
    const envelope = { from: input.sender, to: rcpt };
    // duplicate (RFC 7352): the run is pure and the memory is in the store. A run learns which ids the
    // script asks about (answered "not seen"), the store remembers them, and the run is repeated with
    // the answers; an id asked only after another answer takes one more round (three at most).
    const known = new Map<string, boolean>();
    for (let round = 0; ; round++) {
      const asked: Array<[string, number]> = [];
      const actions = run(tree, message, envelope, {
        ...options,
        duplicate: (id, seconds) => {
          const seen = known.get(id);
          if (seen !== undefined) return seen;
          asked.push([id, seconds]);
          return false;
        },
      });
      if (asked.length === 0 || round === 2) return actions;
      for (const [id, seconds] of asked) known.set(id, await seenBefore(input, account, id, seconds));
    }
  } catch (err) {
    input.log?.('warn', 'sieve script failed; the message is delivered as without it', {
      user: account.address,
      script: script.name,
      error: (err as Error).message,
    });
    return null;
  }
}

/**
 * Whether the duplicate test's id was seen for the account within `seconds`, remembering it now. A
 * retry of the same delivery (the same delivery key) does not count as having seen it: the first attempt
 * left a mark of its own, so a delivery put off (over quota) is not taken for its own duplicate.
 */
async function seenBefore(
  input: DeliveryInput,
  account: Account,
  id: string,
  seconds: number,
): Promise<boolean> {
  const key = `duplicate:${account.id}:${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
  const until = new Date(Date.now() + seconds * 1000);
  const first = await input.store.remember(key, until);
  if (!input.deliveryKey) return !first;
  const mine = await input.store.remember(`${key}@${input.deliveryKey}`, until);
  return !first && mine;
}

/** The score and threshold in the X-Spam-Status field the MX writes (`Yes, score=7.20 required=15.00`). */
function spamScore(status: string | undefined): { score: number; required: number } | null {
  const m = status ? /score=(-?\d+(?:\.\d+)?)\s+required=(-?\d+(?:\.\d+)?)/.exec(status) : null;
  return m ? { score: Number(m[1]), required: Number(m[2]) } : null;
}

/** Most text the body test looks at per message, so a huge message costs a bounded match. */
const MAX_BODY_TEXT = 1024 * 1024;

/** The body as the body test sees it (RFC 5173 §5): raw, the text parts decoded, or the parts of some types. */
function sieveBody(input: DeliveryInput, transform: BodyTransform): string[] {
  const { raw, structure } = input;
  if (transform.kind === 'raw')
    return [
      raw.toString(
        'utf8',
        structure.root.bodyStart,
        Math.min(structure.root.end, structure.root.bodyStart + MAX_BODY_TEXT),
      ),
    ];
  const out: string[] = [];
  let total = 0;
  const stack: MimeNode[] = [structure.root];
  while (stack.length && total < MAX_BODY_TEXT) {
    const node = stack.pop()!;
    if (node.children) {
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
      continue;
    }
    if (node.message) {
      stack.push(node.message);
      continue;
    }
    const type = node.contentType.value.toLowerCase();
    const wanted =
      transform.kind === 'text'
        ? type.startsWith('text/')
        : transform.types.some((t) => {
            const want = t.toLowerCase();
            return want === '' || want === type || (!want.includes('/') && type.startsWith(`${want}/`));
          });
    if (!wanted) continue;
    let text = type.startsWith('text/')
      ? decodePartBody(raw, node)
      : raw.toString('latin1', node.bodyStart, node.end);
    // :text of HTML: the text without its tags (RFC 5173 §5.2 asks for the text a reader sees).
    if (transform.kind === 'text' && type === 'text/html') text = text.replace(/<[^>]*>/g, ' ');
    text = text.slice(0, MAX_BODY_TEXT - total);
    total += text.length;
    out.push(text);
  }
  return out;
}

interface HeaderView {
  header: (name: string) => string[];
  names: string[];
  all: () => Array<{ name: string; value: string }>;
}
/** Parsed once per message, however many accounts and steps (Sieve, redirect, vacation) read it. */
const headerViews = new WeakMap<Buffer, HeaderView>();

/** The message's header fields: decoded values by name, and the names present. */
function headerOf(input: DeliveryInput): HeaderView {
  const known = headerViews.get(input.raw);
  if (known) return known;
  const root = input.structure.root;
  const fields = parseHeaderBlock(input.raw.toString('utf8', root.start, root.bodyStart));
  const view: HeaderView = {
    header: (name: string) => {
      const key = name.toLowerCase();
      return fields.filter((f) => f.key === key).map((f) => decodeWords(f.value));
    },
    names: fields.map((f) => f.key),
    all: () => fields.map((f) => ({ name: f.key, value: decodeWords(f.value) })),
  };
  headerViews.set(input.raw, view);
  return view;
}

/**
 * The message as a script's editheader actions left it (RFC 5293): original fields deleted by their
 * occurrence, new ones written (RFC 2047-encoded where not ASCII) on top and at the end of the header.
 * What is not touched keeps its bytes, so the signatures over it stay valid.
 */
function withHeaderEdits(input: DeliveryInput, e: HeaderEdits): DeliveryInput {
  const gone = new Set(e.deleted.map((d) => `${d.name}\0${d.occurrence}`));
  const seen = new Map<string, number>();
  let raw = gone.size
    ? editHeader(input.raw, (name, text) => {
        const n = (seen.get(name) ?? 0) + 1;
        seen.set(name, n);
        return gone.has(`${name}\0${n}`) ? null : text;
      })
    : input.raw;
  const lines = (fs: Array<{ name: string; value: string }>) =>
    Buffer.from(fs.map((f) => headerField(f.name, f.value)).join(''));
  if (e.bottom.length) {
    const end = bodyOffset(raw);
    // Before the empty line that ends the header (bodyStart is after it, when there is one).
    const at = raw.subarray(0, end).toString('latin1').endsWith('\r\n\r\n') ? end - 2 : end;
    raw = Buffer.concat([raw.subarray(0, at), lines(e.bottom), raw.subarray(at)]);
  }
  if (e.top.length) raw = Buffer.concat([lines(e.top), raw]);
  return { ...input, raw, structure: parseMessage(raw) };
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
  // What the copies and redirects carry: the message as editheader left it (checks still read the original).
  const edits = actions.find((a) => a.type === 'editheader');
  const message = edits ? withHeaderEdits(input, edits) : input;
  const copies: Array<{ mailbox: Mailbox | null; flags: string[] }> = [];
  const redirects: string[] = [];
  let vacation: Vacation | null = null;
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
      const why = redirectProblem(input, account, a.address);
      if (why) {
        input.log?.('warn', `sieve redirect not carried out (${why}); the message is kept instead`, {
          user: account.address,
          to: a.address,
        });
        copies.push({ mailbox: null, flags: [] });
      } else redirects.push(a.address);
    } else if (a.type === 'vacation') vacation = a;
  }
  if (copies.length === 0 && redirects.length === 0) {
    input.log?.('info', 'sieve discarded a message', { user: account.address });
  }
  // The folder a keep goes to, looked up only when a copy needs it (a script that files everything does not).
  let fallback: Mailbox | null = null;
  const prefix = Buffer.from(`Return-Path: <${input.sender}>\r\nDelivered-To: ${account.address}\r\n`);
  const bytes = Buffer.concat([prefix, message.raw]);
  const done = new Set<string>();
  let outcome: AccountOutcome = 'delivered';
  for (const [i, copy] of copies.entries()) {
    if (!copy.mailbox && !fallback)
      fallback = await targetMailbox(store, account, tag, markedAsSpam(input.raw));
    const mailbox = copy.mailbox ?? fallback!;
    // One copy per folder (keep and a fileinto of the same folder are one message).
    if (done.has(mailbox.id)) continue;
    done.add(mailbox.id);
    try {
      const m = await store.appendMessage({
        accountId: account.id,
        mailboxId: mailbox.id,
        // The store hashes the bytes for their blob id (once: a given id would be checked, a second hash).
        data: bytes,
        size: bytes.length,
        structure: withPrependedHeaders(message.structure, prefix.length),
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
  // After the copies are stored: a delivery put off (over quota) sends nothing yet.
  for (const to of redirects) await redirect(input, message.raw, account, to);
  if (vacation) await answer(input, account, rcpt, vacation);
  return outcome;
}

/** Why a Sieve redirect is not carried out (so the message is kept instead), or null. */
function redirectProblem(input: DeliveryInput, account: Account, to: string): string | null {
  if (!input.outbox) return 'no MTA to hand it to';
  try {
    normalizeAddress(to);
  } catch {
    return 'not an address';
  }
  if (markedAsSpam(input.raw)) return 'the message is marked as spam';
  // Our own trace of a redirect by this account: the message has come round (RFC 5228 §4.2 loops).
  const self = account.address.toLowerCase();
  if (
    headerOf(input)
      .header('x-sieve-redirected-by')
      .some((v) => v.trim().toLowerCase() === self)
  )
    return 'a loop: it was redirected by this account before';
  return null;
}

/**
 * A Sieve redirect (RFC 5228 §4.2): the message as it came, with one trace field on top (which leaves
 * its DKIM signatures intact), to the MTA's queue. To another domain, the envelope sender is rewritten
 * by SRS at the account's domain, so SPF passes at the receiver and a bounce comes back here.
 */
async function redirect(input: DeliveryInput, raw: Buffer, account: Account, to: string): Promise<void> {
  const { store } = input;
  const target = normalizeAddress(to);
  const ours = async (address: string) =>
    address.includes('@') && (await store.getDomain(address.slice(address.lastIndexOf('@') + 1))) !== null;
  const domain = account.address.slice(account.address.lastIndexOf('@') + 1);
  const inside = await ours(target);
  const sender =
    inside || (await ours(input.sender))
      ? input.sender
      : srsForward(input.sender, domain, { secret: await store.secret('srs') });
  const data = Buffer.concat([Buffer.from(`X-Sieve-Redirected-By: ${account.address}\r\n`), raw]);
  const queued = await input.outbox!.send({
    kind: 'redirect',
    sender,
    recipient: target,
    data,
    signFor: null,
    ...(inside ? {} : { sealFor: domain }),
    ...(input.deliveryKey
      ? {
          once: {
            key: `redirect:${input.deliveryKey}:${account.id}:${target}`,
            until: new Date(Date.now() + REDIRECT_ONCE_MS),
          },
        }
      : {}),
    user: account.address,
  });
  input.log?.('info', queued ? 'sieve redirected a message' : 'sieve redirect already queued', {
    user: account.address,
    to: target,
    from: sender,
  });
}

/** A vacation reply (RFC 5230), at most once per sender and handle in its period. */
async function answer(input: DeliveryInput, account: Account, rcpt: string, action: Vacation): Promise<void> {
  const fields = headerOf(input);
  const decision = vacationReply(action, {
    sender: input.sender,
    recipient: rcpt,
    account: account.address,
    header: fields.header,
    fieldNames: fields.names,
    spam: markedAsSpam(input.raw),
    hostname: input.hostname ?? 'localhost',
  });
  if ('skip' in decision) {
    input.log?.('info', 'sieve vacation: no reply', {
      user: account.address,
      to: input.sender,
      why: decision.skip,
    });
    return;
  }
  if (!input.outbox) {
    input.log?.('warn', 'sieve vacation: no MTA to hand the reply to', { user: account.address });
    return;
  }
  const handle = createHash('sha256').update(action.handle).digest('hex').slice(0, 16);
  const sent = await input.outbox.send({
    kind: 'vacation',
    // §5.1: the null envelope sender, so the reply cannot bounce back into a loop.
    sender: '',
    recipient: decision.to,
    data: decision.message,
    signFor: decision.from.slice(decision.from.lastIndexOf('@') + 1).toLowerCase(),
    once: {
      key: `vacation:${account.id}:${handle}:${decision.to.toLowerCase()}`,
      until: new Date(Date.now() + action.seconds * 1000),
    },
    user: account.address,
  });
  input.log?.('info', sent ? 'sieve vacation: replied' : 'sieve vacation: replied to this sender before', {
    user: account.address,
    to: decision.to,
  });
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
          `<${rcpt}> ${SIEVE_REFUSAL}: ${outcome.rejected.replace(/[\r\n]+/g, ' ').slice(0, 400)}`,
        ),
      };
    if (outcome === 'over_quota') overQuota++;
    else done.add(account.id);
  }
  if (overQuota > 0) return full();
  return { ok: true, text: `2.0.0 <${rcpt}> delivered` };
}
