import { randomBytes } from 'node:crypto';
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
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
  normalizeAddress,
  normalizeAliasSource,
  normalizeDomain,
  normalizeFlags,
  normalizeMailboxName,
  packSortFields,
  parentNames,
  parseAddress,
  type QueueEntry,
  type RemoteAccount,
  type RemoteAccountUpdate,
  remoteAccountStart,
  type SieveScript,
  type SpecialUse,
  StoreError,
  sortFieldsOf,
  type TlsItem,
  unpackSortFields,
} from '@mailwerk/store';
import { type GroupCommit, uniqueAs } from './db.ts';
import { SqliteDkim } from './dkim.ts';
import { SqliteQueue } from './queue.ts';
import { toAccount, toAlias, toMailbox, toMessage, toMessageMeta, toTlsItem } from './rows.ts';
import { SqliteSieve } from './sieve.ts';
import { type Row, rowId, Sql } from './sql.ts';

function tryNormalize<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

const MAX_ALIAS_TARGETS = 1000;

export class SqliteMailStore implements MailStore {
  readonly blobs: BlobStore;
  private readonly db: DatabaseSync;
  private readonly writer: GroupCommit;
  private readonly sql: Sql;
  private readonly queue: SqliteQueue;
  private readonly sieve: SqliteSieve;
  private readonly dkim: SqliteDkim;
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
    this.sql = new Sql(db, writer, blobs);
    this.queue = new SqliteQueue(this.sql);
    this.sieve = new SqliteSieve(this.sql);
    this.dkim = new SqliteDkim(this.sql);
    this.onClose = onClose;
  }

  async close(): Promise<void> {
    // Writes are committed in order: once this empty one settles, every earlier one has.
    if (this.db.isOpen) await this.writer.write(() => undefined);
    this.writer.close();
    if (this.db.isOpen) this.db.close();
    await this.onClose();
  }

  // ---- domains -------------------------------------------------------------

  async addDomain(name: string): Promise<Domain> {
    const domain = normalizeDomain(name);
    const now = Date.now();
    await this.sql.tx(() =>
      uniqueAs(`domain ${domain} exists already`, () =>
        this.sql.run('INSERT INTO domains (name, created_at) VALUES (?, ?)', domain, now),
      ),
    );
    return { name: domain, createdAt: new Date(now) };
  }

  async getDomain(name: string): Promise<Domain | null> {
    const domain = tryNormalize(() => normalizeDomain(name));
    if (!domain) return null;
    const r = this.sql.get('SELECT * FROM domains WHERE name = ?', domain);
    return r ? { name: r.name as string, createdAt: new Date(Number(r.created_at)) } : null;
  }

  async listDomains(): Promise<Domain[]> {
    return this.sql.all('SELECT * FROM domains ORDER BY name').map((r) => ({
      name: r.name as string,
      createdAt: new Date(Number(r.created_at)),
    }));
  }

  async removeDomain(name: string, options: { force?: boolean } = {}): Promise<void> {
    const domain = normalizeDomain(name);
    await this.sql.tx(() => {
      if (!this.sql.get('SELECT 1 FROM domains WHERE name = ?', domain)) {
        throw new StoreError('not_found', `no domain ${domain}`);
      }
      const accounts = Number(this.sql.get('SELECT count(*) AS n FROM accounts WHERE domain = ?', domain)!.n);
      const aliases = Number(this.sql.get('SELECT count(*) AS n FROM aliases WHERE domain = ?', domain)!.n);
      if ((accounts > 0 || aliases > 0) && !options.force) {
        throw new StoreError(
          'conflict',
          `domain ${domain} still has ${accounts} account(s) and ${aliases} alias(es)`,
        );
      }
      const blobs = this.sql.blobIdsWhere(
        'SELECT DISTINCT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id WHERE a.domain = ?',
        domain,
      );
      this.sql.run('DELETE FROM accounts WHERE domain = ?', domain);
      this.sql.dropUnusedBlobs(blobs);
      this.sql.run('DELETE FROM aliases WHERE domain = ?', domain);
      // Its keys' selectors stay retired, should the domain come back (the keys go with the domain).
      this.sql.run(
        'INSERT OR IGNORE INTO dkim_retired (domain, selector, removed_at) SELECT domain, selector, ? FROM dkim_keys WHERE domain = ?',
        Date.now(),
        domain,
      );
      this.sql.run('DELETE FROM domains WHERE name = ?', domain);
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
    const id = await this.sql.tx(() => {
      if (!this.sql.get('SELECT 1 FROM domains WHERE name = ?', domain)) {
        throw new StoreError('not_found', `domain ${domain} is not a local domain; add it first`);
      }
      if (this.sql.get('SELECT 1 FROM aliases WHERE address = ?', address)) {
        throw new StoreError('exists', `${address} is an alias already`);
      }
      const row = uniqueAs(`account ${address} exists already`, () =>
        this.sql.get(
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
    const r = this.sql.get('SELECT * FROM accounts WHERE id = ?', rowId(id));
    return r ? toAccount(r) : null;
  }

  async getAccountByAddress(address: string): Promise<Account | null> {
    const canonical = tryNormalize(() => normalizeAddress(address));
    if (!canonical) return null;
    const r = this.sql.get('SELECT * FROM accounts WHERE address = ?', canonical);
    return r ? toAccount(r) : null;
  }

  async listAccounts(filter: { domain?: string } = {}): Promise<Account[]> {
    if (filter.domain !== undefined) {
      const domain = normalizeDomain(filter.domain);
      return this.sql.all('SELECT * FROM accounts WHERE domain = ? ORDER BY address', domain).map(toAccount);
    }
    return this.sql.all('SELECT * FROM accounts ORDER BY address').map(toAccount);
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
        ? await this.sql.tx(() =>
            this.sql.get(
              `UPDATE accounts SET ${sets.join(', ')} WHERE id = ? RETURNING *`,
              ...params,
              rowId(id),
            ),
          )
        : this.sql.get('SELECT * FROM accounts WHERE id = ?', rowId(id));
    if (!r) throw new StoreError('not_found', `no account ${id}`);
    return toAccount(r);
  }

  async removeAccount(id: string): Promise<void> {
    // Mailboxes, messages, journal and Sieve scripts go by ON DELETE CASCADE.
    const removed = await this.sql.tx(() => {
      const blobs = this.sql.blobIdsWhere(
        'SELECT DISTINCT blob_id FROM messages WHERE account_id = ?',
        rowId(id),
      );
      const n = this.sql.run('DELETE FROM accounts WHERE id = ?', rowId(id));
      this.sql.dropUnusedBlobs(blobs);
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
    await this.sql.tx(() => {
      if (!this.sql.get('SELECT 1 FROM domains WHERE name = ?', domain)) {
        throw new StoreError('not_found', `domain ${domain} is not a local domain; add it first`);
      }
      if (this.sql.get('SELECT 1 FROM accounts WHERE address = ?', address)) {
        throw new StoreError('exists', `${address} is an account already`);
      }
      uniqueAs(`alias ${address} exists already`, () =>
        this.sql.run(
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
    const r = this.sql.get('SELECT * FROM aliases WHERE address = ?', source.address);
    return r ? toAlias(r) : null;
  }

  async listAliases(filter: { domain?: string } = {}): Promise<Alias[]> {
    if (filter.domain !== undefined) {
      return this.sql
        .all('SELECT * FROM aliases WHERE domain = ? ORDER BY address', normalizeDomain(filter.domain))
        .map(toAlias);
    }
    return this.sql.all('SELECT * FROM aliases ORDER BY address').map(toAlias);
  }

  async removeAlias(address: string): Promise<void> {
    const { address: source } = normalizeAliasSource(address);
    if ((await this.sql.tx(() => this.sql.run('DELETE FROM aliases WHERE address = ?', source))) === 0) {
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
    const r = this.sql.get(
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
      if (!this.sql.get('SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?', accountId, parent)) {
        this.insertMailbox(accountId, parent, null, false);
      }
    }
    const existing = this.sql.get(
      'SELECT * FROM mailboxes WHERE account_id = ? AND name = ?',
      accountId,
      name,
    );
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
    // A name subscribed while it had no mailbox: the mailbox made under it is subscribed.
    if (this.keptSubscription(accountId, name, false)) subscribed = true;
    return this.sql.get(
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
    const row = await this.sql.tx(() =>
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
    const r = this.sql.get(
      'SELECT * FROM mailboxes WHERE account_id = ? AND name = ?',
      rowId(accountId),
      canonical,
    );
    return r ? toMailbox(r) : null;
  }

  async getMailboxById(id: string): Promise<Mailbox | null> {
    const r = this.sql.get('SELECT * FROM mailboxes WHERE id = ?', rowId(id));
    return r ? toMailbox(r) : null;
  }

  async listMailboxes(accountId: string): Promise<Mailbox[]> {
    return this.sql
      .all('SELECT * FROM mailboxes WHERE account_id = ? ORDER BY name', rowId(accountId))
      .map(toMailbox);
  }

  async renameMailbox(accountId: string, from: string, to: string): Promise<Mailbox> {
    const src = normalizeMailboxName(from);
    const dst = normalizeMailboxName(to);
    if (src === 'INBOX') throw new StoreError('invalid', 'INBOX cannot be renamed in the store');
    if (dst === 'INBOX' || isSameOrChild(dst, src)) {
      throw new StoreError('invalid', `cannot rename ${src} to ${dst}`);
    }
    const acc = rowId(accountId);
    const row = await this.sql.tx(() => {
      const source = this.sql.get('SELECT * FROM mailboxes WHERE account_id = ? AND name = ?', acc, src);
      if (!source) throw new StoreError('not_found', `no mailbox ${src}`);
      const tree = this.sql
        .all('SELECT id, name FROM mailboxes WHERE account_id = ?', acc)
        .filter((r) => isSameOrChild(r.name as string, src));
      const renamed = tree.map((r) => ({
        id: Number(r.id),
        name: dst + (r.name as string).slice(src.length),
      }));
      for (const r of renamed) {
        if (this.sql.get('SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?', acc, r.name)) {
          throw new StoreError('exists', `mailbox ${r.name} exists already`);
        }
      }
      for (const r of renamed) {
        this.sql.run('UPDATE mailboxes SET name = ? WHERE id = ?', r.name, r.id);
        // A name subscribed while it had no mailbox now has one: the subscription is its.
        if (this.keptSubscription(acc, r.name, false))
          this.sql.run('UPDATE mailboxes SET subscribed = 1 WHERE id = ?', r.id);
      }
      for (const parent of parentNames(dst)) {
        if (!this.sql.get('SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?', acc, parent)) {
          this.insertMailbox(acc, parent, null, false);
        }
      }
      return this.sql.get('SELECT * FROM mailboxes WHERE id = ?', Number(source.id))!;
    });
    return toMailbox(row);
  }

  async deleteMailbox(accountId: string, name: string): Promise<void> {
    const canonical = normalizeMailboxName(name);
    if (canonical === 'INBOX') throw new StoreError('invalid', 'INBOX cannot be deleted');
    const acc = rowId(accountId);
    await this.sql.tx(() => {
      const box = this.sql.get(
        'SELECT id, subscribed FROM mailboxes WHERE account_id = ? AND name = ?',
        acc,
        canonical,
      );
      if (!box) throw new StoreError('not_found', `no mailbox ${canonical}`);
      // RFC 3501 §6.3.6: a subscription outlives its mailbox.
      if (box.subscribed === 1) this.keptSubscription(acc, canonical, true);
      const size = Number(
        this.sql.get('SELECT coalesce(sum(size), 0) AS s FROM messages WHERE mailbox_id = ?', box.id!)!.s,
      );
      this.sql.run('UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?', size, acc);
      const blobs = this.sql.blobIdsWhere(
        'SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?',
        box.id!,
      );
      this.sql.run('DELETE FROM mailboxes WHERE id = ?', box.id!);
      this.sql.dropUnusedBlobs(blobs);
    });
  }

  async setSubscribed(mailboxId: string, subscribed: boolean): Promise<void> {
    if (
      (await this.sql.tx(() =>
        this.sql.run(
          'UPDATE mailboxes SET subscribed = ? WHERE id = ?',
          subscribed ? 1 : 0,
          rowId(mailboxId),
        ),
      )) === 0
    ) {
      throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    }
  }

  async subscribeName(accountId: string, name: string, subscribed: boolean): Promise<boolean> {
    const canonical = normalizeMailboxName(name);
    const acc = rowId(accountId);
    return this.sql.tx(() => {
      const box = this.sql.get('SELECT id FROM mailboxes WHERE account_id = ? AND name = ?', acc, canonical);
      if (box) {
        this.sql.run('UPDATE mailboxes SET subscribed = ? WHERE id = ?', subscribed ? 1 : 0, box.id!);
        return true;
      }
      return this.keptSubscription(acc, canonical, subscribed) || subscribed;
    });
  }

  /**
   * Keeps (or drops) a subscription to a name without a mailbox; true when one was dropped. Must run
   * inside a transaction.
   */
  private keptSubscription(accountId: number, name: string, keep: boolean): boolean {
    if (keep) {
      this.sql.run(
        'INSERT OR IGNORE INTO kept_subscriptions (account_id, name) VALUES (?, ?)',
        accountId,
        name,
      );
      return false;
    }
    return (
      this.sql.run('DELETE FROM kept_subscriptions WHERE account_id = ? AND name = ?', accountId, name) > 0
    );
  }

  async listKeptSubscriptions(accountId: string): Promise<string[]> {
    return this.sql
      .all('SELECT name FROM kept_subscriptions WHERE account_id = ? ORDER BY name', rowId(accountId))
      .map((r) => r.name as string);
  }

  async mailboxStatus(mailboxId: string): Promise<MailboxStatus> {
    const box = this.sql.get('SELECT * FROM mailboxes WHERE id = ?', rowId(mailboxId));
    if (!box) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    const c = this.sql.get(
      `SELECT count(*) AS n, coalesce(sum(size), 0) AS s, coalesce(sum(seen = 0), 0) AS u,
              coalesce(sum(uid > ?), 0) AS r
       FROM messages WHERE mailbox_id = ?`,
      box.recent_uid!,
      box.id!,
    )!;
    return {
      messages: Number(c.n),
      unseen: Number(c.u),
      recent: Number(c.r),
      size: Number(c.s),
      uidNext: Number(box.uid_next),
      uidValidity: Number(box.uid_validity),
      highestModseq: Number(box.highest_modseq),
    };
  }

  // ---- messages ------------------------------------------------------------

  private mailboxRow(id: number): Row {
    const box = this.sql.get('SELECT * FROM mailboxes WHERE id = ?', id);
    if (!box) throw new StoreError('not_found', `no mailbox ${id}`);
    return box;
  }

  /** Reserves `size` bytes of the account's quota. Must run inside a transaction. */
  private chargeQuota(accountId: number, size: number, enforce: boolean): void {
    // One statement when it fits (every delivery comes here); which refusal it is, only when it does not.
    const charged = this.sql.get(
      `UPDATE accounts SET used_bytes = used_bytes + ?
       WHERE id = ? AND (? = 0 OR ? <= 0 OR quota_bytes IS NULL OR used_bytes + ? <= quota_bytes)
       RETURNING id`,
      size,
      accountId,
      enforce ? 1 : 0,
      size,
      size,
    );
    if (charged) return;
    const acc = this.sql.get('SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?', accountId);
    if (!acc) throw new StoreError('not_found', `no account ${accountId}`);
    throw new StoreError('over_quota', `quota exceeded (${acc.used_bytes} of ${acc.quota_bytes} bytes used)`);
  }

  /**
   * Takes `count` UIDs and one MODSEQ from the mailbox (one of `accountId`'s, when given: else it is not
   * found). Must run inside a transaction.
   */
  private allocate(
    mailboxId: number,
    count: number,
    accountId: number | null = null,
  ): { firstUid: number; modseq: number } {
    const r = this.sql.get(
      `UPDATE mailboxes SET uid_next = uid_next + ?, highest_modseq = highest_modseq + 1
       WHERE id = ? AND (? IS NULL OR account_id = ?) RETURNING uid_next, highest_modseq`,
      count,
      mailboxId,
      accountId,
      accountId,
    );
    if (!r) throw new StoreError('not_found', `no mailbox ${mailboxId}`);
    return { firstUid: Number(r.uid_next) - count, modseq: Number(r.highest_modseq) };
  }

  private journal(mailboxId: number, modseq: number, kind: ChangeKind, uid: number, flags?: string[]): void {
    this.sql.run(
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
    sort: { fields: string | null } | { from: number; uid: number },
  ): Row {
    const row = this.sql.get(
      `INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, seen, internal_date, size, blob_id, structure, delivery_key, saved_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
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
      Date.now(),
    )!;
    // Its sort fields beside it (schema.ts, message_sort): as given, or a copy's those of its original.
    if ('from' in sort)
      this.sql.run(
        `INSERT INTO message_sort (mailbox_id, uid, fields)
         SELECT ?, ?, fields FROM message_sort WHERE mailbox_id = ? AND uid = ?`,
        r.mailboxId,
        r.uid,
        sort.from,
        sort.uid,
      );
    else if (sort.fields !== null)
      this.sql.run(
        'INSERT INTO message_sort (mailbox_id, uid, fields) VALUES (?, ?, ?)',
        r.mailboxId,
        r.uid,
        sort.fields,
      );
    return row;
  }

  async appendMessage(input: NewMessage): Promise<Message> {
    const flags = normalizeFlags(input.flags ?? []);
    const accountId = rowId(input.accountId);
    const mailboxId = rowId(input.mailboxId);
    const structure = JSON.stringify(input.structure);
    const row = await this.sql.txWithBlob(input.blobId, input.data, (blobId) => {
      // The mailbox (the account's) and its next UID in one statement; a refusal below undoes it.
      const { firstUid, modseq } = this.allocate(mailboxId, 1, accountId);
      if (
        input.deliveryKey !== undefined &&
        this.sql.get(
          'SELECT 1 FROM messages WHERE account_id = ? AND delivery_key = ?',
          accountId,
          input.deliveryKey,
        )
      ) {
        throw new StoreError('exists', `already delivered (${input.deliveryKey})`);
      }
      this.chargeQuota(accountId, input.size, input.enforceQuota ?? true);
      const inserted = this.insertMessage(
        { accountId, mailboxId, uid: firstUid, modseq, flags },
        {
          internalDate: (input.internalDate ?? new Date()).getTime(),
          size: input.size,
          blobId,
          structure,
          deliveryKey: input.deliveryKey,
        },
        { fields: input.structure.sort ? packSortFields(input.structure.sort) : null },
      );
      this.journal(mailboxId, modseq, 'append', firstUid, flags);
      return inserted;
    });
    return toMessage(row);
  }

  async getMessage(mailboxId: string, uid: number): Promise<Message | null> {
    const r = this.sql.get('SELECT * FROM messages WHERE mailbox_id = ? AND uid = ?', rowId(mailboxId), uid);
    return r ? toMessage(r) : null;
  }

  async listMessages(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<Message[]> {
    return this.sql
      .all(
        'SELECT * FROM messages WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid',
        rowId(mailboxId),
        range.uidFrom ?? 1,
        range.uidTo ?? Number.MAX_SAFE_INTEGER,
      )
      .map(toMessage);
  }

  async listMessageMeta(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<MessageMeta[]> {
    return this.sql
      .all(
        `SELECT id, account_id, mailbox_id, uid, modseq, flags, internal_date, saved_at, size, blob_id FROM messages
         WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid`,
        rowId(mailboxId),
        range.uidFrom ?? 1,
        range.uidTo ?? Number.MAX_SAFE_INTEGER,
      )
      .map(toMessageMeta);
  }

  async listSortFields(
    mailboxId: string,
    range: { uidFrom?: number; uidTo?: number } = {},
  ): Promise<MessageSortFields[]> {
    const box = rowId(mailboxId);
    const from = range.uidFrom ?? 1;
    const to = range.uidTo ?? Number.MAX_SAFE_INTEGER;
    // The kept fields (message_sort) alone when they are those of exactly the messages of the range: as
    // many, and the same highest UID, read from the index after them (UIDs only grow: a message stored in
    // between raises the highest, one expunged lowers the count). Else, in one statement, with the
    // structures of those that have none (SQLite's deferred seek: a message's row is visited only when
    // the CASE needs it).
    const kept = this.sql.all(
      'SELECT uid, fields FROM message_sort WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid',
      box,
      from,
      to,
    );
    const now = this.sql.get(
      'SELECT count(*) AS n, max(uid) AS top FROM messages WHERE mailbox_id = ? AND uid >= ? AND uid <= ?',
      box,
      from,
      to,
    )!;
    const rows =
      kept.length === Number(now.n) && (kept.at(-1)?.uid ?? null) === now.top
        ? kept
        : this.sql.all(
            `SELECT m.uid, s.fields, CASE WHEN s.fields IS NULL THEN m.structure END AS structure
             FROM messages m LEFT JOIN message_sort s ON s.mailbox_id = m.mailbox_id AND s.uid = m.uid
             WHERE m.mailbox_id = ? AND m.uid >= ? AND m.uid <= ? ORDER BY m.uid`,
            box,
            from,
            to,
          );
    return rows.map((r) => ({
      uid: Number(r.uid),
      sort: r.fields != null ? unpackSortFields(r.fields) : sortFieldsOf(r.structure),
    }));
  }

  async listUids(mailboxId: string): Promise<number[]> {
    return this.sql
      .all('SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid', rowId(mailboxId))
      .map((r) => Number(r.uid));
  }

  async viewMailbox(mailboxId: string, options: { claimRecent?: boolean } = {}): Promise<MailboxView> {
    const id = rowId(mailboxId);
    // Each statement reads its own snapshot: read until the mailbox did not change in between.
    for (let attempt = 0; ; attempt++) {
      const before = this.mailboxRow(id);
      const uids = this.sql
        .all('SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid', id)
        .map((r) => Number(r.uid));
      const unseen = this.sql.get('SELECT min(uid) AS u FROM messages WHERE mailbox_id = ? AND seen = 0', id);
      const keywords = new Map<string, string>();
      for (const r of this.sql.all('SELECT DISTINCT flags FROM messages WHERE mailbox_id = ?', id))
        for (const f of JSON.parse(r.flags as string) as string[])
          if (!f.startsWith('\\') && !keywords.has(f.toLowerCase())) keywords.set(f.toLowerCase(), f);
      const after = this.mailboxRow(id);
      if (after.highest_modseq !== before.highest_modseq && attempt < 3) continue;
      const top = uids.length ? uids[uids.length - 1]! : 0;
      const recentAbove = options.claimRecent
        ? await this.claimRecent(mailboxId, top)
        : Number(after.recent_uid);
      return {
        mailbox: toMailbox(after),
        uids,
        recentAbove,
        firstUnseen: unseen?.u === null || unseen?.u === undefined ? null : Number(unseen.u),
        keywords: [...keywords.values()],
      };
    }
  }

  async claimRecent(mailboxId: string, uid: number): Promise<number> {
    const id = rowId(mailboxId);
    return this.sql.tx(() => {
      const before = Number(this.mailboxRow(id).recent_uid);
      if (uid > before) this.sql.run('UPDATE mailboxes SET recent_uid = ? WHERE id = ?', uid, id);
      return before;
    });
  }

  private selectUids(mailboxId: number, uids: number[]): Row[] {
    return this.sql.all(
      'SELECT * FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid',
      mailboxId,
      JSON.stringify(uids),
    );
  }

  async updateFlags(mailboxId: string, uids: number[], update: FlagUpdate): Promise<FlagUpdateResult> {
    normalizeFlags(update.flags);
    const box = rowId(mailboxId);
    // Not synced (docs/decisions.md, "What a synced commit is for"): a power cut may undo the last flag changes.
    return this.sql.txUnsynced(() => {
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
          const row = this.sql.get(
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
        { from, uid: Number(r.uid) },
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
      this.sql.run('DELETE FROM messages WHERE id = ?', Number(r.id));
      this.journal(mailboxId, modseq, 'expunge', Number(r.uid));
      size += Number(r.size);
    }
    if (refund)
      this.sql.run(
        'UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?',
        size,
        Number(rows[0]!.account_id),
      );
    this.sql.dropUnusedBlobs(rows.map((r) => r.blob_id as string));
    return rows.map((r) => Number(r.uid));
  }

  async copyMessages(
    fromMailboxId: string,
    uids: number[],
    toMailboxId: string,
    options: { enforceQuota?: boolean } = {},
  ): Promise<CopyResult> {
    const { uidValidity, uids: pairs } = await this.sql.tx(() =>
      this.copyInTx(rowId(fromMailboxId), uids, rowId(toMailboxId), options.enforceQuota ?? true, true),
    );
    return { uidValidity, uids: pairs };
  }

  async moveMessages(fromMailboxId: string, uids: number[], toMailboxId: string): Promise<CopyResult> {
    const from = rowId(fromMailboxId);
    return this.sql.tx(() => {
      const { uidValidity, uids: pairs, rows } = this.copyInTx(from, uids, rowId(toMailboxId), false, false);
      this.expungeInTx(from, rows, false);
      return { uidValidity, uids: pairs };
    });
  }

  async expungeMessages(mailboxId: string, uids: number[]): Promise<number[]> {
    const box = rowId(mailboxId);
    return this.sql.tx(() => {
      this.mailboxRow(box);
      return this.expungeInTx(box, this.selectUids(box, uids), true);
    });
  }

  async pruneJournal(keep: number): Promise<number> {
    return this.sql.tx(() =>
      this.sql.run(
        'DELETE FROM journal WHERE modseq <= (SELECT m.highest_modseq FROM mailboxes m WHERE m.id = journal.mailbox_id) - ?',
        Math.max(0, Math.floor(keep)),
      ),
    );
  }

  async changesSince(mailboxId: string, modseq: number): Promise<Change[]> {
    return this.sql
      .all(
        'SELECT * FROM journal WHERE mailbox_id = ? AND modseq > ? ORDER BY modseq, id',
        rowId(mailboxId),
        modseq,
      )
      .map((r) => ({
        mailboxId: String(r.mailbox_id),
        modseq: Number(r.modseq),
        kind: r.kind as ChangeKind,
        uid: Number(r.uid),
        ...(r.flags !== null ? { flags: JSON.parse(r.flags as string) } : {}),
      }));
  }

  async recalculateQuota(accountId: string): Promise<number> {
    const acc = rowId(accountId);
    return this.sql.tx(() => {
      const used = Number(
        this.sql.get('SELECT coalesce(sum(size), 0) AS s FROM messages WHERE account_id = ?', acc)!.s,
      );
      if (this.sql.run('UPDATE accounts SET used_bytes = ? WHERE id = ?', used, acc) === 0) {
        throw new StoreError('not_found', `no account ${accountId}`);
      }
      return used;
    });
  }

  // ---- queue (queue.ts) and Sieve scripts (sieve.ts) -----------------------

  enqueue(input: NewQueueEntry): Promise<QueueEntry> {
    return this.queue.enqueue(input);
  }
  leaseQueue(request: LeaseRequest): Promise<QueueEntry[]> {
    return this.queue.leaseQueue(request);
  }
  recordAttempt(id: string, owner: string, attempt: AttemptResult): Promise<QueueEntry> {
    return this.queue.recordAttempt(id, owner, attempt);
  }
  releaseLease(id: string, owner: string): Promise<void> {
    return this.queue.releaseLease(id, owner);
  }
  getQueueEntry(id: string): Promise<QueueEntry | null> {
    return this.queue.getQueueEntry(id);
  }
  listQueue(): Promise<QueueEntry[]> {
    return this.queue.listQueue();
  }
  removeQueueEntry(id: string): Promise<void> {
    return this.queue.removeQueueEntry(id);
  }
  setQueueHeld(id: string, held: boolean): Promise<QueueEntry> {
    return this.queue.setQueueHeld(id, held);
  }
  retryQueueEntry(id: string, now?: Date): Promise<QueueEntry> {
    return this.queue.retryQueueEntry(id, now);
  }
  addDkimKey(key: Omit<DkimKey, 'state' | 'createdAt'>): Promise<DkimKey> {
    return this.dkim.addDkimKey(key);
  }
  listDkimKeys(domain?: string): Promise<DkimKey[]> {
    return this.dkim.listDkimKeys(domain);
  }
  removeDkimKey(domain: string, selector: string, options?: { force?: boolean }): Promise<void> {
    return this.dkim.removeDkimKey(domain, selector, options);
  }
  retiredDkimSelectors(domain: string): Promise<string[]> {
    return this.dkim.retiredDkimSelectors(domain);
  }

  async secret(name: string): Promise<Buffer> {
    // The first writer wins; everyone reads what it wrote.
    this.sql.run('INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)', name, randomBytes(32));
    const row = this.sql.get('SELECT value FROM secrets WHERE name = ?', name)!;
    return Buffer.from(row.value as Uint8Array);
  }

  async putTlsItem(item: Omit<TlsItem, 'updatedAt'>): Promise<TlsItem> {
    const row = this.sql.get(
      `INSERT INTO tls_items (name, cert, key, not_after, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET cert = excluded.cert, key = excluded.key,
         not_after = excluded.not_after, updated_at = excluded.updated_at
       RETURNING *`,
      item.name,
      item.cert,
      item.key,
      item.notAfter ? item.notAfter.getTime() : null,
      Date.now(),
    )!;
    return toTlsItem(row);
  }
  async getTlsItem(name: string): Promise<TlsItem | null> {
    const row = this.sql.get('SELECT * FROM tls_items WHERE name = ?', name);
    return row ? toTlsItem(row) : null;
  }
  async deleteTlsItem(name: string): Promise<void> {
    this.sql.run('DELETE FROM tls_items WHERE name = ?', name);
  }

  async acquireLock(name: string, owner: string, ms: number): Promise<boolean> {
    const now = Date.now();
    // One statement: taken when free, expired or already ours; another owner's live lock stays.
    const row = this.sql.get(
      `INSERT INTO locks (name, owner, until) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
         WHERE locks.owner = excluded.owner OR locks.until <= ?
       RETURNING owner`,
      name,
      owner,
      now + ms,
      now,
    );
    return row?.owner === owner;
  }
  async releaseLock(name: string, owner: string): Promise<void> {
    this.sql.run('DELETE FROM locks WHERE name = ? AND owner = ?', name, owner);
  }

  async remember(key: string, until: Date): Promise<boolean> {
    return this.queue.remember(key, until);
  }
  async pruneRemembered(now = new Date()): Promise<number> {
    return this.sql.txUnsynced(() => this.sql.run('DELETE FROM remembered WHERE until <= ?', now.getTime()));
  }

  async addRemoteAccount(input: NewRemoteAccount): Promise<RemoteAccount> {
    const acc = rowId(input.accountId);
    const data = {
      ...input,
      ...remoteAccountStart(),
      createdAt: new Date().toISOString(),
    };
    const row = await this.sql.tx(() => {
      if (!this.sql.get('SELECT 1 FROM accounts WHERE id = ?', acc))
        throw new StoreError('not_found', `no account ${input.accountId}`);
      return this.sql.get(
        'INSERT INTO remote_accounts (account_id, data) VALUES (?, ?) RETURNING *',
        acc,
        JSON.stringify(data),
      )!;
    });
    return toRemoteAccount(row);
  }
  async listRemoteAccounts(accountId?: string): Promise<RemoteAccount[]> {
    const rows =
      accountId === undefined
        ? this.sql.all('SELECT * FROM remote_accounts ORDER BY id')
        : this.sql.all('SELECT * FROM remote_accounts WHERE account_id = ? ORDER BY id', rowId(accountId));
    return rows.map(toRemoteAccount);
  }
  async getRemoteAccount(id: string): Promise<RemoteAccount | null> {
    const row = this.sql.get('SELECT * FROM remote_accounts WHERE id = ?', rowId(id));
    return row ? toRemoteAccount(row) : null;
  }
  async updateRemoteAccount(id: string, patch: RemoteAccountUpdate): Promise<RemoteAccount> {
    const row = await this.sql.tx(() => {
      const r = this.sql.get('SELECT * FROM remote_accounts WHERE id = ?', rowId(id));
      if (!r) throw new StoreError('not_found', `no remote account ${id}`);
      const data = { ...JSON.parse(r.data as string), ...patch };
      return this.sql.get(
        'UPDATE remote_accounts SET data = ? WHERE id = ? RETURNING *',
        JSON.stringify(data),
        rowId(id),
      )!;
    });
    return toRemoteAccount(row);
  }
  async removeRemoteAccount(id: string): Promise<void> {
    const n = await this.sql.tx(() => this.sql.run('DELETE FROM remote_accounts WHERE id = ?', rowId(id)));
    if (n === 0) throw new StoreError('not_found', `no remote account ${id}`);
  }

  putSieveScript(accountId: string, name: string, content: string): Promise<SieveScript> {
    return this.sieve.putSieveScript(accountId, name, content);
  }
  getSieveScript(accountId: string, name: string): Promise<SieveScript | null> {
    return this.sieve.getSieveScript(accountId, name);
  }
  listSieveScripts(accountId: string): Promise<SieveScript[]> {
    return this.sieve.listSieveScripts(accountId);
  }
  deleteSieveScript(accountId: string, name: string): Promise<void> {
    return this.sieve.deleteSieveScript(accountId, name);
  }
  setActiveSieveScript(accountId: string, name: string | null): Promise<void> {
    return this.sieve.setActiveSieveScript(accountId, name);
  }
  getActiveSieveScript(accountId: string): Promise<SieveScript | null> {
    return this.sieve.getActiveSieveScript(accountId);
  }
}

/** A remote_accounts row: its JSON, with the dates made Dates again. */
function toRemoteAccount(row: Row): RemoteAccount {
  const d = JSON.parse(row.data as string) as Record<string, unknown>;
  const date = (v: unknown) => (typeof v === 'string' ? new Date(v) : null);
  return {
    ...(d as unknown as RemoteAccount),
    id: String(row.id),
    accountId: String(row.account_id),
    lastFetchAt: date(d.lastFetchAt),
    lastErrorAt: date(d.lastErrorAt),
    createdAt: date(d.createdAt) ?? new Date(0),
  };
}
