/** Opening a database the way every process on the host must: WAL, durable commits, a busy timeout, migrations. */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { StoreError } from '@mailwerk/store';
import { MIGRATIONS } from './schema.ts';

export interface OpenOptions {
  path: string;
  /** How long a writer waits for another process's write lock, in ms. */
  busyTimeoutMs?: number;
}

/**
 * The database holds password hashes, DKIM private keys and everyone's mail:
 * it is readable by its owner only (0600), whatever the directory's mode or
 * the umask. SQLite gives the -wal and -shm files the database file's mode;
 * files of an older installation are corrected at each open.
 */
function ownerOnly(path: string): void {
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  for (const p of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(p)) chmodSync(p, 0o600);
}

export function openDatabase({ path, busyTimeoutMs = 10_000 }: OpenOptions): DatabaseSync {
  if (path !== ':memory:') ownerOnly(path);
  const db = new DatabaseSync(path, { timeout: busyTimeoutMs, enableForeignKeyConstraints: true });
  // WAL lets readers in other processes go on while one writes.
  db.exec('PRAGMA journal_mode = WAL');
  // FULL: every commit is synced to disk before it returns. A message acknowledged
  // with 250 must survive a power cut, so NORMAL (which may lose the last commits) is not enough.
  db.exec('PRAGMA synchronous = FULL');
  db.exec('PRAGMA foreign_keys = ON');
  migrate(db);
  return db;
}

function migrate(db: DatabaseSync): void {
  const version = () =>
    Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  while (version() < MIGRATIONS.length) {
    transaction(db, () => {
      // Re-read inside the write lock: another process may have migrated meanwhile.
      const v = version();
      if (v >= MIGRATIONS.length) return;
      db.exec(MIGRATIONS[v]!);
      db.exec(`PRAGMA user_version = ${v + 1}`);
    });
  }
}

/**
 * Runs `fn` in a write transaction. BEGIN IMMEDIATE takes the write lock up
 * front, so two processes never deadlock upgrading a read lock.
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

export const isUniqueViolation = (err: unknown): boolean =>
  err instanceof Error && /UNIQUE constraint failed|PRIMARY KEY constraint failed/.test(err.message);

/** Maps a unique-index violation to `exists`, letting everything else through. */
export function uniqueAs<T>(message: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isUniqueViolation(err)) throw new StoreError('exists', message);
    throw err;
  }
}

interface PendingWrite {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit. Writes issued in the same turn of the event loop (say, twenty
 * SMTP sessions ending DATA at once) run in one transaction with one synced
 * commit, each inside its own SAVEPOINT: a write that throws is rolled back
 * alone and rejects alone. Every promise settles only after the COMMIT has
 * returned, so a resolved write is on disk — the durability a 250 promises —
 * while the fsync is paid once per batch instead of once per write.
 */
export class GroupCommit {
  private readonly db: DatabaseSync;
  private queue: PendingWrite[] = [];
  private scheduled = false;
  /** Most writes in one transaction, to bound the time the write lock is held. */
  private readonly maxBatch: number;

  constructor(db: DatabaseSync, maxBatch = 200) {
    this.db = db;
    this.maxBatch = maxBatch;
  }

  write<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.queue.splice(0, this.maxBatch);
    if (this.queue.length > 0) setImmediate(() => this.flush());
    else this.scheduled = false;
    if (batch.length === 0) return;
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    try {
      for (const w of batch) {
        this.db.exec('SAVEPOINT w');
        try {
          const value = w.fn();
          this.db.exec('RELEASE w');
          results.push({ ok: true, value });
        } catch (error) {
          this.db.exec('ROLLBACK TO w');
          this.db.exec('RELEASE w');
          results.push({ ok: false, error });
        }
      }
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      for (const w of batch) w.reject(err);
      return;
    }
    batch.forEach((w, i) => {
      const r = results[i]!;
      if (r.ok) w.resolve(r.value);
      else w.reject(r.error);
    });
  }
}
