/**
 * The domain model and the MailStore contract.
 *
 * Every operation is designed so that a document store can implement it with
 * single-document atomic updates and unique indexes, without multi-document
 * transactions:
 * - UIDs and MODSEQs come from an atomic increment on the mailbox document;
 *   (mailboxId, uid) is a unique index, so two deliveries can never share a UID.
 * - Quota is reserved with one conditional increment on the account document
 *   (`usedBytes + size <= quotaBytes`) before the message is written, and given
 *   back if the write fails.
 * - A queue entry is leased by one conditional update on its own document.
 * Adapters with transactions (SQLite) may do more in one step; the
 * conformance suite checks only the observable contract.
 */
import { hash } from 'node:crypto';
import type { MessageStructure, SortFields } from '@mailwerk/mime';

export interface Domain {
  /** Canonical A-label, lower case. */
  name: string;
  createdAt: Date;
}

export interface Account {
  id: string;
  /** Primary address, canonical (see address.ts). */
  address: string;
  domain: string;
  displayName: string;
  /** PHC or crypt(3) string; see @mailwerk/auth. */
  passwordHash: string;
  /** null: no limit. */
  quotaBytes: number | null;
  usedBytes: number;
  disabled: boolean;
  createdAt: Date;
}

export interface NewAccount {
  address: string;
  passwordHash: string;
  displayName?: string;
  quotaBytes?: number | null;
  /** Mailboxes created with the account, in one step. */
  mailboxes?: Array<{ name: string; specialUse?: SpecialUse | null }>;
}

export interface AccountPatch {
  passwordHash?: string;
  displayName?: string;
  quotaBytes?: number | null;
  disabled?: boolean;
}

/** An alias: `local@domain`, or `@domain` for the domain's catch-all. */
export interface Alias {
  address: string;
  domain: string;
  /** Local account addresses and/or external addresses, canonical. */
  targets: string[];
  createdAt: Date;
}

/** RFC 6154 special-use attributes. */
export type SpecialUse = '\\Sent' | '\\Drafts' | '\\Junk' | '\\Trash' | '\\Archive' | '\\All' | '\\Flagged';

export const SPECIAL_USES: readonly SpecialUse[] = [
  '\\Sent',
  '\\Drafts',
  '\\Junk',
  '\\Trash',
  '\\Archive',
  '\\All',
  '\\Flagged',
];

export const DEFAULT_MAILBOXES: ReadonlyArray<{ name: string; specialUse: SpecialUse | null }> = [
  { name: 'INBOX', specialUse: null },
  { name: 'Sent', specialUse: '\\Sent' },
  { name: 'Drafts', specialUse: '\\Drafts' },
  { name: 'Junk', specialUse: '\\Junk' },
  { name: 'Trash', specialUse: '\\Trash' },
  { name: 'Archive', specialUse: '\\Archive' },
];

export interface Mailbox {
  id: string;
  accountId: string;
  /** Unicode, "/"-separated, INBOX in upper case (see mailbox-name.ts). */
  name: string;
  specialUse: SpecialUse | null;
  subscribed: boolean;
  uidValidity: number;
  uidNext: number;
  highestModseq: number;
  createdAt: Date;
}

export interface MailboxStatus {
  messages: number;
  unseen: number;
  /** Messages no session has been shown yet: IMAP's \Recent (RFC 3501 §2.3.2). */
  recent: number;
  /** Total of the message sizes, in bytes. */
  size: number;
  uidNext: number;
  uidValidity: number;
  highestModseq: number;
}

/** What IMAP's SELECT needs of a mailbox, read at one moment. */
export interface MailboxView {
  mailbox: Mailbox;
  /** The messages' UIDs, ascending. */
  uids: number[];
  /** Messages with a UID above this had not been shown to any session before this view (\Recent). */
  recentAbove: number;
  /** The lowest UID of a message without \Seen; null when every message is seen. */
  firstUnseen: number | null;
  /** Every keyword (flag without a backslash) set on a message of the mailbox. */
  keywords: string[];
}

/** A message without its MIME structure: what FETCH FLAGS, SEARCH by flags and EXPUNGE need. */
export type MessageMeta = Omit<Message, 'structure'>;

/**
 * What IMAP SORT and THREAD need of a message (its structure's `sort`), read without the rest of the
 * structure; null when the structure was stored before it kept them, or is damaged.
 */
export interface MessageSortFields {
  uid: number;
  sort: SortFields | null;
}

export interface Message {
  id: string;
  accountId: string;
  mailboxId: string;
  uid: number;
  modseq: number;
  /** System flags (`\Seen` …) and keywords, each once, in the order set. */
  flags: string[];
  internalDate: Date;
  /**
   * When it was stored in this mailbox: delivered, appended, copied or moved here (IMAP SAVEDATE,
   * RFC 8514). Absent or null for messages stored before the store kept it.
   */
  savedAt?: Date | null;
  size: number;
  /** Key of the byte-exact message in the blob store. */
  blobId: string;
  structure: MessageStructure;
}

export interface NewMessage {
  accountId: string;
  mailboxId: string;
  /**
   * `contentId(data)`; the blob must be in `blobs` already unless `data` is given. With `data` it may be
   * left out: the adapter hashes the bytes once (a given one is checked against them, a second hash).
   */
  blobId?: string;
  /** The bytes, when they are not stored yet: the adapter stores them with the message in one step. */
  data?: Buffer;
  size: number;
  structure: MessageStructure;
  flags?: string[];
  internalDate?: Date;
  /** Refuse with `over_quota` when the account has no room (default true). */
  enforceQuota?: boolean;
  /**
   * Makes delivery idempotent: a second append with the same key for the same
   * account is refused with `exists` and writes nothing (a unique index), so a
   * queue entry retried after a crash between the LMTP reply and the queue
   * update is not delivered twice. Copies do not inherit the key.
   */
  deliveryKey?: string;
}

export type FlagOperation = 'add' | 'remove' | 'set';

export interface FlagUpdate {
  op: FlagOperation;
  flags: string[];
  /** CONDSTORE (RFC 7162 §3.1.3): skip messages whose modseq is above this. */
  unchangedSince?: number;
}

export interface FlagUpdateResult {
  /** Messages whose flags changed, with their new modseq. */
  updated: Message[];
  /** UIDs refused because they changed after `unchangedSince`. */
  modified: number[];
}

export interface CopyResult {
  uidValidity: number;
  /** Pairs of [source UID, destination UID], in source order. */
  uids: Array<[number, number]>;
}

export type ChangeKind = 'append' | 'flags' | 'expunge';

/** One entry of a mailbox's change journal; read with `changesSince` for IDLE and CONDSTORE. */
export interface Change {
  mailboxId: string;
  modseq: number;
  kind: ChangeKind;
  uid: number;
  /** The flags after the change, for `append` and `flags`. */
  flags?: string[];
}

/**
 * Whether `changes`, read with `changesSince(mailbox, since)`, start right after `since`. Every change
 * takes the mailbox's next MODSEQ and is written to the journal, so when they do not (or none came while
 * the mailbox's MODSEQ moved past `since`), the journal was pruned past `since` and cannot say what
 * changed: the reader reads the mailbox's rows instead.
 */
export function journalFollows(changes: readonly Change[], since: number): boolean {
  return changes.length > 0 && changes[0]!.modseq <= since + 1;
}

export type RecipientState = 'pending' | 'delivered' | 'failed';

/** An SMTP or LMTP reply (RFC 5321 §4.2, RFC 3463), as the next hop gave it or as we made it (see reply.ts). */
export interface DeliveryReply {
  code: number;
  /** Enhanced status code, e.g. `5.1.1`. */
  enhanced: string;
  text: string;
}

export interface QueueRecipient {
  address: string;
  state: RecipientState;
  attempts: number;
  /** The last attempt's reply, e.g. 550 5.1.1 `unknown user`. */
  lastReply?: DeliveryReply;
  lastAttemptAt?: Date;
  /** DSN parameters (RFC 3461): ORCPT and NOTIFY. */
  orcpt?: string;
  notify?: string[];
}

export interface QueueEntry {
  id: string;
  /** Envelope sender; '' for the null sender `<>`. */
  sender: string;
  recipients: QueueRecipient[];
  blobId: string;
  size: number;
  createdAt: Date;
  nextAttemptAt: Date;
  attempts: number;
  held: boolean;
  leaseOwner: string | null;
  leaseUntil: Date | null;
  /** Free-form data the MTA needs later (DSN ENVID/RET, auth user, client …). */
  meta: Record<string, unknown>;
  /**
   * Why the stored entry could not be read (set aside: never leased, shown by
   * `mailwerk queue list`, removable); absent for a healthy entry.
   */
  quarantined?: string;
}

export interface NewQueueEntry {
  sender: string;
  recipients: Array<Pick<QueueRecipient, 'address'> & Partial<Pick<QueueRecipient, 'orcpt' | 'notify'>>>;
  /** `contentId(data)`; the blob must be in `blobs` already unless `data` is given. */
  blobId: string;
  /** The bytes, when they are not stored yet: the adapter stores them with the entry in one step. */
  data?: Buffer;
  size: number;
  nextAttemptAt?: Date;
  meta?: Record<string, unknown>;
  /**
   * Queue it only if `key` is not remembered (see `MailStore.remember`), and remember it until `until`
   * in the same step: mail generated for a delivery (a Sieve redirect, a vacation reply) goes out once
   * however often the delivery is retried. A remembered key is refused with `exists`, nothing queued.
   */
  once?: { key: string; until: Date };
  /**
   * Queued already leased to `owner` until `until`, as leaseQueue would lease it: the MX hands a fresh
   * entry to its own queue runner without the runner's lease query (a write a message).
   */
  lease?: { owner: string; until: Date };
  /**
   * The entry's id, made beforehand by newQueueId (else the adapter makes one): the MX queues a
   * message its delivery before the reply did not finish under the id that delivery used, so that
   * the delivery key (deliveryEnvid) keeps a recipient who had it from a second copy.
   */
  id?: string;
}

export interface LeaseRequest {
  owner: string;
  /** How long the lease lasts. */
  leaseMs: number;
  limit: number;
  now?: Date;
}

export interface RecipientResult {
  address: string;
  state: RecipientState;
  reply?: DeliveryReply;
}

export interface AttemptResult {
  results: RecipientResult[];
  /** When the remaining pending recipients are tried next. */
  nextAttemptAt: Date;
  /** Keys to set in the entry's `meta` in the same step (e.g. that a delay notice went out). */
  meta?: Record<string, unknown>;
}

/** What a remote account has had fetched: per IMAP folder its UIDVALIDITY and last UID; for POP3 the UIDLs taken. */
export interface FetchedState {
  imap?: Record<string, { uidValidity: number; uid: number }>;
  pop3?: string[];
}

/** A mailbox at another server that the MRA fetches into a user's mailboxes (`mailwerk fetch`). */
export interface RemoteAccount {
  id: string;
  accountId: string;
  protocol: 'imap' | 'pop3';
  host: string;
  port: number;
  /** TLS from the start, STARTTLS (required), or none (loopback and tests). */
  tls: 'tls' | 'starttls' | 'none';
  /** Accept a certificate that does not verify. */
  insecure: boolean;
  user: string;
  /** The password, encrypted by the caller with a key the store does not hold. */
  secret: string;
  /** IMAP folders to fetch (INBOX by default); POP3 has only its one. */
  folders: string[];
  /** Leave the messages on the server (else they are deleted there once stored here). */
  keep: boolean;
  everySeconds: number;
  /** The folder here (INBOX, through the user's Sieve script, when null). */
  into: string | null;
  fetched: FetchedState;
  lastFetchAt: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  /** Failures in a row (the back-off grows with them). */
  errors: number;
  /** Stopped after the remote server refused the password, until the account is changed or run by hand. */
  stopped: boolean;
  createdAt: Date;
}

/** What a remote account starts with: nothing fetched, no error. */
export const remoteAccountStart = (): Pick<
  RemoteAccount,
  'fetched' | 'lastFetchAt' | 'lastError' | 'lastErrorAt' | 'errors' | 'stopped'
> => ({ fetched: {}, lastFetchAt: null, lastError: null, lastErrorAt: null, errors: 0, stopped: false });

export type NewRemoteAccount = Pick<
  RemoteAccount,
  | 'accountId'
  | 'protocol'
  | 'host'
  | 'port'
  | 'tls'
  | 'insecure'
  | 'user'
  | 'secret'
  | 'folders'
  | 'keep'
  | 'everySeconds'
  | 'into'
>;

export type RemoteAccountUpdate = Partial<
  Pick<
    RemoteAccount,
    'fetched' | 'lastFetchAt' | 'lastError' | 'lastErrorAt' | 'errors' | 'stopped' | 'secret'
  >
>;

export interface SieveScript {
  accountId: string;
  name: string;
  content: string;
  active: boolean;
  updatedAt: Date;
}

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

/**
 * A DKIM signing key of a local domain (RFC 6376, RFC 8463). One key per
 * (domain, algorithm) is `active` and signs; after a rotation the previous
 * ones stay `published` (still in DNS, so mail signed with them in transit
 * still verifies) until the admin removes them.
 */
export interface DkimKey {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  /** PKCS#8 PEM. */
  privateKey: string;
  /** What goes into the DNS record's p= tag (base64). */
  publicKey: string;
  state: 'active' | 'published';
  createdAt: Date;
}

/** The id of a blob: the SHA-256 of its bytes, in hex (one call: crypto.hash skips the Hash object's setup). */
export const contentId = (data: Buffer): string => hash('sha256', data, 'hex');

/** Byte-exact message bodies. Ids are content hashes, so a message delivered to many recipients is stored once. */
export interface BlobStore {
  /** Stores the bytes durably (synced) and returns their id. */
  put(data: Buffer): Promise<string>;
  get(id: string): Promise<Buffer>;
  has(id: string): Promise<boolean>;
  delete(id: string): Promise<void>;
}

/** A named piece of TLS material (see `MailStore.putTlsItem`). */
export interface TlsItem {
  name: string;
  /** PEM certificate chain, or another public text (an ACME challenge's answer); may be empty. */
  cert: string;
  /** PEM private key; may be empty. */
  key: string;
  /** When the certificate expires; null for what does not. */
  notAfter: Date | null;
  updatedAt: Date;
}

export interface MailStore {
  readonly blobs: BlobStore;
  close(): Promise<void>;

  addDomain(name: string): Promise<Domain>;
  getDomain(name: string): Promise<Domain | null>;
  listDomains(): Promise<Domain[]>;
  /** Refused with `conflict` while the domain has accounts or aliases, unless `force`, which removes them too. */
  removeDomain(name: string, options?: { force?: boolean }): Promise<void>;

  /** Creates the account and its `mailboxes`. Refused with `exists` when the address is an account or alias. */
  createAccount(input: NewAccount): Promise<Account>;
  getAccount(id: string): Promise<Account | null>;
  getAccountByAddress(address: string): Promise<Account | null>;
  listAccounts(filter?: { domain?: string }): Promise<Account[]>;
  updateAccount(id: string, patch: AccountPatch): Promise<Account>;
  /** Removes the account with its mailboxes, messages and Sieve scripts. */
  removeAccount(id: string): Promise<void>;

  /** Refused with `exists` when the address is an account or an alias already. */
  addAlias(input: { address: string; targets: string[] }): Promise<Alias>;
  getAlias(address: string): Promise<Alias | null>;
  listAliases(filter?: { domain?: string }): Promise<Alias[]>;
  removeAlias(address: string): Promise<void>;

  /** Creates a mailbox; missing parents are created too (RFC 3501 §6.3.3). */
  createMailbox(
    accountId: string,
    name: string,
    options?: { specialUse?: SpecialUse | null; subscribed?: boolean },
  ): Promise<Mailbox>;
  getMailbox(accountId: string, name: string): Promise<Mailbox | null>;
  getMailboxById(id: string): Promise<Mailbox | null>;
  listMailboxes(accountId: string): Promise<Mailbox[]>;
  /** Renames a mailbox and everything below it (RFC 3501 §6.3.5). Renaming INBOX is refused here. */
  renameMailbox(accountId: string, from: string, to: string): Promise<Mailbox>;
  /** Deletes the mailbox and its messages (freeing quota). Children stay. INBOX cannot be deleted. */
  deleteMailbox(accountId: string, name: string): Promise<void>;
  setSubscribed(mailboxId: string, subscribed: boolean): Promise<void>;
  /**
   * Subscribes to a name or ends its subscription, whether a mailbox has it or not (RFC 3501 §6.3.6:
   * a subscription is to a name; deleting a mailbox keeps it, and a mailbox made under a subscribed name
   * is subscribed). False when ending a subscription that was not there.
   */
  subscribeName(accountId: string, name: string, subscribed: boolean): Promise<boolean>;
  /** The names subscribed to that have no mailbox, in name order. */
  listKeptSubscriptions(accountId: string): Promise<string[]>;
  mailboxStatus(mailboxId: string): Promise<MailboxStatus>;

  /** Stores a message with the mailbox's next UID. The blob must already be in `blobs`. */
  appendMessage(input: NewMessage): Promise<Message>;
  getMessage(mailboxId: string, uid: number): Promise<Message | null>;
  /** Messages in UID order, optionally within [uidFrom, uidTo]. */
  listMessages(mailboxId: string, range?: { uidFrom?: number; uidTo?: number }): Promise<Message[]>;
  /** The same without the structures (much less to read for a whole mailbox). */
  listMessageMeta(mailboxId: string, range?: { uidFrom?: number; uidTo?: number }): Promise<MessageMeta[]>;
  /** The sort fields of the messages in UID order, optionally within [uidFrom, uidTo]. */
  listSortFields(
    mailboxId: string,
    range?: { uidFrom?: number; uidTo?: number },
  ): Promise<MessageSortFields[]>;
  /** The UIDs of the mailbox's messages, ascending: what POP3's listing needs, without the rows. */
  listUids(mailboxId: string): Promise<number[]>;
  /**
   * The mailbox as SELECT shows it, every part read at the same moment. With
   * `claimRecent`, the messages above `recentAbove` stop being \Recent for
   * everyone else, in the same step (RFC 3501 §2.3.2: a message is \Recent
   * in the first session that is shown it).
   */
  viewMailbox(mailboxId: string, options?: { claimRecent?: boolean }): Promise<MailboxView>;
  /**
   * Marks the messages up to `uid` as shown (no longer \Recent for anyone
   * else) and returns the UID below which they had been shown already: the
   * caller's \Recent messages are those above it, up to `uid`.
   */
  claimRecent(mailboxId: string, uid: number): Promise<number>;
  updateFlags(mailboxId: string, uids: number[], update: FlagUpdate): Promise<FlagUpdateResult>;
  copyMessages(
    fromMailboxId: string,
    uids: number[],
    toMailboxId: string,
    options?: { enforceQuota?: boolean },
  ): Promise<CopyResult>;
  /** Copy then expunge from the source (RFC 6851); quota is unchanged. */
  moveMessages(fromMailboxId: string, uids: number[], toMailboxId: string): Promise<CopyResult>;
  /** Removes the messages; returns the UIDs that were removed. */
  expungeMessages(mailboxId: string, uids: number[]): Promise<number[]>;
  /** Journal entries with modseq > `modseq`, in modseq order. */
  changesSince(mailboxId: string, modseq: number): Promise<Change[]>;
  /**
   * Forgets journal entries more than `keep` modseqs behind each mailbox's
   * highest, so the journal does not grow for ever; returns how many went.
   * A session further behind than that cannot catch up from the journal.
   */
  pruneJournal(keep: number): Promise<number>;
  /** Recomputes `usedBytes` from the messages; returns it. */
  recalculateQuota(accountId: string): Promise<number>;

  enqueue(input: NewQueueEntry): Promise<QueueEntry>;
  /**
   * Claims up to `limit` due, unheld entries whose lease is free or expired.
   * An entry that cannot be read is quarantined instead, and returned with
   * `quarantined` set (not leased), so the caller can report it once.
   */
  leaseQueue(request: LeaseRequest): Promise<QueueEntry[]>;
  /**
   * Records an attempt and frees the lease; `lease_lost` if `owner` no longer
   * holds it. An entry left with no pending recipient is removed in the same
   * step (the returned entry shows the final states).
   */
  recordAttempt(id: string, owner: string, attempt: AttemptResult): Promise<QueueEntry>;
  releaseLease(id: string, owner: string): Promise<void>;
  getQueueEntry(id: string): Promise<QueueEntry | null>;
  listQueue(): Promise<QueueEntry[]>;
  removeQueueEntry(id: string): Promise<void>;
  setQueueHeld(id: string, held: boolean): Promise<QueueEntry>;
  /** Makes an entry due now. */
  retryQueueEntry(id: string, now?: Date): Promise<QueueEntry>;

  /**
   * Stores a new key as the active one for its domain and algorithm; the key
   * that was active becomes `published`, in the same step. `not_found` for an
   * unknown domain, `exists` for a selector the domain has already.
   */
  addDkimKey(key: Omit<DkimKey, 'state' | 'createdAt'>): Promise<DkimKey>;
  /** Keys of one domain (or all), oldest first. */
  listDkimKeys(domain?: string): Promise<DkimKey[]>;
  /**
   * Removes a key (from signing and from `mailwerk dns`); `conflict` for an active key unless `force`.
   * Its selector stays retired: `addDkimKey` refuses it (`exists`) from then on, because resolvers may
   * still hold the removed key's record under that name.
   */
  removeDkimKey(domain: string, selector: string, options?: { force?: boolean }): Promise<void>;
  /** The selectors of a domain's removed keys, never to be used again. */
  retiredDkimSelectors(domain: string): Promise<string[]>;

  /**
   * A random 32-byte secret of the installation, by name: created on the first call, the same for
   * every process that shares the store from then on (the LMTP delivery key's HMAC key, for one).
   */
  secret(name: string): Promise<Buffer>;

  /**
   * TLS material kept for every process and host of the installation: the ACME certificate and
   * account key, and the answers to ACME challenges while an order is validated. Put replaces the
   * item of that name whole.
   */
  putTlsItem(item: Omit<TlsItem, 'updatedAt'>): Promise<TlsItem>;
  getTlsItem(name: string): Promise<TlsItem | null>;
  deleteTlsItem(name: string): Promise<void>;

  /**
   * A named lock held until `now + ms`: true when `owner` holds it after the call (it was free, had
   * expired, or was `owner`'s already and is extended), false while another owner holds it. Taken by
   * one conditional write, so of several processes asking at once exactly one gets it.
   */
  acquireLock(name: string, owner: string, ms: number): Promise<boolean>;
  /** Gives the lock up if `owner` holds it; nothing otherwise. */
  releaseLock(name: string, owner: string): Promise<void>;

  /**
   * Remembers `key` until `until`: true when it was not remembered (or its time had passed), false
   * when it still is (nothing changes then). One conditional write, so of several processes asking at
   * once exactly one gets true. What Sieve's vacation (RFC 5230 §4.2: one reply per sender per period)
   * and duplicate (RFC 7352) tests keep, across restarts and processes.
   */
  remember(key: string, until: Date): Promise<boolean>;
  /** Forgets the keys whose time has passed; returns how many went. */
  pruneRemembered(now?: Date): Promise<number>;

  /** `not_found` for an unknown account. */
  addRemoteAccount(input: NewRemoteAccount): Promise<RemoteAccount>;
  /** Every remote account, or one user's; oldest first. */
  listRemoteAccounts(accountId?: string): Promise<RemoteAccount[]>;
  getRemoteAccount(id: string): Promise<RemoteAccount | null>;
  /** `not_found` when it is gone (removed meanwhile). */
  updateRemoteAccount(id: string, patch: RemoteAccountUpdate): Promise<RemoteAccount>;
  /** `not_found` when there is no such remote account. */
  removeRemoteAccount(id: string): Promise<void>;

  putSieveScript(accountId: string, name: string, content: string): Promise<SieveScript>;
  getSieveScript(accountId: string, name: string): Promise<SieveScript | null>;
  listSieveScripts(accountId: string): Promise<SieveScript[]>;
  /** Refused with `conflict` for the active script (RFC 5804 §2.10). */
  deleteSieveScript(accountId: string, name: string): Promise<void>;
  /** Makes `name` the one active script; null deactivates all. */
  setActiveSieveScript(accountId: string, name: string | null): Promise<void>;
  getActiveSieveScript(accountId: string): Promise<SieveScript | null>;
}
