/**
 * The shared store: the MailStore on MongoDB (a replica set), for several
 * MTA, MDA and access processes on several hosts.
 *
 * Written to the contract in @mailwerk/store without multi-document
 * transactions, as its header describes:
 * - UIDs and MODSEQs come from one atomic `$inc` on the mailbox document, and
 *   (mailboxId, uid) is a unique index: two deliveries never share a UID.
 * - Quota is reserved with one conditional `$inc` on the account before the
 *   message is written, and given back if the write fails.
 * - A queue entry is leased by one conditional update of its document.
 * - Message bodies are in GridFS before any document refers to them.
 * Where a step of several writes is interrupted (a crash between them), what
 * is left is harmless: a UID skipped, quota charged that `recalculateQuota`
 * gives back, an unused body.
 *
 * NOT RUN HERE: no MongoDB server can be installed on the development
 * machines. The conformance suite runs against it whenever MONGODB_URL is set
 * (test/conformance.test.ts).
 */
import { randomBytes } from 'node:crypto';
import {
  type Account,
  type AccountPatch,
  type Alias,
  type AttemptResult,
  applyAttempt,
  applyFlagOperation,
  type BlobStore,
  blobRef,
  type Change,
  type ChangeKind,
  type CopyResult,
  checkDkimKey,
  checkQueueRecipients,
  checkSieveName,
  type DkimKey,
  type Domain,
  type FlagUpdate,
  type FlagUpdateResult,
  hasFlag,
  isSameOrChild,
  type LeaseRequest,
  type Mailbox,
  type MailboxStatus,
  type MailboxView,
  type MailStore,
  type Message,
  type MessageMeta,
  type MessageSortFields,
  type NewAccount,
  type NewMessage,
  type NewQueueEntry,
  type NewRemoteAccount,
  newQueueEntry,
  newQueueId,
  normalizeAddress,
  normalizeAliasSource,
  normalizeDomain,
  normalizeFlags,
  normalizeMailboxName,
  parentNames,
  parseAddress,
  type QueueEntry,
  type RemoteAccount,
  type RemoteAccountUpdate,
  remoteAccountStart,
  retiredMessage,
  type SieveScript,
  type SpecialUse,
  StoreError,
  sortFieldsOf,
  type TlsItem,
  withStructure,
} from '@mailwerk/store';
import {
  type Binary,
  type Collection,
  type Db,
  type Document,
  MongoClient,
  MongoServerError,
  ObjectId,
  type Sort,
} from 'mongodb';
import { GridFsBlobStore } from './blobs.ts';

const MAX_ALIAS_TARGETS = 1000;

const newId = () => new ObjectId().toHexString();
const isDuplicate = (err: unknown) => err instanceof MongoServerError && err.code === 11000;

function tryNormalize<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

/** The documents are the domain objects with `_id` for `id`, plus what only the store needs. */
type AccountDoc = Omit<Account, 'id'> & { _id: string; lastUidValidity: number };
/** `recentUid`: the highest UID shown to an IMAP session (\\Recent, RFC 3501 §2.3.2); absent means 0. */
type MailboxDoc = Omit<Mailbox, 'id'> & { _id: string; recentUid?: number };
interface MessageDoc {
  _id: string;
  accountId: string;
  mailboxId: string;
  uid: number;
  modseq: number;
  flags: string[];
  seen: boolean;
  internalDate: Date;
  /** When it was stored in this mailbox (SAVEDATE); absent on documents from before. */
  savedAt?: Date;
  size: number;
  blobId: string;
  /** JSON: MIME parameter names are not safe as document keys. */
  structure: string;
  deliveryKey?: string;
}
interface JournalDoc {
  mailboxId: string;
  modseq: number;
  kind: ChangeKind;
  uid: number;
  flags?: string[];
  seq: number;
}
type QueueDoc = Omit<QueueEntry, 'id'> & { _id: string };
interface SieveDoc {
  accountId: string;
  name: string;
  content: string;
  active: boolean;
  updatedAt: Date;
}
interface DkimDoc extends Omit<DkimKey, 'createdAt'> {
  createdAt: Date;
  seq: number;
}

const toAccount = ({ _id, lastUidValidity: _, ...rest }: AccountDoc): Account => ({ id: _id, ...rest });
const toMailbox = ({ _id, recentUid: _, ...rest }: MailboxDoc): Mailbox => ({ id: _id, ...rest });
const toMessageMeta = (d: Omit<MessageDoc, 'structure'>): MessageMeta => ({
  id: d._id,
  accountId: d.accountId,
  mailboxId: d.mailboxId,
  uid: d.uid,
  modseq: d.modseq,
  flags: d.flags,
  internalDate: d.internalDate,
  savedAt: d.savedAt ?? null,
  size: d.size,
  blobId: d.blobId,
});
const toMessage = (d: MessageDoc): Message => withStructure(toMessageMeta(d), d.structure);
/** A queue document as an entry; one whose recipients or meta are not what they must be comes back quarantined. */
function toQueueEntry({ _id, ...rest }: QueueDoc): QueueEntry {
  try {
    checkQueueRecipients(rest.recipients);
    if (typeof rest.meta !== 'object' || rest.meta === null || Array.isArray(rest.meta))
      throw new Error('meta is not an object');
  } catch (err) {
    return {
      ...rest,
      id: _id,
      recipients: [],
      meta: {},
      quarantined: rest.quarantined ?? `unreadable: ${(err as Error).message}`,
    };
  }
  return { id: _id, ...rest };
}
const toSieve = (d: SieveDoc): SieveScript => ({
  accountId: d.accountId,
  name: d.name,
  content: d.content,
  active: d.active,
  updatedAt: d.updatedAt,
});
const toDkim = (d: DkimDoc): DkimKey => ({
  domain: d.domain,
  selector: d.selector,
  algorithm: d.algorithm,
  privateKey: d.privateKey,
  publicKey: d.publicKey,
  state: d.state,
  createdAt: d.createdAt,
});

/**
 * The layout of the documents this code writes, kept in the database (`meta`, `_id: 'schema'`): a
 * database marked with a higher one was written by a newer Mailwerk and is refused, as the SQLite store
 * refuses a newer schema.
 */
export const MONGO_SCHEMA = 1;

export interface MongoStoreOptions {
  url: string;
  /** Default: the database named in the URL, else "mailwerk". */
  dbName?: string;
}

export class MongoMailStore implements MailStore {
  readonly blobs: BlobStore;
  private readonly client: MongoClient;
  private readonly db: Db;
  private readonly ready: Promise<void>;
  private seq = 0;

  constructor(options: MongoStoreOptions) {
    this.client = new MongoClient(options.url);
    this.db = this.client.db(options.dbName);
    this.blobs = new GridFsBlobStore(this.db);
    this.ready = this.ensureIndexes();
    // A failure surfaces in the first operation that awaits it.
    this.ready.catch(() => undefined);
  }

  private c<T extends Document>(name: string): Collection<T> {
    return this.db.collection<T>(name);
  }
  private get domains() {
    return this.c<{ _id: string; createdAt: Date }>('domains');
  }
  private get accounts() {
    return this.c<AccountDoc>('accounts');
  }
  private get aliases() {
    return this.c<{ _id: string; domain: string; targets: string[]; createdAt: Date }>('aliases');
  }
  private get mailboxes() {
    return this.c<MailboxDoc>('mailboxes');
  }
  private get messages() {
    return this.c<MessageDoc>('messages');
  }
  /** Names subscribed to that have no mailbox (RFC 3501 §6.3.6); `_id` is account id NUL name. */
  private get keptSubscriptions() {
    return this.c<{ _id: string; accountId: string; name: string }>('kept_subscriptions');
  }
  private get journalC() {
    return this.c<JournalDoc>('journal');
  }
  private get queue() {
    return this.c<QueueDoc>('queue');
  }
  private get sieve() {
    return this.c<SieveDoc>('sieve_scripts');
  }
  private get dkim() {
    return this.c<DkimDoc>('dkim_keys');
  }
  private get dkimRetired() {
    return this.c<{ domain: string; selector: string; removedAt: Date }>('dkim_retired');
  }
  private get secrets() {
    return this.c<{ _id: string; value: Buffer | Binary }>('secrets');
  }
  private get tlsItems() {
    return this.c<{ _id: string; cert: string; key: string; notAfter: Date | null; updatedAt: Date }>(
      'tls_items',
    );
  }
  private get remote() {
    return this.c<Omit<RemoteAccount, 'id'> & { _id: string }>('remote_accounts');
  }
  private get remembered() {
    return this.c<{ _id: string; until: Date }>('remembered');
  }
  private get locks() {
    return this.c<{ _id: string; owner: string; until: Date }>('locks');
  }

  private async ensureIndexes(): Promise<void> {
    const meta = this.c<{ _id: string; version: number }>('meta');
    const marked = await meta.findOne({ _id: 'schema' });
    if (marked && marked.version > MONGO_SCHEMA)
      throw new StoreError(
        'conflict',
        `The MongoDB store ${this.db.databaseName} has schema version ${marked.version}, written by a newer Mailwerk; this one knows versions up to ${MONGO_SCHEMA}. Run the newer version, or restore a backup taken before the upgrade.`,
      );
    await meta.updateOne({ _id: 'schema' }, { $max: { version: MONGO_SCHEMA } }, { upsert: true });
    await this.accounts.createIndex({ address: 1 }, { unique: true });
    await this.accounts.createIndex({ domain: 1, address: 1 });
    await this.aliases.createIndex({ domain: 1 });
    await this.mailboxes.createIndex({ accountId: 1, name: 1 }, { unique: true });
    await this.messages.createIndex({ mailboxId: 1, uid: 1 }, { unique: true });
    await this.messages.createIndex(
      { accountId: 1, deliveryKey: 1 },
      { unique: true, partialFilterExpression: { deliveryKey: { $type: 'string' } } },
    );
    await this.messages.createIndex({ blobId: 1 });
    await this.journalC.createIndex({ mailboxId: 1, modseq: 1 });
    await this.queue.createIndex({ held: 1, nextAttemptAt: 1 });
    await this.queue.createIndex({ blobId: 1 });
    await this.sieve.createIndex({ accountId: 1, name: 1 }, { unique: true });
    await this.keptSubscriptions.createIndex({ accountId: 1, name: 1 });
    await this.dkim.createIndex({ domain: 1, selector: 1 }, { unique: true });
    await this.dkimRetired.createIndex({ domain: 1, selector: 1 }, { unique: true });
    // MongoDB removes what is no longer remembered by itself too (pruneRemembered does it at once).
    await this.remembered.createIndex({ until: 1 }, { expireAfterSeconds: 0 });
    await this.db.collection('blobs.files').createIndex({ filename: 1 });
  }

  /** A strictly increasing number for ordering documents written by this process. */
  private nextSeq(): number {
    this.seq = Math.max(this.seq + 1, Date.now() * 1000);
    return this.seq;
  }

  async close(): Promise<void> {
    await this.ready.catch(() => undefined);
    await this.client.close();
  }

  /** Removes bodies no message and no queue entry refers to any more. */
  private async dropUnusedBlobs(ids: Iterable<string>): Promise<void> {
    for (const id of new Set(ids)) {
      const used =
        (await this.messages.countDocuments({ blobId: id }, { limit: 1 })) > 0 ||
        (await this.queue.countDocuments({ blobId: id }, { limit: 1 })) > 0;
      if (!used) await this.blobs.delete(id);
    }
  }

  /** Stores a body given with a message or queue entry (checked against the id, when both are given); its id. */
  private async storeData(blobId: string | undefined, data: Buffer | undefined): Promise<string> {
    const id = blobRef(blobId, data);
    if (data) await this.blobs.put(data);
    return id;
  }

  // ---- domains -------------------------------------------------------------

  async addDomain(name: string): Promise<Domain> {
    await this.ready;
    const domain = normalizeDomain(name);
    const createdAt = new Date();
    try {
      await this.domains.insertOne({ _id: domain, createdAt });
    } catch (err) {
      if (isDuplicate(err)) throw new StoreError('exists', `domain ${domain} exists already`);
      throw err;
    }
    return { name: domain, createdAt };
  }

  async getDomain(name: string): Promise<Domain | null> {
    await this.ready;
    const domain = tryNormalize(() => normalizeDomain(name));
    if (!domain) return null;
    const d = await this.domains.findOne({ _id: domain });
    return d ? { name: d._id, createdAt: d.createdAt } : null;
  }

  async listDomains(): Promise<Domain[]> {
    await this.ready;
    return (await this.domains.find().sort({ _id: 1 }).toArray()).map((d) => ({
      name: d._id,
      createdAt: d.createdAt,
    }));
  }

  async removeDomain(name: string, options: { force?: boolean } = {}): Promise<void> {
    await this.ready;
    const domain = normalizeDomain(name);
    if (!(await this.domains.findOne({ _id: domain })))
      throw new StoreError('not_found', `no domain ${domain}`);
    const accounts = await this.accounts.countDocuments({ domain });
    const aliases = await this.aliases.countDocuments({ domain });
    if ((accounts > 0 || aliases > 0) && !options.force)
      throw new StoreError(
        'conflict',
        `domain ${domain} still has ${accounts} account(s) and ${aliases} alias(es)`,
      );
    for (const a of await this.accounts.find({ domain }, { projection: { _id: 1 } }).toArray())
      await this.removeAccountData(a._id);
    await this.aliases.deleteMany({ domain });
    // Its keys' selectors stay retired, should the domain come back.
    for (const k of await this.dkim.find({ domain }, { projection: { selector: 1 } }).toArray())
      await this.dkimRetired.updateOne(
        { domain, selector: k.selector },
        { $setOnInsert: { domain, selector: k.selector, removedAt: new Date() } },
        { upsert: true },
      );
    await this.dkim.deleteMany({ domain });
    await this.domains.deleteOne({ _id: domain });
  }

  // ---- accounts ------------------------------------------------------------

  async createAccount(input: NewAccount): Promise<Account> {
    await this.ready;
    const { address, domain } = parseAddress(input.address);
    const boxes = (input.mailboxes ?? []).map((b) => ({
      name: normalizeMailboxName(b.name),
      specialUse: b.specialUse ?? null,
    }));
    const quota = input.quotaBytes ?? null;
    if (quota !== null && (!Number.isSafeInteger(quota) || quota < 0))
      throw new StoreError('invalid', `invalid quota ${quota}`);
    if (!(await this.domains.findOne({ _id: domain })))
      throw new StoreError('not_found', `domain ${domain} is not a local domain; add it first`);
    if (await this.aliases.findOne({ _id: address }))
      throw new StoreError('exists', `${address} is an alias already`);
    const doc: AccountDoc = {
      _id: newId(),
      address,
      domain,
      displayName: input.displayName ?? '',
      passwordHash: input.passwordHash,
      quotaBytes: quota,
      usedBytes: 0,
      disabled: false,
      createdAt: new Date(),
      lastUidValidity: 0,
    };
    try {
      await this.accounts.insertOne(doc);
    } catch (err) {
      if (isDuplicate(err)) throw new StoreError('exists', `account ${address} exists already`);
      throw err;
    }
    try {
      for (const box of boxes) await this.insertMailboxTree(doc._id, box.name, box.specialUse, true, false);
    } catch (err) {
      // "In one step": an account whose mailboxes could not all be made does not stay.
      await this.removeAccountData(doc._id);
      throw err;
    }
    return toAccount(doc);
  }

  async getAccount(id: string): Promise<Account | null> {
    await this.ready;
    const d = await this.accounts.findOne({ _id: id });
    return d ? toAccount(d) : null;
  }

  async getAccountByAddress(address: string): Promise<Account | null> {
    await this.ready;
    const canonical = tryNormalize(() => normalizeAddress(address));
    if (!canonical) return null;
    const d = await this.accounts.findOne({ address: canonical });
    return d ? toAccount(d) : null;
  }

  async listAccounts(filter: { domain?: string } = {}): Promise<Account[]> {
    await this.ready;
    const query = filter.domain !== undefined ? { domain: normalizeDomain(filter.domain) } : {};
    return (await this.accounts.find(query).sort({ address: 1 }).toArray()).map(toAccount);
  }

  async updateAccount(id: string, patch: AccountPatch): Promise<Account> {
    await this.ready;
    const set: Partial<AccountDoc> = {};
    if (patch.passwordHash !== undefined) set.passwordHash = patch.passwordHash;
    if (patch.displayName !== undefined) set.displayName = patch.displayName;
    if (patch.quotaBytes !== undefined) {
      const q = patch.quotaBytes;
      if (q !== null && (!Number.isSafeInteger(q) || q < 0))
        throw new StoreError('invalid', `invalid quota ${q}`);
      set.quotaBytes = q;
    }
    if (patch.disabled !== undefined) set.disabled = patch.disabled;
    const d =
      Object.keys(set).length > 0
        ? await this.accounts.findOneAndUpdate({ _id: id }, { $set: set }, { returnDocument: 'after' })
        : await this.accounts.findOne({ _id: id });
    if (!d) throw new StoreError('not_found', `no account ${id}`);
    return toAccount(d);
  }

  async removeAccount(id: string): Promise<void> {
    await this.ready;
    if (!(await this.accounts.findOne({ _id: id }))) throw new StoreError('not_found', `no account ${id}`);
    await this.removeAccountData(id);
  }

  /** The account with its mailboxes, messages, journal and Sieve scripts. */
  private async removeAccountData(id: string): Promise<void> {
    const blobs = await this.messages.distinct('blobId', { accountId: id });
    const boxes = (await this.mailboxes.find({ accountId: id }, { projection: { _id: 1 } }).toArray()).map(
      (b) => b._id,
    );
    await this.messages.deleteMany({ accountId: id });
    await this.journalC.deleteMany({ mailboxId: { $in: boxes } });
    await this.mailboxes.deleteMany({ accountId: id });
    await this.sieve.deleteMany({ accountId: id });
    await this.remote.deleteMany({ accountId: id });
    await this.keptSubscriptions.deleteMany({ accountId: id });
    await this.accounts.deleteOne({ _id: id });
    await this.dropUnusedBlobs(blobs as string[]);
  }

  // ---- aliases -------------------------------------------------------------

  async addAlias(input: { address: string; targets: string[] }): Promise<Alias> {
    await this.ready;
    const { address, domain } = normalizeAliasSource(input.address);
    if (input.targets.length === 0)
      throw new StoreError('invalid', `alias ${address} needs at least one target`);
    if (input.targets.length > MAX_ALIAS_TARGETS)
      throw new StoreError('invalid', `alias ${address} has more than ${MAX_ALIAS_TARGETS} targets`);
    const targets = [...new Set(input.targets.map(normalizeAddress))];
    if (!(await this.domains.findOne({ _id: domain })))
      throw new StoreError('not_found', `domain ${domain} is not a local domain; add it first`);
    if (await this.accounts.findOne({ address }))
      throw new StoreError('exists', `${address} is an account already`);
    const createdAt = new Date();
    try {
      await this.aliases.insertOne({ _id: address, domain, targets, createdAt });
    } catch (err) {
      if (isDuplicate(err)) throw new StoreError('exists', `alias ${address} exists already`);
      throw err;
    }
    return { address, domain, targets, createdAt };
  }

  async getAlias(address: string): Promise<Alias | null> {
    await this.ready;
    const source = tryNormalize(() => normalizeAliasSource(address));
    if (!source) return null;
    const d = await this.aliases.findOne({ _id: source.address });
    return d ? { address: d._id, domain: d.domain, targets: d.targets, createdAt: d.createdAt } : null;
  }

  async listAliases(filter: { domain?: string } = {}): Promise<Alias[]> {
    await this.ready;
    const query = filter.domain !== undefined ? { domain: normalizeDomain(filter.domain) } : {};
    return (await this.aliases.find(query).sort({ _id: 1 }).toArray()).map((d) => ({
      address: d._id,
      domain: d.domain,
      targets: d.targets,
      createdAt: d.createdAt,
    }));
  }

  async removeAlias(address: string): Promise<void> {
    await this.ready;
    const { address: source } = normalizeAliasSource(address);
    if ((await this.aliases.deleteOne({ _id: source })).deletedCount === 0)
      throw new StoreError('not_found', `no alias ${source}`);
  }

  // ---- mailboxes -----------------------------------------------------------

  /** A UIDVALIDITY never handed out before for this account (RFC 3501 §2.3.1.1). */
  private async nextUidValidity(accountId: string): Promise<number> {
    const now = Math.floor(Date.now() / 1000);
    const d = await this.accounts.findOneAndUpdate(
      { _id: accountId },
      [{ $set: { lastUidValidity: { $max: [now, { $add: ['$lastUidValidity', 1] }] } } }],
      { returnDocument: 'after' },
    );
    if (!d) throw new StoreError('not_found', `no account ${accountId}`);
    return d.lastUidValidity;
  }

  private async insertMailbox(
    accountId: string,
    name: string,
    specialUse: SpecialUse | null,
    subscribed: boolean,
  ): Promise<MailboxDoc> {
    // A name subscribed while it had no mailbox: the mailbox made under it is subscribed.
    if (await this.keptSubscription(accountId, name, false)) subscribed = true;
    const doc: MailboxDoc = {
      _id: newId(),
      accountId,
      name,
      specialUse,
      subscribed,
      uidValidity: await this.nextUidValidity(accountId),
      uidNext: 1,
      highestModseq: 1,
      createdAt: new Date(),
    };
    try {
      await this.mailboxes.insertOne(doc);
    } catch (err) {
      if (isDuplicate(err)) throw new StoreError('exists', `mailbox ${name} exists already`);
      throw err;
    }
    return doc;
  }

  /** Inserts `name` and any missing parents (RFC 3501 §6.3.3). */
  private async insertMailboxTree(
    accountId: string,
    name: string,
    specialUse: SpecialUse | null,
    subscribed: boolean,
    failIfExists: boolean,
  ): Promise<MailboxDoc> {
    for (const parent of parentNames(name)) {
      if (!(await this.mailboxes.findOne({ accountId, name: parent }))) {
        await this.insertMailbox(accountId, parent, null, false).catch((err) => {
          if (!(err instanceof StoreError && err.code === 'exists')) throw err;
        });
      }
    }
    const existing = await this.mailboxes.findOne({ accountId, name });
    if (existing) {
      if (failIfExists) throw new StoreError('exists', `mailbox ${name} exists already`);
      return existing;
    }
    return this.insertMailbox(accountId, name, specialUse, subscribed);
  }

  async createMailbox(
    accountId: string,
    name: string,
    options: { specialUse?: SpecialUse | null; subscribed?: boolean } = {},
  ): Promise<Mailbox> {
    await this.ready;
    const canonical = normalizeMailboxName(name);
    return toMailbox(
      await this.insertMailboxTree(
        accountId,
        canonical,
        options.specialUse ?? null,
        options.subscribed ?? false,
        true,
      ),
    );
  }

  async getMailbox(accountId: string, name: string): Promise<Mailbox | null> {
    await this.ready;
    const canonical = tryNormalize(() => normalizeMailboxName(name));
    if (!canonical) return null;
    const d = await this.mailboxes.findOne({ accountId, name: canonical });
    return d ? toMailbox(d) : null;
  }

  async getMailboxById(id: string): Promise<Mailbox | null> {
    await this.ready;
    const d = await this.mailboxes.findOne({ _id: id });
    return d ? toMailbox(d) : null;
  }

  async listMailboxes(accountId: string): Promise<Mailbox[]> {
    await this.ready;
    return (await this.mailboxes.find({ accountId }).sort({ name: 1 }).toArray()).map(toMailbox);
  }

  async renameMailbox(accountId: string, from: string, to: string): Promise<Mailbox> {
    await this.ready;
    const src = normalizeMailboxName(from);
    const dst = normalizeMailboxName(to);
    if (src === 'INBOX') throw new StoreError('invalid', 'INBOX cannot be renamed in the store');
    if (dst === 'INBOX' || isSameOrChild(dst, src))
      throw new StoreError('invalid', `cannot rename ${src} to ${dst}`);
    const source = await this.mailboxes.findOne({ accountId, name: src });
    if (!source) throw new StoreError('not_found', `no mailbox ${src}`);
    const tree = (await this.mailboxes.find({ accountId }).toArray()).filter((m) =>
      isSameOrChild(m.name, src),
    );
    const renamed = tree.map((m) => ({ id: m._id, name: dst + m.name.slice(src.length) }));
    for (const r of renamed)
      if (await this.mailboxes.findOne({ accountId, name: r.name }))
        throw new StoreError('exists', `mailbox ${r.name} exists already`);
    for (const r of renamed) {
      // A name subscribed while it had no mailbox now has one: the subscription is its.
      const kept = await this.keptSubscription(accountId, r.name, false);
      await this.mailboxes.updateOne(
        { _id: r.id },
        { $set: { name: r.name, ...(kept ? { subscribed: true } : {}) } },
      );
    }
    for (const parent of parentNames(dst))
      if (!(await this.mailboxes.findOne({ accountId, name: parent })))
        await this.insertMailbox(accountId, parent, null, false).catch(() => undefined);
    return toMailbox((await this.mailboxes.findOne({ _id: source._id }))!);
  }

  async deleteMailbox(accountId: string, name: string): Promise<void> {
    await this.ready;
    const canonical = normalizeMailboxName(name);
    if (canonical === 'INBOX') throw new StoreError('invalid', 'INBOX cannot be deleted');
    const box = await this.mailboxes.findOne({ accountId, name: canonical });
    if (!box) throw new StoreError('not_found', `no mailbox ${canonical}`);
    const docs = await this.messages
      .find({ mailboxId: box._id }, { projection: { size: 1, blobId: 1 } })
      .toArray();
    const size = docs.reduce((s, m) => s + m.size, 0);
    // RFC 3501 §6.3.6: a subscription outlives its mailbox.
    if (box.subscribed) await this.keptSubscription(accountId, canonical, true);
    await this.mailboxes.deleteOne({ _id: box._id });
    await this.messages.deleteMany({ mailboxId: box._id });
    await this.journalC.deleteMany({ mailboxId: box._id });
    if (size) await this.accounts.updateOne({ _id: accountId }, { $inc: { usedBytes: -size } });
    await this.dropUnusedBlobs(docs.map((m) => m.blobId));
  }

  async setSubscribed(mailboxId: string, subscribed: boolean): Promise<void> {
    await this.ready;
    if ((await this.mailboxes.updateOne({ _id: mailboxId }, { $set: { subscribed } })).matchedCount === 0)
      throw new StoreError('not_found', `no mailbox ${mailboxId}`);
  }

  async subscribeName(accountId: string, name: string, subscribed: boolean): Promise<boolean> {
    await this.ready;
    const canonical = normalizeMailboxName(name);
    const box = await this.mailboxes.findOne({ accountId, name: canonical });
    if (box) {
      await this.mailboxes.updateOne({ _id: box._id }, { $set: { subscribed } });
      return true;
    }
    return (await this.keptSubscription(accountId, canonical, subscribed)) || subscribed;
  }

  /** Keeps (or drops) a subscription to a name without a mailbox; true when one was dropped. */
  private async keptSubscription(accountId: string, name: string, keep: boolean): Promise<boolean> {
    const _id = `${accountId}\0${name}`;
    if (!keep) return (await this.keptSubscriptions.deleteOne({ _id })).deletedCount > 0;
    await this.keptSubscriptions.updateOne({ _id }, { $set: { accountId, name } }, { upsert: true });
    return false;
  }

  async listKeptSubscriptions(accountId: string): Promise<string[]> {
    await this.ready;
    return (await this.keptSubscriptions.find({ accountId }).sort({ name: 1 }).toArray()).map((d) => d.name);
  }

  async mailboxStatus(mailboxId: string): Promise<MailboxStatus> {
    await this.ready;
    const box = await this.mailboxes.findOne({ _id: mailboxId });
    if (!box) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    const [c] = await this.messages
      .aggregate<{ n: number; s: number; u: number; r: number }>([
        { $match: { mailboxId } },
        {
          $group: {
            _id: null,
            n: { $sum: 1 },
            s: { $sum: '$size' },
            u: { $sum: { $cond: ['$seen', 0, 1] } },
            r: { $sum: { $cond: [{ $gt: ['$uid', box.recentUid ?? 0] }, 1, 0] } },
          },
        },
      ])
      .toArray();
    return {
      messages: c?.n ?? 0,
      unseen: c?.u ?? 0,
      recent: c?.r ?? 0,
      size: c?.s ?? 0,
      uidNext: box.uidNext,
      uidValidity: box.uidValidity,
      highestModseq: box.highestModseq,
    };
  }

  // ---- messages ------------------------------------------------------------

  private async mailboxDoc(id: string): Promise<MailboxDoc> {
    const box = await this.mailboxes.findOne({ _id: id });
    if (!box) throw new StoreError('not_found', `no mailbox ${id}`);
    return box;
  }

  /** Reserves quota with one conditional increment. */
  private async chargeQuota(accountId: string, size: number, enforce: boolean): Promise<void> {
    if (!enforce || size <= 0) {
      if (
        (await this.accounts.updateOne({ _id: accountId }, { $inc: { usedBytes: size } })).matchedCount === 0
      )
        throw new StoreError('not_found', `no account ${accountId}`);
      return;
    }
    const r = await this.accounts.updateOne(
      {
        _id: accountId,
        $or: [{ quotaBytes: null }, { $expr: { $lte: [{ $add: ['$usedBytes', size] }, '$quotaBytes'] } }],
      },
      { $inc: { usedBytes: size } },
    );
    if (r.matchedCount > 0) return;
    const acc = await this.accounts.findOne({ _id: accountId });
    if (!acc) throw new StoreError('not_found', `no account ${accountId}`);
    throw new StoreError('over_quota', `quota exceeded (${acc.usedBytes} of ${acc.quotaBytes} bytes used)`);
  }

  /** Takes `count` UIDs and one MODSEQ from the mailbox, atomically. */
  private async allocate(mailboxId: string, count: number): Promise<{ firstUid: number; modseq: number }> {
    const d = await this.mailboxes.findOneAndUpdate(
      { _id: mailboxId },
      { $inc: { uidNext: count, highestModseq: 1 } },
      { returnDocument: 'after' },
    );
    if (!d) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    return { firstUid: d.uidNext - count, modseq: d.highestModseq };
  }

  private async journal(mailboxId: string, modseq: number, kind: ChangeKind, uid: number, flags?: string[]) {
    await this.journalC.insertOne({
      mailboxId,
      modseq,
      kind,
      uid,
      ...(flags ? { flags } : {}),
      seq: this.nextSeq(),
    });
  }

  async appendMessage(input: NewMessage): Promise<Message> {
    await this.ready;
    const flags = normalizeFlags(input.flags ?? []);
    const blobId = await this.storeData(input.blobId, input.data);
    const box = await this.mailboxDoc(input.mailboxId);
    if (box.accountId !== input.accountId) throw new StoreError('not_found', `no mailbox ${input.mailboxId}`);
    if (
      input.deliveryKey !== undefined &&
      (await this.messages.findOne({ accountId: input.accountId, deliveryKey: input.deliveryKey }))
    )
      throw new StoreError('exists', `already delivered (${input.deliveryKey})`);
    await this.chargeQuota(input.accountId, input.size, input.enforceQuota ?? true);
    let doc: MessageDoc;
    try {
      const { firstUid, modseq } = await this.allocate(box._id, 1);
      doc = {
        _id: newId(),
        accountId: input.accountId,
        mailboxId: box._id,
        uid: firstUid,
        modseq,
        flags,
        seen: hasFlag(flags, '\\Seen'),
        internalDate: input.internalDate ?? new Date(),
        savedAt: new Date(),
        size: input.size,
        blobId,
        structure: JSON.stringify(input.structure),
        ...(input.deliveryKey !== undefined ? { deliveryKey: input.deliveryKey } : {}),
      };
      await this.messages.insertOne(doc);
    } catch (err) {
      await this.accounts.updateOne({ _id: input.accountId }, { $inc: { usedBytes: -input.size } });
      if (isDuplicate(err) && input.deliveryKey !== undefined)
        throw new StoreError('exists', `already delivered (${input.deliveryKey})`);
      throw err;
    }
    await this.journal(box._id, doc.modseq, 'append', doc.uid, flags);
    return toMessage(doc);
  }

  async getMessage(mailboxId: string, uid: number): Promise<Message | null> {
    await this.ready;
    const d = await this.messages.findOne({ mailboxId, uid });
    return d ? toMessage(d) : null;
  }

  async listMessages(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<Message[]> {
    await this.ready;
    return (
      await this.messages
        .find({ mailboxId, uid: { $gte: range.uidFrom ?? 1, $lte: range.uidTo ?? Number.MAX_SAFE_INTEGER } })
        .sort({ uid: 1 })
        .toArray()
    ).map(toMessage);
  }

  async listMessageMeta(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<MessageMeta[]> {
    await this.ready;
    return (
      await this.messages
        .find(
          { mailboxId, uid: { $gte: range.uidFrom ?? 1, $lte: range.uidTo ?? Number.MAX_SAFE_INTEGER } },
          { projection: { structure: 0, deliveryKey: 0, seen: 0 } },
        )
        .sort({ uid: 1 })
        .toArray()
    ).map(toMessageMeta);
  }

  async listSortFields(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<MessageSortFields[]> {
    await this.ready;
    // The structure is kept as one JSON string: its sort part is taken out here (lazy.ts).
    return (
      await this.messages
        .find(
          { mailboxId, uid: { $gte: range.uidFrom ?? 1, $lte: range.uidTo ?? Number.MAX_SAFE_INTEGER } },
          { projection: { uid: 1, structure: 1 } },
        )
        .sort({ uid: 1 })
        .toArray()
    ).map((d) => ({ uid: d.uid, sort: sortFieldsOf(d.structure) }));
  }

  async listUids(mailboxId: string): Promise<number[]> {
    await this.ready;
    return (
      await this.messages
        .find({ mailboxId }, { projection: { uid: 1 } })
        .sort({ uid: 1 })
        .toArray()
    ).map((d) => d.uid);
  }

  async viewMailbox(mailboxId: string, options: { claimRecent?: boolean } = {}): Promise<MailboxView> {
    await this.ready;
    // Separate reads: repeat until the mailbox did not change in between.
    for (let attempt = 0; ; attempt++) {
      const before = await this.mailboxDoc(mailboxId);
      const [uids, unseen, flags] = await Promise.all([
        this.listUids(mailboxId),
        this.messages
          .find({ mailboxId, seen: false }, { projection: { uid: 1 } })
          .sort({ uid: 1 })
          .limit(1)
          .next(),
        this.messages.distinct('flags', { mailboxId }) as Promise<string[]>,
      ]);
      const after = await this.mailboxDoc(mailboxId);
      if (after.highestModseq !== before.highestModseq && attempt < 3) continue;
      const keywords = new Map<string, string>();
      for (const f of flags)
        if (!f.startsWith('\\') && !keywords.has(f.toLowerCase())) keywords.set(f.toLowerCase(), f);
      const top = uids.length ? uids[uids.length - 1]! : 0;
      return {
        mailbox: toMailbox(after),
        uids,
        recentAbove: options.claimRecent ? await this.claimRecent(mailboxId, top) : (after.recentUid ?? 0),
        firstUnseen: unseen ? unseen.uid : null,
        keywords: [...keywords.values()],
      };
    }
  }

  async claimRecent(mailboxId: string, uid: number): Promise<number> {
    await this.ready;
    // One atomic step: the document as it was before $max tells what had been shown already.
    const before = await this.mailboxes.findOneAndUpdate(
      { _id: mailboxId },
      { $max: { recentUid: uid } },
      { returnDocument: 'before' },
    );
    if (!before) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    return before.recentUid ?? 0;
  }

  private selectUids(mailboxId: string, uids: number[]): Promise<MessageDoc[]> {
    return this.messages
      .find({ mailboxId, uid: { $in: uids } })
      .sort({ uid: 1 })
      .toArray();
  }

  async updateFlags(mailboxId: string, uids: number[], update: FlagUpdate): Promise<FlagUpdateResult> {
    await this.ready;
    normalizeFlags(update.flags);
    await this.mailboxDoc(mailboxId);
    const modified: number[] = [];
    const changes: Array<{ doc: MessageDoc; flags: string[] }> = [];
    for (const d of await this.selectUids(mailboxId, uids)) {
      if (update.unchangedSince !== undefined && d.modseq > update.unchangedSince) {
        modified.push(d.uid);
        continue;
      }
      const next = applyFlagOperation(d.flags, update.op, update.flags);
      if (next) changes.push({ doc: d, flags: next });
    }
    const updated: Message[] = [];
    if (changes.length > 0) {
      // One MODSEQ for the whole STORE, as RFC 7162 §3.1 allows.
      const { modseq } = await this.allocate(mailboxId, 0);
      for (const c of changes) {
        const d = await this.messages.findOneAndUpdate(
          { _id: c.doc._id },
          { $set: { flags: c.flags, seen: hasFlag(c.flags, '\\Seen'), modseq } },
          { returnDocument: 'after' },
        );
        if (!d) continue; // Expunged meanwhile.
        await this.journal(mailboxId, modseq, 'flags', d.uid, c.flags);
        updated.push(toMessage(d));
      }
    }
    return { updated, modified };
  }

  private async copyDocs(
    from: string,
    uids: number[],
    to: string,
    enforce: boolean,
    charge: boolean,
  ): Promise<CopyResult & { docs: MessageDoc[] }> {
    const src = await this.mailboxDoc(from);
    const dst = await this.mailboxDoc(to);
    if (src.accountId !== dst.accountId)
      throw new StoreError('invalid', 'messages can only be copied between mailboxes of one account');
    const docs = await this.selectUids(from, uids);
    if (docs.length === 0) return { uidValidity: dst.uidValidity, uids: [], docs };
    const total = docs.reduce((s, d) => s + d.size, 0);
    if (charge) await this.chargeQuota(src.accountId, total, enforce);
    try {
      const { firstUid, modseq } = await this.allocate(to, docs.length);
      const copies: MessageDoc[] = docs.map((d, i) => {
        const { deliveryKey: _key, ...rest } = d;
        return { ...rest, _id: newId(), mailboxId: to, uid: firstUid + i, modseq, savedAt: new Date() };
      });
      await this.messages.insertMany(copies, { ordered: true });
      for (const c of copies) await this.journal(to, modseq, 'append', c.uid, c.flags);
      return { uidValidity: dst.uidValidity, uids: docs.map((d, i) => [d.uid, firstUid + i]), docs };
    } catch (err) {
      if (charge) await this.accounts.updateOne({ _id: src.accountId }, { $inc: { usedBytes: -total } });
      throw err;
    }
  }

  private async expungeDocs(mailboxId: string, docs: MessageDoc[], refund: boolean): Promise<number[]> {
    if (docs.length === 0) return [];
    const { modseq } = await this.allocate(mailboxId, 0);
    const gone = await this.messages.deleteMany({ _id: { $in: docs.map((d) => d._id) } });
    for (const d of docs) await this.journal(mailboxId, modseq, 'expunge', d.uid);
    if (refund && gone.deletedCount > 0)
      await this.accounts.updateOne(
        { _id: docs[0]!.accountId },
        { $inc: { usedBytes: -docs.reduce((s, d) => s + d.size, 0) } },
      );
    await this.dropUnusedBlobs(docs.map((d) => d.blobId));
    return docs.map((d) => d.uid);
  }

  async copyMessages(
    fromMailboxId: string,
    uids: number[],
    toMailboxId: string,
    options: { enforceQuota?: boolean } = {},
  ): Promise<CopyResult> {
    await this.ready;
    const { uidValidity, uids: pairs } = await this.copyDocs(
      fromMailboxId,
      uids,
      toMailboxId,
      options.enforceQuota ?? true,
      true,
    );
    return { uidValidity, uids: pairs };
  }

  async moveMessages(fromMailboxId: string, uids: number[], toMailboxId: string): Promise<CopyResult> {
    await this.ready;
    const {
      uidValidity,
      uids: pairs,
      docs,
    } = await this.copyDocs(fromMailboxId, uids, toMailboxId, false, false);
    await this.expungeDocs(fromMailboxId, docs, false);
    return { uidValidity, uids: pairs };
  }

  async expungeMessages(mailboxId: string, uids: number[]): Promise<number[]> {
    await this.ready;
    await this.mailboxDoc(mailboxId);
    return this.expungeDocs(mailboxId, await this.selectUids(mailboxId, uids), true);
  }

  async changesSince(mailboxId: string, modseq: number): Promise<Change[]> {
    await this.ready;
    return (
      await this.journalC
        .find({ mailboxId, modseq: { $gt: modseq } })
        .sort({ modseq: 1, seq: 1 })
        .toArray()
    ).map((d) => ({
      mailboxId: d.mailboxId,
      modseq: d.modseq,
      kind: d.kind,
      uid: d.uid,
      ...(d.flags ? { flags: d.flags } : {}),
    }));
  }

  async pruneJournal(keep: number): Promise<number> {
    await this.ready;
    let n = 0;
    const k = Math.max(0, Math.floor(keep));
    for (const box of await this.mailboxes.find({}, { projection: { highestModseq: 1 } }).toArray())
      n += (await this.journalC.deleteMany({ mailboxId: box._id, modseq: { $lte: box.highestModseq - k } }))
        .deletedCount;
    return n;
  }

  async recalculateQuota(accountId: string): Promise<number> {
    await this.ready;
    const [s] = await this.messages
      .aggregate<{ s: number }>([{ $match: { accountId } }, { $group: { _id: null, s: { $sum: '$size' } } }])
      .toArray();
    const used = s?.s ?? 0;
    if ((await this.accounts.updateOne({ _id: accountId }, { $set: { usedBytes: used } })).matchedCount === 0)
      throw new StoreError('not_found', `no account ${accountId}`);
    return used;
  }

  // ---- queue ---------------------------------------------------------------

  async enqueue(input: NewQueueEntry): Promise<QueueEntry> {
    await this.ready;
    if (input.recipients.length === 0)
      throw new StoreError('invalid', 'a queue entry needs at least one recipient');
    await this.storeData(input.blobId, input.data);
    const now = new Date();
    const { id, ...entry } = newQueueEntry(input, input.id ?? newQueueId(now.getTime()), now);
    const doc: QueueDoc = { _id: id, ...entry };
    if (input.once && !(await this.remember(input.once.key, input.once.until)))
      throw new StoreError('exists', `already queued once: ${input.once.key}`);
    try {
      await this.queue.insertOne(doc);
    } catch (err) {
      // Not queued: not remembered either, so a retry queues it.
      if (input.once) await this.remembered.deleteOne({ _id: input.once.key, until: input.once.until });
      throw err;
    }
    return toQueueEntry(doc);
  }

  async leaseQueue(request: LeaseRequest): Promise<QueueEntry[]> {
    await this.ready;
    const now = request.now ?? new Date();
    const until = new Date(now.getTime() + request.leaseMs);
    const out: QueueEntry[] = [];
    while (out.length < request.limit) {
      // One conditional update per entry: two workers can never both claim it.
      const d = await this.queue.findOneAndUpdate(
        {
          held: false,
          quarantined: { $exists: false },
          nextAttemptAt: { $lte: now },
          $or: [{ leaseUntil: null }, { leaseUntil: { $lt: now } }],
        },
        { $set: { leaseOwner: request.owner, leaseUntil: until } },
        { sort: { nextAttemptAt: 1 }, returnDocument: 'after' },
      );
      if (!d) break;
      const entry = toQueueEntry(d);
      // An entry that cannot be read is set aside, unleased, and never claimed again.
      if (entry.quarantined)
        await this.queue.updateOne(
          { _id: entry.id },
          { $set: { quarantined: entry.quarantined, leaseOwner: null, leaseUntil: null } },
        );
      out.push(entry);
    }
    return out;
  }

  async recordAttempt(id: string, owner: string, attempt: AttemptResult): Promise<QueueEntry> {
    await this.ready;
    const current = await this.queue.findOne({ _id: id });
    if (!current) throw new StoreError('not_found', `no queue entry ${id}`);
    if (current.leaseOwner !== owner)
      throw new StoreError('lease_lost', `queue entry ${id} is not leased by ${owner}`);
    const recipients = applyAttempt(current.recipients, attempt, new Date());
    const d = await this.queue.findOneAndUpdate(
      { _id: id, leaseOwner: owner },
      {
        $set: {
          recipients,
          nextAttemptAt: attempt.nextAttemptAt,
          leaseOwner: null,
          leaseUntil: null,
          meta: { ...current.meta, ...attempt.meta },
        },
        $inc: { attempts: 1 },
      },
      { returnDocument: 'after' },
    );
    if (!d) throw new StoreError('lease_lost', `queue entry ${id} is not leased by ${owner}`);
    if (!recipients.some((rc) => rc.state === 'pending')) {
      await this.queue.deleteOne({ _id: id });
      await this.dropUnusedBlobs([d.blobId]);
    }
    return toQueueEntry(d);
  }

  async releaseLease(id: string, owner: string): Promise<void> {
    await this.ready;
    await this.queue.updateOne(
      { _id: id, leaseOwner: owner },
      { $set: { leaseOwner: null, leaseUntil: null } },
    );
  }

  async getQueueEntry(id: string): Promise<QueueEntry | null> {
    await this.ready;
    const d = await this.queue.findOne({ _id: id });
    return d ? toQueueEntry(d) : null;
  }

  async listQueue(): Promise<QueueEntry[]> {
    await this.ready;
    return (await this.queue.find().sort({ createdAt: 1, _id: 1 }).toArray()).map(toQueueEntry);
  }

  async removeQueueEntry(id: string): Promise<void> {
    await this.ready;
    const d = await this.queue.findOneAndDelete({ _id: id });
    if (!d) throw new StoreError('not_found', `no queue entry ${id}`);
    await this.dropUnusedBlobs([d.blobId]);
  }

  async setQueueHeld(id: string, held: boolean): Promise<QueueEntry> {
    await this.ready;
    const d = await this.queue.findOneAndUpdate({ _id: id }, { $set: { held } }, { returnDocument: 'after' });
    if (!d) throw new StoreError('not_found', `no queue entry ${id}`);
    return toQueueEntry(d);
  }

  async retryQueueEntry(id: string, now: Date = new Date()): Promise<QueueEntry> {
    await this.ready;
    const d = await this.queue.findOneAndUpdate(
      { _id: id },
      { $set: { nextAttemptAt: now } },
      { returnDocument: 'after' },
    );
    if (!d) throw new StoreError('not_found', `no queue entry ${id}`);
    return toQueueEntry(d);
  }

  // ---- Sieve scripts -------------------------------------------------------

  async addRemoteAccount(input: NewRemoteAccount): Promise<RemoteAccount> {
    await this.ready;
    if (!(await this.accounts.findOne({ _id: input.accountId })))
      throw new StoreError('not_found', `no account ${input.accountId}`);
    const doc = {
      _id: randomBytes(12).toString('hex'),
      ...input,
      ...remoteAccountStart(),
      createdAt: new Date(),
    };
    await this.remote.insertOne(doc);
    return fromRemoteDoc(doc);
  }

  async listRemoteAccounts(accountId?: string): Promise<RemoteAccount[]> {
    await this.ready;
    const docs = await this.remote
      .find(accountId === undefined ? {} : { accountId })
      .sort({ createdAt: 1, _id: 1 })
      .toArray();
    return docs.map(fromRemoteDoc);
  }

  async getRemoteAccount(id: string): Promise<RemoteAccount | null> {
    await this.ready;
    const d = await this.remote.findOne({ _id: id });
    return d ? fromRemoteDoc(d) : null;
  }

  async updateRemoteAccount(id: string, patch: RemoteAccountUpdate): Promise<RemoteAccount> {
    await this.ready;
    const d = await this.remote.findOneAndUpdate({ _id: id }, { $set: patch }, { returnDocument: 'after' });
    if (!d) throw new StoreError('not_found', `no remote account ${id}`);
    return fromRemoteDoc(d);
  }

  async removeRemoteAccount(id: string): Promise<void> {
    await this.ready;
    const r = await this.remote.deleteOne({ _id: id });
    if (r.deletedCount === 0) throw new StoreError('not_found', `no remote account ${id}`);
  }

  async putSieveScript(accountId: string, name: string, content: string): Promise<SieveScript> {
    await this.ready;
    checkSieveName(name);
    if (!(await this.accounts.findOne({ _id: accountId })))
      throw new StoreError('not_found', `no account ${accountId}`);
    const d = await this.sieve.findOneAndUpdate(
      { accountId, name },
      { $set: { content, updatedAt: new Date() }, $setOnInsert: { active: false } },
      { upsert: true, returnDocument: 'after' },
    );
    return toSieve(d!);
  }

  async getSieveScript(accountId: string, name: string): Promise<SieveScript | null> {
    await this.ready;
    const d = await this.sieve.findOne({ accountId, name });
    return d ? toSieve(d) : null;
  }

  async listSieveScripts(accountId: string): Promise<SieveScript[]> {
    await this.ready;
    return (await this.sieve.find({ accountId }).sort({ name: 1 }).toArray()).map(toSieve);
  }

  async deleteSieveScript(accountId: string, name: string): Promise<void> {
    await this.ready;
    const d = await this.sieve.findOne({ accountId, name });
    if (!d) throw new StoreError('not_found', `no Sieve script ${name}`);
    if (d.active) throw new StoreError('conflict', `Sieve script ${name} is active`);
    await this.sieve.deleteOne({ accountId, name, active: false });
  }

  async setActiveSieveScript(accountId: string, name: string | null): Promise<void> {
    await this.ready;
    if (name !== null && !(await this.sieve.findOne({ accountId, name })))
      throw new StoreError('not_found', `no Sieve script ${name}`);
    await this.sieve.updateMany(
      { accountId, active: true, ...(name !== null ? { name: { $ne: name } } : {}) },
      {
        $set: { active: false },
      },
    );
    if (name !== null) await this.sieve.updateOne({ accountId, name }, { $set: { active: true } });
  }

  async getActiveSieveScript(accountId: string): Promise<SieveScript | null> {
    await this.ready;
    const d = await this.sieve.findOne({ accountId, active: true });
    return d ? toSieve(d) : null;
  }

  // ---- DKIM keys -----------------------------------------------------------

  async addDkimKey(key: Omit<DkimKey, 'state' | 'createdAt'>): Promise<DkimKey> {
    await this.ready;
    const domain = normalizeDomain(key.domain);
    checkDkimKey(key);
    if (!(await this.domains.findOne({ _id: domain })))
      throw new StoreError('not_found', `no domain ${domain}`);
    if (await this.dkim.findOne({ domain, selector: key.selector }))
      throw new StoreError('exists', `${domain} has a DKIM key with selector ${key.selector} already`);
    if (await this.dkimRetired.findOne({ domain, selector: key.selector }))
      throw new StoreError('exists', retiredMessage(domain, key.selector));
    const doc: DkimDoc = {
      domain,
      selector: key.selector,
      algorithm: key.algorithm,
      privateKey: key.privateKey,
      publicKey: key.publicKey,
      state: 'active',
      createdAt: new Date(),
      seq: this.nextSeq(),
    };
    try {
      await this.dkim.insertOne(doc);
    } catch (err) {
      if (isDuplicate(err))
        throw new StoreError('exists', `${domain} has a DKIM key with selector ${key.selector} already`);
      throw err;
    }
    // The new key is in; the one it replaces stops signing.
    await this.dkim.updateMany(
      { domain, algorithm: key.algorithm, state: 'active', selector: { $ne: key.selector } },
      { $set: { state: 'published' } },
    );
    return toDkim(doc);
  }

  async listDkimKeys(domain?: string): Promise<DkimKey[]> {
    await this.ready;
    const query = domain === undefined ? {} : { domain: normalizeDomain(domain) };
    const sort: Sort = domain === undefined ? { domain: 1, createdAt: 1, seq: 1 } : { createdAt: 1, seq: 1 };
    return (await this.dkim.find(query).sort(sort).toArray()).map(toDkim);
  }

  async removeDkimKey(domain: string, selector: string, options: { force?: boolean } = {}): Promise<void> {
    await this.ready;
    const d = normalizeDomain(domain);
    const key = await this.dkim.findOne({ domain: d, selector });
    if (!key) throw new StoreError('not_found', `${d} has no DKIM key with selector ${selector}`);
    if (key.state === 'active' && !options.force)
      throw new StoreError(
        'conflict',
        `the key ${selector} of ${d} is the one signing; generate a new one first`,
      );
    // Retired first: a crash in between leaves a key that cannot be re-added, never a reusable selector.
    await this.dkimRetired.updateOne(
      { domain: d, selector },
      { $setOnInsert: { domain: d, selector, removedAt: new Date() } },
      { upsert: true },
    );
    await this.dkim.deleteOne({ domain: d, selector });
  }

  async retiredDkimSelectors(domain: string): Promise<string[]> {
    await this.ready;
    const docs = await this.dkimRetired
      .find({ domain: normalizeDomain(domain) })
      .sort({ removedAt: 1 })
      .toArray();
    return docs.map((d) => d.selector);
  }

  // ---- secrets ---------------------------------------------------------------

  async putTlsItem(item: Omit<TlsItem, 'updatedAt'>): Promise<TlsItem> {
    await this.ready;
    const doc = { cert: item.cert, key: item.key, notAfter: item.notAfter, updatedAt: new Date() };
    await this.tlsItems.replaceOne({ _id: item.name }, doc, { upsert: true });
    return { name: item.name, ...doc };
  }

  async getTlsItem(name: string): Promise<TlsItem | null> {
    await this.ready;
    const doc = await this.tlsItems.findOne({ _id: name });
    if (!doc) return null;
    return { name, cert: doc.cert, key: doc.key, notAfter: doc.notAfter ?? null, updatedAt: doc.updatedAt };
  }

  async deleteTlsItem(name: string): Promise<void> {
    await this.ready;
    await this.tlsItems.deleteOne({ _id: name });
  }

  async acquireLock(name: string, owner: string, ms: number): Promise<boolean> {
    await this.ready;
    const now = new Date();
    try {
      // Matches a lock that is ours or has expired, or inserts one; another owner's live lock makes
      // the upsert collide with its _id, which is the refusal.
      await this.locks.updateOne(
        { _id: name, $or: [{ owner }, { until: { $lte: now } }] },
        { $set: { owner, until: new Date(now.getTime() + ms) } },
        { upsert: true },
      );
      return true;
    } catch (err) {
      if (isDuplicate(err)) return false;
      throw err;
    }
  }

  async releaseLock(name: string, owner: string): Promise<void> {
    await this.ready;
    await this.locks.deleteOne({ _id: name, owner });
  }

  async remember(key: string, until: Date): Promise<boolean> {
    await this.ready;
    try {
      // Matches a key whose time has passed, or inserts it; a key still remembered makes the upsert
      // collide with its _id, which is the answer "still remembered".
      await this.remembered.updateOne(
        { _id: key, until: { $lte: new Date() } },
        { $set: { until } },
        { upsert: true },
      );
      return true;
    } catch (err) {
      if (isDuplicate(err)) return false;
      throw err;
    }
  }

  async pruneRemembered(now = new Date()): Promise<number> {
    await this.ready;
    return (await this.remembered.deleteMany({ until: { $lte: now } })).deletedCount;
  }

  async secret(name: string): Promise<Buffer> {
    await this.ready;
    try {
      // The first writer wins; everyone reads what it wrote.
      await this.secrets.updateOne(
        { _id: name },
        { $setOnInsert: { value: randomBytes(32) } },
        { upsert: true },
      );
    } catch (err) {
      // Two processes upserting at once: one gets a duplicate key error, and the other's value stands.
      if (!isDuplicate(err)) throw err;
    }
    const doc = await this.secrets.findOne({ _id: name });
    if (!doc) throw new StoreError('not_found', `secret ${name} vanished`);
    const v = doc.value;
    return Buffer.isBuffer(v) ? v : Buffer.from((v as Binary).buffer);
  }
}

function fromRemoteDoc(d: Omit<RemoteAccount, 'id'> & { _id: string }): RemoteAccount {
  const { _id, ...rest } = d;
  return { ...rest, id: _id };
}
