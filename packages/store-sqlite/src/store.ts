/**
 * The embedded MailStore on node:sqlite.
 *
 * Invariants:
 * - Every write runs in one BEGIN IMMEDIATE transaction (db.ts), so other
 *   processes using the same data directory see all of it or nothing; UID,
 *   MODSEQ and quota updates share that transaction with the rows they count.
 * - node:sqlite is synchronous: a method does all its database work without
 *   awaiting in between, so no other call on this connection interleaves.
 * - Message bodies live in the blob store; rows hold only their ids.
 */
import { randomBytes } from 'node:crypto';
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import {
  type Account,
  type AccountPatch,
  type Alias,
  type AttemptResult,
  applyFlagOperation,
  type BlobStore,
  type Change,
  type ChangeKind,
  type CopyResult,
  contentId,
  type Domain,
  type FlagUpdate,
  type FlagUpdateResult,
  hasFlag,
  isSameOrChild,
  type LeaseRequest,
  type Mailbox,
  type MailboxStatus,
  type MailStore,
  type Message,
  type NewAccount,
  type NewMessage,
  type NewQueueEntry,
  normalizeAddress,
  normalizeAliasSource,
  normalizeDomain,
  normalizeFlags,
  normalizeMailboxName,
  parentNames,
  parseAddress,
  type QueueEntry,
  type QueueRecipient,
  type SieveScript,
  type SpecialUse,
  StoreError,
} from '@mailwerk/store';
import { SqliteBlobStore } from './blobs.ts';
import { type GroupCommit, uniqueAs } from './db.ts';

type Row = Record<string, SQLInputValue>;

const toAccount = (r: Row): Account => ({
  id: String(r.id),
  address: r.address as string,
  domain: r.domain as string,
  displayName: r.display_name as string,
  passwordHash: r.password_hash as string,
  quotaBytes: r.quota_bytes === null ? null : Number(r.quota_bytes),
  usedBytes: Number(r.used_bytes),
  disabled: r.disabled === 1,
  createdAt: new Date(Number(r.created_at)),
});

const toAlias = (r: Row): Alias => ({
  address: r.address as string,
  domain: r.domain as string,
  targets: JSON.parse(r.targets as string),
  createdAt: new Date(Number(r.created_at)),
});

const toMailbox = (r: Row): Mailbox => ({
  id: String(r.id),
  accountId: String(r.account_id),
  name: r.name as string,
  specialUse: (r.special_use as SpecialUse | null) ?? null,
  subscribed: r.subscribed === 1,
  uidValidity: Number(r.uid_validity),
  uidNext: Number(r.uid_next),
  highestModseq: Number(r.highest_modseq),
  createdAt: new Date(Number(r.created_at)),
});

const toMessage = (r: Row): Message => ({
  id: String(r.id),
  accountId: String(r.account_id),
  mailboxId: String(r.mailbox_id),
  uid: Number(r.uid),
  modseq: Number(r.modseq),
  flags: JSON.parse(r.flags as string),
  internalDate: new Date(Number(r.internal_date)),
  size: Number(r.size),
  blobId: r.blob_id as string,
  structure: JSON.parse(r.structure as string),
});

const toQueueEntry = (r: Row): QueueEntry => ({
  id: r.id as string,
  sender: r.sender as string,
  recipients: (JSON.parse(r.recipients as string) as Array<QueueRecipient & { lastAttemptAt?: string }>).map(
    (rc) => ({ ...rc, ...(rc.lastAttemptAt ? { lastAttemptAt: new Date(rc.lastAttemptAt) } : {}) }),
  ),
  blobId: r.blob_id as string,
  size: Number(r.size),
  createdAt: new Date(Number(r.created_at)),
  nextAttemptAt: new Date(Number(r.next_attempt_at)),
  attempts: Number(r.attempts),
  held: r.held === 1,
  leaseOwner: (r.lease_owner as string | null) ?? null,
  leaseUntil: r.lease_until === null ? null : new Date(Number(r.lease_until)),
  meta: JSON.parse(r.meta as string),
});

const toSieve = (r: Row): SieveScript => ({
  accountId: String(r.account_id),
  name: r.name as string,
  content: r.content as string,
  active: r.active === 1,
  updatedAt: new Date(Number(r.updated_at)),
});

/** SQLite integer ids travel as decimal strings; anything else can match nothing. */
function rowId(id: string): number {
  return /^[1-9][0-9]{0,15}$/.test(id) ? Number(id) : -1;
}

function tryNormalize<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

const MAX_ALIAS_TARGETS = 1000;
const MAX_SIEVE_NAME = 128;

export class SqliteMailStore implements MailStore {
  readonly blobs: BlobStore;
  private readonly db: DatabaseSync;
  private readonly writer: GroupCommit;
  private readonly onClose: () => Promise<void>;

  constructor(
    db: DatabaseSync,
    writer: GroupCommit,
    blobs: BlobStore,
    onClose: () => Promise<void> = async () => {},
  ) {
    this.db = db;
    this.writer = writer;
    this.blobs = blobs;
    this.onClose = onClose;
  }

  async close(): Promise<void> {
    // Writes are committed in order: once this empty one settles, every earlier one has.
    if (this.db.isOpen) await this.writer.write(() => undefined);
    if (this.db.isOpen) this.db.close();
    await this.onClose();
  }

  /** Prepared statements by SQL text: preparing costs more than running most of ours. */
  private readonly statements = new Map<string, StatementSync>();

  private stmt(sql: string): StatementSync {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  private get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }

  private all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.stmt(sql).all(...params) as Row[];
  }

  private run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.stmt(sql).run(...params).changes);
  }

  /** A write, committed (and synced) together with the writes issued alongside it; see GroupCommit. */
  private tx<T>(fn: () => T): Promise<T> {
    return this.writer.write(fn);
  }

  /**
   * Removes bodies kept in SQLite that no message and no queue entry refers to
   * any more. Runs inside the write that dropped the last reference, so a
   * concurrent delivery of the same content (same id) either sees the blob or
   * stores it again. Bodies in files are not collected yet (see the notes).
   */
  private dropUnusedBlobs(ids: Iterable<string>): void {
    if (!(this.blobs instanceof SqliteBlobStore)) return;
    for (const id of new Set(ids)) {
      this.run(
        `DELETE FROM blobs WHERE id = ?
         AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?)
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = ?)`,
        id,
        id,
        id,
      );
    }
  }

  private blobIdsWhere(sql: string, ...params: SQLInputValue[]): string[] {
    return this.all(sql, ...params).map((r) => r.blob_id as string);
  }

  /** A write that also stores a not yet stored blob: in the same transaction when bodies live in SQLite. */
  private async txWithBlob<T>(blobId: string, data: Buffer | undefined, fn: () => T): Promise<T> {
    if (!data) return this.tx(fn);
    if (contentId(data) !== blobId) throw new StoreError('invalid', 'blobId is not the content id of data');
    const blobs = this.blobs;
    if (blobs instanceof SqliteBlobStore) {
      return this.tx(() => {
        blobs.insertInTransaction(blobId, data);
        return fn();
      });
    }
    await blobs.put(data);
    return this.tx(fn);
  }

  // ---- domains -------------------------------------------------------------

  async addDomain(name: string): Promise<Domain> {
    const domain = normalizeDomain(name);
    const now = Date.now();
    await this.tx(() =>
      uniqueAs(`domain ${domain} exists already`, () =>
        this.run('INSERT INTO domains (name, created_at) VALUES (?, ?)', domain, now),
      ),
    );
    return { name: domain, createdAt: new Date(now) };
  }

  async getDomain(name: string): Promise<Domain | null> {
    const domain = tryNormalize(() => normalizeDomain(name));
    if (!domain) return null;
    const r = this.get('SELECT * FROM domains WHERE name = ?', domain);
    return r ? { name: r.name as string, createdAt: new Date(Number(r.created_at)) } : null;
  }

  async listDomains(): Promise<Domain[]> {
    return this.all('SELECT * FROM domains ORDER BY name').map((r) => ({
      name: r.name as string,
      createdAt: new Date(Number(r.created_at)),
    }));
  }

  async removeDomain(name: string, options: { force?: boolean } = {}): Promise<void> {
    const domain = normalizeDomain(name);
    await this.tx(() => {
      if (!this.get('SELECT 1 FROM domains WHERE name = ?', domain)) {
        throw new StoreError('not_found', `no domain ${domain}`);
      }
      const accounts = Number(this.get('SELECT count(*) AS n FROM accounts WHERE domain = ?', domain)!.n);
      const aliases = Number(this.get('SELECT count(*) AS n FROM aliases WHERE domain = ?', domain)!.n);
      if ((accounts > 0 || aliases > 0) && !options.force) {
        throw new StoreError(
          'conflict',
          `domain ${domain} still has ${accounts} account(s) and ${aliases} alias(es)`,
        );
      }
      const blobs = this.blobIdsWhere(
        'SELECT DISTINCT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id WHERE a.domain = ?',
        domain,
      );
      this.run('DELETE FROM accounts WHERE domain = ?', domain);
      this.dropUnusedBlobs(blobs);
      this.run('DELETE FROM aliases WHERE domain = ?', domain);
      this.run('DELETE FROM domains WHERE name = ?', domain);
    });
  }

  // ---- accounts ------------------------------------------------------------

  async createAccount(input: NewAccount): Promise<Account> {
    const { address, domain } = parseAddress(input.address);
    const boxes = (input.mailboxes ?? []).map((b) => ({
      name: normalizeMailboxName(b.name),
      specialUse: b.specialUse ?? null,
    }));
    const quota = input.quotaBytes ?? null;
    if (quota !== null && (!Number.isSafeInteger(quota) || quota < 0)) {
      throw new StoreError('invalid', `invalid quota ${quota}`);
    }
    const id = await this.tx(() => {
      if (!this.get('SELECT 1 FROM domains WHERE name = ?', domain)) {
        throw new StoreError('not_found', `domain ${domain} is not a local domain; add it first`);
      }
      if (this.get('SELECT 1 FROM aliases WHERE address = ?', address)) {
        throw new StoreError('exists', `${address} is an alias already`);
      }
      const row = uniqueAs(`account ${address} exists already`, () =>
        this.get(
          `INSERT INTO accounts (address, domain, display_name, password_hash, quota_bytes, created_at)
           VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
          address,
          domain,
          input.displayName ?? '',
          input.passwordHash,
          quota,
          Date.now(),
        ),
      )!;
      const accountId = Number(row.id);
      for (const box of boxes) this.insertMailboxTree(accountId, box.name, box.specialUse, true);
      return accountId;
    });
    return (await this.getAccount(String(id)))!;
  }

  async getAccount(id: string): Promise<Account | null> {
    const r = this.get('SELECT * FROM accounts WHERE id = ?', rowId(id));
    return r ? toAccount(r) : null;
  }

  async getAccountByAddress(address: string): Promise<Account | null> {
    const canonical = tryNormalize(() => normalizeAddress(address));
    if (!canonical) return null;
    const r = this.get('SELECT * FROM accounts WHERE address = ?', canonical);
    return r ? toAccount(r) : null;
  }

  async listAccounts(filter: { domain?: string } = {}): Promise<Account[]> {
    if (filter.domain !== undefined) {
      const domain = normalizeDomain(filter.domain);
      return this.all('SELECT * FROM accounts WHERE domain = ? ORDER BY address', domain).map(toAccount);
    }
    return this.all('SELECT * FROM accounts ORDER BY address').map(toAccount);
  }

  async updateAccount(id: string, patch: AccountPatch): Promise<Account> {
    const sets: string[] = [];
    const params: SQLInputValue[] = [];
    if (patch.passwordHash !== undefined) {
      sets.push('password_hash = ?');
      params.push(patch.passwordHash);
    }
    if (patch.displayName !== undefined) {
      sets.push('display_name = ?');
      params.push(patch.displayName);
    }
    if (patch.quotaBytes !== undefined) {
      const q = patch.quotaBytes;
      if (q !== null && (!Number.isSafeInteger(q) || q < 0))
        throw new StoreError('invalid', `invalid quota ${q}`);
      sets.push('quota_bytes = ?');
      params.push(q);
    }
    if (patch.disabled !== undefined) {
      sets.push('disabled = ?');
      params.push(patch.disabled ? 1 : 0);
    }
    const r =
      sets.length > 0
        ? await this.tx(() =>
            this.get(`UPDATE accounts SET ${sets.join(', ')} WHERE id = ? RETURNING *`, ...params, rowId(id)),
          )
        : this.get('SELECT * FROM accounts WHERE id = ?', rowId(id));
    if (!r) throw new StoreError('not_found', `no account ${id}`);
    return toAccount(r);
  }

  async removeAccount(id: string): Promise<void> {
    // Mailboxes, messages, journal and Sieve scripts go by ON DELETE CASCADE.
    const removed = await this.tx(() => {
      const blobs = this.blobIdsWhere(
        'SELECT DISTINCT blob_id FROM messages WHERE account_id = ?',
        rowId(id),
      );
      const n = this.run('DELETE FROM accounts WHERE id = ?', rowId(id));
      this.dropUnusedBlobs(blobs);
      return n;
    });
    if (removed === 0) {
      throw new StoreError('not_found', `no account ${id}`);
    }
  }

  // ---- aliases -------------------------------------------------------------

  async addAlias(input: { address: string; targets: string[] }): Promise<Alias> {
    const { address, domain } = normalizeAliasSource(input.address);
    if (input.targets.length === 0)
      throw new StoreError('invalid', `alias ${address} needs at least one target`);
    if (input.targets.length > MAX_ALIAS_TARGETS) {
      throw new StoreError('invalid', `alias ${address} has more than ${MAX_ALIAS_TARGETS} targets`);
    }
    const targets = [...new Set(input.targets.map(normalizeAddress))];
    const now = Date.now();
    await this.tx(() => {
      if (!this.get('SELECT 1 FROM domains WHERE name = ?', domain)) {
        throw new StoreError('not_found', `domain ${domain} is not a local domain; add it first`);
      }
      if (this.get('SELECT 1 FROM accounts WHERE address = ?', address)) {
        throw new StoreError('exists', `${address} is an account already`);
      }
      uniqueAs(`alias ${address} exists already`, () =>
        this.run(
          'INSERT INTO aliases (address, domain, targets, created_at) VALUES (?, ?, ?, ?)',
          address,
          domain,
          JSON.stringify(targets),
          now,
        ),
      );
    });
    return { address, domain, targets, createdAt: new Date(now) };
  }

  async getAlias(address: string): Promise<Alias | null> {
    const source = tryNormalize(() => normalizeAliasSource(address));
    if (!source) return null;
    const r = this.get('SELECT * FROM aliases WHERE address = ?', source.address);
    return r ? toAlias(r) : null;
  }

  async listAliases(filter: { domain?: string } = {}): Promise<Alias[]> {
    if (filter.domain !== undefined) {
      return this.all(
        'SELECT * FROM aliases WHERE domain = ? ORDER BY address',
        normalizeDomain(filter.domain),
      ).map(toAlias);
    }
    return this.all('SELECT * FROM aliases ORDER BY address').map(toAlias);
  }

  async removeAlias(address: string): Promise<void> {
    const { address: source } = normalizeAliasSource(address);
    if ((await this.tx(() => this.run('DELETE FROM aliases WHERE address = ?', source))) === 0) {
      throw new StoreError('not_found', `no alias ${source}`);
    }
  }

  // ---- mailboxes -----------------------------------------------------------

  /**
   * A new UIDVALIDITY for the account: the current time in seconds, or one
   * more than the last one handed out, whichever is larger, so a mailbox
   * deleted and re-created under the same name never repeats a value
   * (RFC 3501 §2.3.1.1). Must run inside a transaction.
   */
  private nextUidValidity(accountId: number): number {
    const now = Math.floor(Date.now() / 1000);
    const r = this.get(
      'UPDATE accounts SET last_uid_validity = max(?, last_uid_validity + 1) WHERE id = ? RETURNING last_uid_validity',
      now,
      accountId,
    );
    if (!r) throw new StoreError('not_found', `no account ${accountId}`);
    return Number(r.last_uid_validity);
  }

  /** Inserts `name` and any missing parents. Must run inside a transaction. */
  private insertMailboxTree(
    accountId: number,
    name: string,
    specialUse: SpecialUse | null,
    subscribed: boolean,
    failIfExists = true,
  ): Row {
    for (const parent of parentNames(name)) {
      if (!this.get('SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?', accountId, parent)) {
        this.insertMailbox(accountId, parent, null, false);
      }
    }
    const existing = this.get('SELECT * FROM mailboxes WHERE account_id = ? AND name = ?', accountId, name);
    if (existing) {
      if (failIfExists) throw new StoreError('exists', `mailbox ${name} exists already`);
      return existing;
    }
    return this.insertMailbox(accountId, name, specialUse, subscribed);
  }

  private insertMailbox(
    accountId: number,
    name: string,
    specialUse: SpecialUse | null,
    subscribed: boolean,
  ): Row {
    return this.get(
      `INSERT INTO mailboxes (account_id, name, special_use, subscribed, uid_validity, created_at)
       VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
      accountId,
      name,
      specialUse,
      subscribed ? 1 : 0,
      this.nextUidValidity(accountId),
      Date.now(),
    )!;
  }

  async createMailbox(
    accountId: string,
    name: string,
    options: { specialUse?: SpecialUse | null; subscribed?: boolean } = {},
  ): Promise<Mailbox> {
    const canonical = normalizeMailboxName(name);
    const row = await this.tx(() =>
      this.insertMailboxTree(
        rowId(accountId),
        canonical,
        options.specialUse ?? null,
        options.subscribed ?? false,
      ),
    );
    return toMailbox(row);
  }

  async getMailbox(accountId: string, name: string): Promise<Mailbox | null> {
    const canonical = tryNormalize(() => normalizeMailboxName(name));
    if (!canonical) return null;
    const r = this.get(
      'SELECT * FROM mailboxes WHERE account_id = ? AND name = ?',
      rowId(accountId),
      canonical,
    );
    return r ? toMailbox(r) : null;
  }

  async getMailboxById(id: string): Promise<Mailbox | null> {
    const r = this.get('SELECT * FROM mailboxes WHERE id = ?', rowId(id));
    return r ? toMailbox(r) : null;
  }

  async listMailboxes(accountId: string): Promise<Mailbox[]> {
    return this.all('SELECT * FROM mailboxes WHERE account_id = ? ORDER BY name', rowId(accountId)).map(
      toMailbox,
    );
  }

  async renameMailbox(accountId: string, from: string, to: string): Promise<Mailbox> {
    const src = normalizeMailboxName(from);
    const dst = normalizeMailboxName(to);
    if (src === 'INBOX') throw new StoreError('invalid', 'INBOX cannot be renamed in the store');
    if (dst === 'INBOX' || isSameOrChild(dst, src)) {
      throw new StoreError('invalid', `cannot rename ${src} to ${dst}`);
    }
    const acc = rowId(accountId);
    const row = await this.tx(() => {
      const source = this.get('SELECT * FROM mailboxes WHERE account_id = ? AND name = ?', acc, src);
      if (!source) throw new StoreError('not_found', `no mailbox ${src}`);
      const tree = this.all('SELECT id, name FROM mailboxes WHERE account_id = ?', acc).filter((r) =>
        isSameOrChild(r.name as string, src),
      );
      const renamed = tree.map((r) => ({
        id: Number(r.id),
        name: dst + (r.name as string).slice(src.length),
      }));
      for (const r of renamed) {
        if (this.get('SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?', acc, r.name)) {
          throw new StoreError('exists', `mailbox ${r.name} exists already`);
        }
      }
      for (const r of renamed) this.run('UPDATE mailboxes SET name = ? WHERE id = ?', r.name, r.id);
      for (const parent of parentNames(dst)) {
        if (!this.get('SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?', acc, parent)) {
          this.insertMailbox(acc, parent, null, false);
        }
      }
      return this.get('SELECT * FROM mailboxes WHERE id = ?', Number(source.id))!;
    });
    return toMailbox(row);
  }

  async deleteMailbox(accountId: string, name: string): Promise<void> {
    const canonical = normalizeMailboxName(name);
    if (canonical === 'INBOX') throw new StoreError('invalid', 'INBOX cannot be deleted');
    const acc = rowId(accountId);
    await this.tx(() => {
      const box = this.get('SELECT id FROM mailboxes WHERE account_id = ? AND name = ?', acc, canonical);
      if (!box) throw new StoreError('not_found', `no mailbox ${canonical}`);
      const size = Number(
        this.get('SELECT coalesce(sum(size), 0) AS s FROM messages WHERE mailbox_id = ?', box.id!)!.s,
      );
      this.run('UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?', size, acc);
      const blobs = this.blobIdsWhere('SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?', box.id!);
      this.run('DELETE FROM mailboxes WHERE id = ?', box.id!);
      this.dropUnusedBlobs(blobs);
    });
  }

  async setSubscribed(mailboxId: string, subscribed: boolean): Promise<void> {
    if (
      (await this.tx(() =>
        this.run('UPDATE mailboxes SET subscribed = ? WHERE id = ?', subscribed ? 1 : 0, rowId(mailboxId)),
      )) === 0
    ) {
      throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    }
  }

  async mailboxStatus(mailboxId: string): Promise<MailboxStatus> {
    const box = this.get('SELECT * FROM mailboxes WHERE id = ?', rowId(mailboxId));
    if (!box) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    const c = this.get(
      `SELECT count(*) AS n, coalesce(sum(size), 0) AS s, coalesce(sum(seen = 0), 0) AS u
       FROM messages WHERE mailbox_id = ?`,
      box.id!,
    )!;
    return {
      messages: Number(c.n),
      unseen: Number(c.u),
      size: Number(c.s),
      uidNext: Number(box.uid_next),
      uidValidity: Number(box.uid_validity),
      highestModseq: Number(box.highest_modseq),
    };
  }

  // ---- messages ------------------------------------------------------------

  private mailboxRow(id: number): Row {
    const box = this.get('SELECT * FROM mailboxes WHERE id = ?', id);
    if (!box) throw new StoreError('not_found', `no mailbox ${id}`);
    return box;
  }

  /** Reserves `size` bytes of the account's quota. Must run inside a transaction. */
  private chargeQuota(accountId: number, size: number, enforce: boolean): void {
    const acc = this.get('SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?', accountId);
    if (!acc) throw new StoreError('not_found', `no account ${accountId}`);
    if (
      enforce &&
      size > 0 &&
      acc.quota_bytes !== null &&
      Number(acc.used_bytes) + size > Number(acc.quota_bytes)
    ) {
      throw new StoreError(
        'over_quota',
        `quota exceeded (${acc.used_bytes} of ${acc.quota_bytes} bytes used)`,
      );
    }
    this.run('UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?', size, accountId);
  }

  /** Takes `count` UIDs and one MODSEQ from the mailbox. Must run inside a transaction. */
  private allocate(mailboxId: number, count: number): { firstUid: number; modseq: number } {
    const r = this.get(
      `UPDATE mailboxes SET uid_next = uid_next + ?, highest_modseq = highest_modseq + 1
       WHERE id = ? RETURNING uid_next, highest_modseq`,
      count,
      mailboxId,
    );
    if (!r) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    return { firstUid: Number(r.uid_next) - count, modseq: Number(r.highest_modseq) };
  }

  private journal(mailboxId: number, modseq: number, kind: ChangeKind, uid: number, flags?: string[]): void {
    this.run(
      'INSERT INTO journal (mailbox_id, modseq, kind, uid, flags) VALUES (?, ?, ?, ?, ?)',
      mailboxId,
      modseq,
      kind,
      uid,
      flags ? JSON.stringify(flags) : null,
    );
  }

  private insertMessage(
    r: { accountId: number; mailboxId: number; uid: number; modseq: number; flags: string[] },
    m: {
      internalDate: number;
      size: number;
      blobId: string;
      structure: string;
      deliveryKey?: string | undefined;
    },
  ): Row {
    return this.get(
      `INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, seen, internal_date, size, blob_id, structure, delivery_key)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      r.accountId,
      r.mailboxId,
      r.uid,
      r.modseq,
      JSON.stringify(r.flags),
      hasFlag(r.flags, '\\Seen') ? 1 : 0,
      m.internalDate,
      m.size,
      m.blobId,
      m.structure,
      m.deliveryKey ?? null,
    )!;
  }

  async appendMessage(input: NewMessage): Promise<Message> {
    const flags = normalizeFlags(input.flags ?? []);
    const accountId = rowId(input.accountId);
    const mailboxId = rowId(input.mailboxId);
    const structure = JSON.stringify(input.structure);
    const row = await this.txWithBlob(input.blobId, input.data, () => {
      const box = this.mailboxRow(mailboxId);
      if (Number(box.account_id) !== accountId)
        throw new StoreError('not_found', `no mailbox ${input.mailboxId}`);
      if (
        input.deliveryKey !== undefined &&
        this.get(
          'SELECT 1 FROM messages WHERE account_id = ? AND delivery_key = ?',
          accountId,
          input.deliveryKey,
        )
      ) {
        throw new StoreError('exists', `already delivered (${input.deliveryKey})`);
      }
      this.chargeQuota(accountId, input.size, input.enforceQuota ?? true);
      const { firstUid, modseq } = this.allocate(mailboxId, 1);
      const inserted = this.insertMessage(
        { accountId, mailboxId, uid: firstUid, modseq, flags },
        {
          internalDate: (input.internalDate ?? new Date()).getTime(),
          size: input.size,
          blobId: input.blobId,
          structure,
          deliveryKey: input.deliveryKey,
        },
      );
      this.journal(mailboxId, modseq, 'append', firstUid, flags);
      return inserted;
    });
    return toMessage(row);
  }

  async getMessage(mailboxId: string, uid: number): Promise<Message | null> {
    const r = this.get('SELECT * FROM messages WHERE mailbox_id = ? AND uid = ?', rowId(mailboxId), uid);
    return r ? toMessage(r) : null;
  }

  async listMessages(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<Message[]> {
    return this.all(
      'SELECT * FROM messages WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid',
      rowId(mailboxId),
      range.uidFrom ?? 1,
      range.uidTo ?? Number.MAX_SAFE_INTEGER,
    ).map(toMessage);
  }

  private selectUids(mailboxId: number, uids: number[]): Row[] {
    return this.all(
      'SELECT * FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid',
      mailboxId,
      JSON.stringify(uids),
    );
  }

  async updateFlags(mailboxId: string, uids: number[], update: FlagUpdate): Promise<FlagUpdateResult> {
    normalizeFlags(update.flags);
    const box = rowId(mailboxId);
    return this.tx(() => {
      this.mailboxRow(box);
      const modified: number[] = [];
      const changes: Array<{ id: number; uid: number; flags: string[] }> = [];
      for (const r of this.selectUids(box, uids)) {
        if (update.unchangedSince !== undefined && Number(r.modseq) > update.unchangedSince) {
          modified.push(Number(r.uid));
          continue;
        }
        const next = applyFlagOperation(JSON.parse(r.flags as string), update.op, update.flags);
        if (next) changes.push({ id: Number(r.id), uid: Number(r.uid), flags: next });
      }
      const updated: Message[] = [];
      if (changes.length > 0) {
        // One MODSEQ for the whole STORE, as RFC 7162 §3.1 allows.
        const { modseq } = this.allocate(box, 0);
        for (const c of changes) {
          const row = this.get(
            'UPDATE messages SET flags = ?, seen = ?, modseq = ? WHERE id = ? RETURNING *',
            JSON.stringify(c.flags),
            hasFlag(c.flags, '\\Seen') ? 1 : 0,
            modseq,
            c.id,
          )!;
          this.journal(box, modseq, 'flags', c.uid, c.flags);
          updated.push(toMessage(row));
        }
      }
      return { updated, modified };
    });
  }

  /** Copies inside the current transaction; `chargeQuota: false` for MOVE, whose net size change is zero. */
  private copyInTx(
    from: number,
    uids: number[],
    to: number,
    enforce: boolean,
    charge: boolean,
  ): CopyResult & { rows: Row[] } {
    const src = this.mailboxRow(from);
    const dst = this.mailboxRow(to);
    if (Number(src.account_id) !== Number(dst.account_id)) {
      throw new StoreError('invalid', 'messages can only be copied between mailboxes of one account');
    }
    const rows = this.selectUids(from, uids);
    if (rows.length === 0) return { uidValidity: Number(dst.uid_validity), uids: [], rows };
    const accountId = Number(src.account_id);
    if (charge) {
      this.chargeQuota(
        accountId,
        rows.reduce((s, r) => s + Number(r.size), 0),
        enforce,
      );
    }
    const { firstUid, modseq } = this.allocate(to, rows.length);
    const pairs: Array<[number, number]> = [];
    rows.forEach((r, i) => {
      const uid = firstUid + i;
      const flags = JSON.parse(r.flags as string) as string[];
      this.insertMessage(
        { accountId, mailboxId: to, uid, modseq, flags },
        {
          internalDate: Number(r.internal_date),
          size: Number(r.size),
          blobId: r.blob_id as string,
          structure: r.structure as string,
        },
      );
      this.journal(to, modseq, 'append', uid, flags);
      pairs.push([Number(r.uid), uid]);
    });
    return { uidValidity: Number(dst.uid_validity), uids: pairs, rows };
  }

  /** Expunges inside the current transaction; `refund: false` for MOVE. */
  private expungeInTx(mailboxId: number, rows: Row[], refund: boolean): number[] {
    if (rows.length === 0) return [];
    const { modseq } = this.allocate(mailboxId, 0);
    let size = 0;
    for (const r of rows) {
      this.run('DELETE FROM messages WHERE id = ?', Number(r.id));
      this.journal(mailboxId, modseq, 'expunge', Number(r.uid));
      size += Number(r.size);
    }
    if (refund)
      this.run(
        'UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?',
        size,
        Number(rows[0]!.account_id),
      );
    this.dropUnusedBlobs(rows.map((r) => r.blob_id as string));
    return rows.map((r) => Number(r.uid));
  }

  async copyMessages(
    fromMailboxId: string,
    uids: number[],
    toMailboxId: string,
    options: { enforceQuota?: boolean } = {},
  ): Promise<CopyResult> {
    const { uidValidity, uids: pairs } = await this.tx(() =>
      this.copyInTx(rowId(fromMailboxId), uids, rowId(toMailboxId), options.enforceQuota ?? true, true),
    );
    return { uidValidity, uids: pairs };
  }

  async moveMessages(fromMailboxId: string, uids: number[], toMailboxId: string): Promise<CopyResult> {
    const from = rowId(fromMailboxId);
    return this.tx(() => {
      const { uidValidity, uids: pairs, rows } = this.copyInTx(from, uids, rowId(toMailboxId), false, false);
      this.expungeInTx(from, rows, false);
      return { uidValidity, uids: pairs };
    });
  }

  async expungeMessages(mailboxId: string, uids: number[]): Promise<number[]> {
    const box = rowId(mailboxId);
    return this.tx(() => {
      this.mailboxRow(box);
      return this.expungeInTx(box, this.selectUids(box, uids), true);
    });
  }

  async changesSince(mailboxId: string, modseq: number): Promise<Change[]> {
    return this.all(
      'SELECT * FROM journal WHERE mailbox_id = ? AND modseq > ? ORDER BY modseq, id',
      rowId(mailboxId),
      modseq,
    ).map((r) => ({
      mailboxId: String(r.mailbox_id),
      modseq: Number(r.modseq),
      kind: r.kind as ChangeKind,
      uid: Number(r.uid),
      ...(r.flags !== null ? { flags: JSON.parse(r.flags as string) } : {}),
    }));
  }

  async recalculateQuota(accountId: string): Promise<number> {
    const acc = rowId(accountId);
    return this.tx(() => {
      const used = Number(
        this.get('SELECT coalesce(sum(size), 0) AS s FROM messages WHERE account_id = ?', acc)!.s,
      );
      if (this.run('UPDATE accounts SET used_bytes = ? WHERE id = ?', used, acc) === 0) {
        throw new StoreError('not_found', `no account ${accountId}`);
      }
      return used;
    });
  }

  // ---- queue ---------------------------------------------------------------

  async enqueue(input: NewQueueEntry): Promise<QueueEntry> {
    if (input.recipients.length === 0)
      throw new StoreError('invalid', 'a queue entry needs at least one recipient');
    const now = Date.now();
    // Sortable by time, unique across processes.
    const id = now.toString(36).padStart(9, '0') + randomBytes(5).toString('hex');
    const recipients: QueueRecipient[] = input.recipients.map((r) => ({
      address: r.address,
      state: 'pending',
      attempts: 0,
      ...(r.orcpt !== undefined ? { orcpt: r.orcpt } : {}),
      ...(r.notify !== undefined ? { notify: r.notify } : {}),
    }));
    const row = await this.txWithBlob(
      input.blobId,
      input.data,
      () =>
        this.get(
          `INSERT INTO queue (id, sender, recipients, blob_id, size, created_at, next_attempt_at, meta)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
          id,
          input.sender,
          JSON.stringify(recipients),
          input.blobId,
          input.size,
          now,
          (input.nextAttemptAt ?? new Date(now)).getTime(),
          JSON.stringify(input.meta ?? {}),
        )!,
    );
    return toQueueEntry(row);
  }

  async leaseQueue(request: LeaseRequest): Promise<QueueEntry[]> {
    const now = (request.now ?? new Date()).getTime();
    // One statement: the subquery and the update run under one write lock, so no
    // entry can be claimed by two workers.
    const rows = await this.tx(() =>
      this.all(
        `UPDATE queue SET lease_owner = ?, lease_until = ?
       WHERE id IN (
         SELECT id FROM queue
         WHERE held = 0 AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
         ORDER BY next_attempt_at LIMIT ?)
       RETURNING *`,
        request.owner,
        now + request.leaseMs,
        now,
        now,
        request.limit,
      ),
    );
    return rows.map(toQueueEntry).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
  }

  async recordAttempt(id: string, owner: string, attempt: AttemptResult): Promise<QueueEntry> {
    const row = await this.tx(() => {
      const r = this.get('SELECT * FROM queue WHERE id = ?', id);
      if (!r) throw new StoreError('not_found', `no queue entry ${id}`);
      if (r.lease_owner !== owner)
        throw new StoreError('lease_lost', `queue entry ${id} is not leased by ${owner}`);
      const entry = toQueueEntry(r);
      const at = new Date();
      const byAddress = new Map(attempt.results.map((x) => [x.address, x]));
      const recipients = entry.recipients.map((rc) => {
        const res = byAddress.get(rc.address);
        if (!res || rc.state !== 'pending') return rc;
        return {
          ...rc,
          state: res.state,
          attempts: rc.attempts + 1,
          lastAttemptAt: at,
          ...(res.reply !== undefined ? { lastReply: res.reply } : {}),
        };
      });
      const updated = this.get(
        `UPDATE queue SET recipients = ?, attempts = attempts + 1, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL
         WHERE id = ? RETURNING *`,
        JSON.stringify(recipients),
        attempt.nextAttemptAt.getTime(),
        id,
      )!;
      if (!recipients.some((rc) => rc.state === 'pending')) {
        this.run('DELETE FROM queue WHERE id = ?', id);
        this.dropUnusedBlobs([entry.blobId]);
      }
      return updated;
    });
    return toQueueEntry(row);
  }

  async releaseLease(id: string, owner: string): Promise<void> {
    await this.tx(() =>
      this.run(
        'UPDATE queue SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?',
        id,
        owner,
      ),
    );
  }

  async getQueueEntry(id: string): Promise<QueueEntry | null> {
    const r = this.get('SELECT * FROM queue WHERE id = ?', id);
    return r ? toQueueEntry(r) : null;
  }

  async listQueue(): Promise<QueueEntry[]> {
    return this.all('SELECT * FROM queue ORDER BY created_at, id').map(toQueueEntry);
  }

  async removeQueueEntry(id: string): Promise<void> {
    const removed = await this.tx(() => {
      const row = this.get('SELECT blob_id FROM queue WHERE id = ?', id);
      const n = this.run('DELETE FROM queue WHERE id = ?', id);
      if (row) this.dropUnusedBlobs([row.blob_id as string]);
      return n;
    });
    if (removed === 0) throw new StoreError('not_found', `no queue entry ${id}`);
  }

  async setQueueHeld(id: string, held: boolean): Promise<QueueEntry> {
    const r = await this.tx(() =>
      this.get('UPDATE queue SET held = ? WHERE id = ? RETURNING *', held ? 1 : 0, id),
    );
    if (!r) throw new StoreError('not_found', `no queue entry ${id}`);
    return toQueueEntry(r);
  }

  async retryQueueEntry(id: string, now: Date = new Date()): Promise<QueueEntry> {
    const r = await this.tx(() =>
      this.get('UPDATE queue SET next_attempt_at = ? WHERE id = ? RETURNING *', now.getTime(), id),
    );
    if (!r) throw new StoreError('not_found', `no queue entry ${id}`);
    return toQueueEntry(r);
  }

  // ---- sieve ---------------------------------------------------------------

  async putSieveScript(accountId: string, name: string, content: string): Promise<SieveScript> {
    if (name.length === 0 || name.length > MAX_SIEVE_NAME || /[\u0000-\u001f\u007f/]/.test(name)) {
      throw new StoreError('invalid', `invalid Sieve script name "${name}"`);
    }
    const acc = rowId(accountId);
    const row = await this.tx(() => {
      if (!this.get('SELECT 1 FROM accounts WHERE id = ?', acc))
        throw new StoreError('not_found', `no account ${accountId}`);
      return this.get(
        `INSERT INTO sieve_scripts (account_id, name, content, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content, updated_at = excluded.updated_at
         RETURNING *`,
        acc,
        name,
        content,
        Date.now(),
      )!;
    });
    return toSieve(row);
  }

  async getSieveScript(accountId: string, name: string): Promise<SieveScript | null> {
    const r = this.get(
      'SELECT * FROM sieve_scripts WHERE account_id = ? AND name = ?',
      rowId(accountId),
      name,
    );
    return r ? toSieve(r) : null;
  }

  async listSieveScripts(accountId: string): Promise<SieveScript[]> {
    return this.all('SELECT * FROM sieve_scripts WHERE account_id = ? ORDER BY name', rowId(accountId)).map(
      toSieve,
    );
  }

  async deleteSieveScript(accountId: string, name: string): Promise<void> {
    const acc = rowId(accountId);
    await this.tx(() => {
      const r = this.get('SELECT active FROM sieve_scripts WHERE account_id = ? AND name = ?', acc, name);
      if (!r) throw new StoreError('not_found', `no Sieve script ${name}`);
      if (r.active === 1) throw new StoreError('conflict', `Sieve script ${name} is active`);
      this.run('DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?', acc, name);
    });
  }

  async setActiveSieveScript(accountId: string, name: string | null): Promise<void> {
    const acc = rowId(accountId);
    await this.tx(() => {
      if (
        name !== null &&
        !this.get('SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?', acc, name)
      ) {
        throw new StoreError('not_found', `no Sieve script ${name}`);
      }
      this.run('UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1', acc);
      if (name !== null)
        this.run('UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?', acc, name);
    });
  }

  async getActiveSieveScript(accountId: string): Promise<SieveScript | null> {
    const r = this.get('SELECT * FROM sieve_scripts WHERE account_id = ? AND active = 1', rowId(accountId));
    return r ? toSieve(r) : null;
  }
}
