/** Opening a database the way every process on the host must: WAL, durable commits, a busy timeout, migrations. */
import { DatabaseSync } from 'node:sqlite';
import { StoreError } from '@mailwerk/store';
import { MIGRATIONS } from './schema.ts';

export interface OpenOptions {
  path: string;
  /** How long a writer waits for another process's write lock, in ms. */
  busyTimeoutMs?: number;
}

export function openDatabase({ path, busyTimeoutMs = 10_000 }: OpenOptions): DatabaseSync {
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
