/**
 * Online backup and offline restore of the embedded store (`mailwerk backup`,
 * `mailwerk restore`).
 *
 * - Backup: SQLite's online backup API copies the database as of one moment
 *   while the services go on writing (all pages in one step: a copy done in
 *   steps restarts whenever another connection writes, which under steady
 *   delivery may never end). Bodies kept in the database come with it; bodies
 *   kept as files (`store.bodies = "files"`) are copied into `FILE.bodies/`
 *   afterwards: they are named by their hash and never change, so every body
 *   the copied database refers to is there. The copy is written under a
 *   temporary name, synced, and only then given its name: a file with the
 *   name is always a whole backup.
 * - Restore: only into a store no process has open (checked by taking
 *   SQLite's exclusive lock); the backup is checked first (integrity, a schema
 *   this code knows), the store it replaces is kept next to it, and the copy
 *   is put in place by a rename.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { join } from 'node:path';
import { backup, DatabaseSync } from 'node:sqlite';
import { StoreError } from '@mailwerk/store';
import { checkNotNewer, schemaVersion } from './db.ts';

export interface BackupResult {
  /** The schema version of the copy. */
  schema: number;
  /** Body files copied beside it (bodies kept as files only). */
  bodies: number;
}

const PAGES_AT_ONCE = 2 ** 31 - 1;

function syncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Copies the files of `from` that `to` does not have yet; returns how many. */
function copyBodies(from: string, to: string): number {
  if (!existsSync(from)) return 0;
  let n = 0;
  const walk = (dir: string, rel: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const src = join(dir, e.name);
      const dst = join(to, rel, e.name);
      if (e.isDirectory()) {
        mkdirSync(dst, { recursive: true, mode: 0o700 });
        walk(src, join(rel, e.name));
      } else if (e.isFile() && !existsSync(dst)) {
        copyFileSync(src, dst);
        n++;
      }
    }
  };
  mkdirSync(to, { recursive: true, mode: 0o700 });
  walk(from, '');
  return n;
}

/** Writes a consistent copy of the store at `dbPath` to `target` (which must not exist) while it is in use. */
export async function backupStore(dbPath: string, target: string, bodiesDir?: string): Promise<BackupResult> {
  if (!existsSync(dbPath)) throw new StoreError('not_found', `there is no store at ${dbPath}`);
  if (existsSync(target))
    throw new StoreError('exists', `${target} exists already; a backup never overwrites a file`);
  const temporary = `${target}.partial`;
  rmSync(temporary, { force: true });
  closeSync(openSync(temporary, 'wx', 0o600));
  const source = new DatabaseSync(dbPath, { timeout: 10_000 });
  try {
    await backup(source, temporary, { rate: PAGES_AT_ONCE });
    const copy = new DatabaseSync(temporary);
    let schema: number;
    try {
      // The copy is a database of its own: no WAL left beside it.
      copy.exec('PRAGMA journal_mode = DELETE');
      schema = schemaVersion(copy);
    } finally {
      copy.close();
    }
    syncFile(temporary);
    renameSync(temporary, target);
    const bodies = bodiesDir ? copyBodies(bodiesDir, `${target}.bodies`) : 0;
    return { schema, bodies };
  } catch (err) {
    rmSync(temporary, { force: true });
    throw err;
  } finally {
    source.close();
  }
}

export interface RestoreResult {
  schema: number;
  /** Where the store that was replaced now is (null: there was none). */
  previous: string | null;
  bodies: number;
}

/** Puts the backup `file` in place of the store at `dbPath`, which no process may have open. */
export async function restoreStore(file: string, dbPath: string, bodiesDir?: string): Promise<RestoreResult> {
  if (!existsSync(file)) throw new StoreError('not_found', `there is no backup at ${file}`);
  // The backup first: a whole database, of a schema this code can read.
  const check = new DatabaseSync(file, { readOnly: true });
  let schema: number;
  try {
    const result = check.prepare('PRAGMA integrity_check').all() as Array<{ integrity_check: string }>;
    if (result.length !== 1 || result[0]!.integrity_check !== 'ok')
      throw new StoreError(
        'corrupt',
        `${file} is not a whole database: ${result
          .map((r) => r.integrity_check)
          .join('; ')
          .slice(0, 300)}`,
      );
    checkNotNewer(check, `The backup ${file}`);
    schema = schemaVersion(check);
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw new StoreError('corrupt', `${file} is not a Mailwerk backup: ${(err as Error).message}`);
  } finally {
    check.close();
  }
  let previous: string | null = null;
  if (existsSync(dbPath)) {
    // No process may have the store open: SQLite's exclusive lock is refused while any does.
    const current = new DatabaseSync(dbPath, { timeout: 0 });
    try {
      current.exec('PRAGMA locking_mode = EXCLUSIVE');
      try {
        current.exec('BEGIN EXCLUSIVE');
        current.exec('COMMIT');
      } catch {
        throw new StoreError('conflict', `the store ${dbPath} is in use: stop mailwerk before restoring`);
      }
      // Everything into the database file, so the file kept aside is whole on its own.
      current.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } finally {
      current.close();
    }
    previous = `${dbPath}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    renameSync(dbPath, previous);
    for (const suffix of ['-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
  }
  const temporary = `${dbPath}.restoring`;
  rmSync(temporary, { force: true });
  closeSync(openSync(temporary, 'wx', 0o600));
  const source = new DatabaseSync(file, { readOnly: true });
  try {
    await backup(source, temporary, { rate: PAGES_AT_ONCE });
  } finally {
    source.close();
  }
  syncFile(temporary);
  renameSync(temporary, dbPath);
  const bodies = bodiesDir ? copyBodies(`${file}.bodies`, bodiesDir) : 0;
  return { schema, previous, bodies };
}
