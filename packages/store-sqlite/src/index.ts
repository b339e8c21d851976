import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MailStore } from '@mailwerk/store';
import { FsBlobStore, SqliteBlobStore } from './blobs.ts';
import { BACKSTOP_FRAMES, type CheckpointerOptions, WalCheckpointer } from './checkpointer.ts';
import { GroupCommit, openDatabase } from './db.ts';
import { SqliteMailStore } from './store.ts';

export { type BackupResult, backupStore, type RestoreResult, restoreStore } from './backup.ts';
export { FsBlobStore, SqliteBlobStore } from './blobs.ts';
export type { CheckpointerOptions } from './checkpointer.ts';
export { GroupCommit, openDatabase, transaction } from './db.ts';
export { MIGRATIONS } from './schema.ts';
export { SqliteMailStore } from './store.ts';

export interface SqliteStoreOptions {
  /** The database file; created with its directory when missing. */
  path: string;
  /** Where message bodies go: a directory for files (the default), or "sqlite" to keep them in the database. */
  blobs: { dir: string } | 'sqlite';
  busyTimeoutMs?: number;
  /** Sync the WAL on the event loop while the disk is fast (GroupCommitOptions.syncOnLoop): the MDA's process. */
  syncOnLoop?: boolean;
  /**
   * Run the WAL's checkpoints in a thread of this process (checkpointer.ts): the MDA's process, or the
   * one process that runs every service. Every process's own checkpoints wait for BACKSTOP_FRAMES.
   */
  checkpointer?: CheckpointerOptions;
}

/**
 * Opens the embedded store. Several processes on one host may open the same
 * files at once (WAL, busy timeout, BEGIN IMMEDIATE writes).
 */
export function openSqliteStore(options: SqliteStoreOptions): MailStore {
  mkdirSync(dirname(options.path), { recursive: true });
  const db = openDatabase({
    path: options.path,
    ...(options.busyTimeoutMs ? { busyTimeoutMs: options.busyTimeoutMs } : {}),
  });
  // A backstop: the checkpoints are the checkpointer's, wherever it runs (a process cannot know).
  db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_FRAMES}`);
  const writer = new GroupCommit(db, { syncOnLoop: options.syncOnLoop ?? false });
  const blobs =
    options.blobs === 'sqlite' ? new SqliteBlobStore(db, writer) : new FsBlobStore(options.blobs.dir);
  const checkpointer =
    options.checkpointer && options.path !== ':memory:'
      ? new WalCheckpointer(options.path, options.checkpointer)
      : null;
  return new SqliteMailStore(db, writer, blobs, async () => {
    await checkpointer?.stop();
  });
}
