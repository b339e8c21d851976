/** Opening a database the way every process on the host must: WAL, durable commits, a busy timeout, migrations. */
import { chmodSync, closeSync, existsSync, fsync, fsyncSync, openSync, rmSync } from 'node:fs';
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
  try {
    migrate(db, path);
  } catch (err) {
    db.close();
    throw err;
  }
  // The statement journal in memory. The group commit's SAVEPOINTs need one (the pages a write changed,
  // as they were, for its ROLLBACK TO), and on disk it spilled past 64 KiB to a temporary file that was
  // created, written and removed again in nearly every batch of deliveries: half the write system calls
  // of a stored message and five file operations a batch (bench/append.ts; docs/decisions.md, "The
  // statement journal in memory"). Temporary tables and sorts go there too; ours are small. Set after
  // the migrations: an index a migration builds over a large store sorts more than memory should hold.
  db.exec('PRAGMA temp_store = MEMORY');
  return db;
}

/** The schema version of an open database (`PRAGMA user_version`: the number of migrations applied). */
export const schemaVersion = (db: DatabaseSync): number =>
  Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);

/** Refuses a database whose schema is newer than this code knows: it would misread what it does not know. */
export function checkNotNewer(db: DatabaseSync, what: string): void {
  const v = schemaVersion(db);
  if (v > MIGRATIONS.length)
    throw new StoreError(
      'conflict',
      `${what} has schema version ${v}, written by a newer Mailwerk; this one knows versions up to ${MIGRATIONS.length}. Run the newer version, or restore a backup taken before the upgrade.`,
    );
}

function migrate(db: DatabaseSync, path: string): void {
  const version = () => schemaVersion(db);
  checkNotNewer(db, `The store ${path}`);
  const before = version();
  if (before > 0 && before < MIGRATIONS.length && path !== ':memory:') {
    // A copy of the store as it was, next to it, before a migration changes it (VACUUM INTO reads one
    // consistent snapshot). When several processes start at once, the first writes it.
    // The file is made empty and owner-only first (VACUUM INTO fills an empty file); one that exists
    // already is another process's copy.
    const copy = `${path}.schema-${before}.backup`;
    let fd: number | null = null;
    try {
      fd = openSync(copy, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (fd !== null) {
      closeSync(fd);
      try {
        db.exec(`VACUUM INTO '${copy.replaceAll("'", "''")}'`);
      } catch (err) {
        // No migration without its copy, and no half copy left to be taken for one.
        rmSync(copy, { force: true });
        throw err;
      }
    }
  }
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

/** SQLite's result code for a lock held by another connection. */
const SQLITE_BUSY = 5;

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
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** A sync on the event loop slower than this sends the syncs to the thread pool for POOL_AFTER_SLOW_MS. */
const SLOW_SYNC_MS = 4;
const POOL_AFTER_SLOW_MS = 10_000;

export interface GroupCommitOptions {
  /** Most writes in one transaction, to bound the time the write lock is held. */
  maxBatch?: number;
  busyTimeoutMs?: number;
  /**
   * Sync the WAL on the event loop right after the COMMIT, instead of in the thread pool, while the
   * disk answers within SLOW_SYNC_MS. For a process whose every write waits for its sync and that has
   * nothing else to do meanwhile (the MDA): handing each sync to a thread and the answer back cost it
   * more than the sync itself (bench/mda.ts, docs/decisions.md "The MDA syncs on its event loop"). A
   * process that serves sessions while a sync runs (the MX, IMAP) keeps the thread pool.
   */
  syncOnLoop?: boolean;
}

/**
 * Group commit. Writes issued in the same turn of the event loop (say, twenty
 * SMTP sessions ending DATA at once) run in one transaction with one synced
 * commit, each inside its own SAVEPOINT: a write that throws is rolled back
 * alone and rejects alone. Every promise settles only after the COMMIT has
 * returned, so a resolved write is on disk — the durability a 250 promises —
 * while the fsync is paid once per batch instead of once per write.
 *
 * A write marked not durable (the queue's leases and its record of attempts:
 * see docs/decisions.md, "What a synced commit is for") settles right after
 * the commit, without waiting for the sync: it is atomic and seen at once by
 * every process, and reaches the disk with the next sync or checkpoint; a
 * power cut may undo it, never tear it.
 *
 * The write lock is shared by every process on the database (the MX, the
 * MDA, IMAP). SQLite's own busy handler would wait for it by sleeping 1, 2,
 * 5, 10 … ms inside the call, which stops the event loop (no SMTP reply goes
 * out meanwhile) and oversleeps a lock that is held for a commit of about a
 * millisecond. So the batch asks for the lock without waiting and, when
 * another process holds it, tries again a millisecond later from a timer;
 * writes issued meanwhile join the batch. After `busyTimeoutMs` of trying,
 * the batch fails as a busy database would.
 *
 * While a sync runs in the thread pool, durable writes are held and
 * committed together when it ends, then synced at once: they would wait for
 * that next sync anyway, and a COMMIT per turn of the event loop meanwhile
 * wrote the pages every batch shares (the table's last leaf, the mailbox or
 * queue rows, the indexes' right edges) to the WAL again each time, with its
 * own locks (the MX alone under 20 sessions, one message per connection: 18
 * `pwrite` calls a message, 15.6 with this). A write that is not durable is never held.
 */
export class GroupCommit {
  private readonly db: DatabaseSync;
  private queue: PendingWrite[] = [];
  private scheduled = false;
  /** Most writes in one transaction, to bound the time the write lock is held. */
  private readonly maxBatch: number;
  private readonly busyTimeoutMs: number;
  /** When the current batch first found the lock taken. */
  private busySince: number | null = null;
  /** The WAL file, synced from the thread pool after a durable commit (null: a database in memory). */
  private readonly walPath: string | null;
  private walFd: number | null = null;
  /** Batches committed and waiting for the next sync of the WAL to settle. */
  private awaitingSync: Array<(err: Error | null) => void> = [];
  private syncing = false;
  /** Durable writes wait for the sync in flight to end, to be committed together after it (flush). */
  private held = false;
  private readonly syncOnLoop: boolean;
  /** Until when the syncs go to the thread pool after one on the event loop was slow (ms since the epoch). */
  private poolUntil = 0;

  constructor(db: DatabaseSync, options: GroupCommitOptions = {}) {
    this.db = db;
    this.maxBatch = options.maxBatch ?? 200;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 10_000;
    this.syncOnLoop = options.syncOnLoop ?? false;
    const file = db.location();
    this.walPath = file ? `${file}-wal` : null;
  }

  /**
   * Syncs the WAL for every batch committed so far, off the event loop (or on
   * it, with syncOnLoop, while the disk is fast): SQLite's FULL is NORMAL plus
   * this same sync after the commit (SQLite: "PRAGMA synchronous"), so a batch
   * settles with the durability of FULL while the process goes on serving its
   * clients, and batches committed during a sync share the next one. A
   * checkpoint syncs the WAL before it copies frames into the database, so
   * frames are never in neither place unsynced. The WAL file is
   * never removed while this connection is open (SQLite removes it when the last
   * connection closes), so the descriptor stays the file's.
   */
  private syncWal(): void {
    if (this.syncing || this.awaitingSync.length === 0) return;
    this.syncing = true;
    const waiting = this.awaitingSync;
    this.awaitingSync = [];
    const done = (err: Error | null) => {
      this.syncing = false;
      for (const settle of waiting) settle(err);
      // The writes held during this sync are committed now and synced next (flush ends in syncWal).
      if (this.held) {
        this.held = false;
        this.flush();
      } else this.syncWal();
    };
    try {
      this.walFd ??= openSync(this.walPath!, 'r');
    } catch (err) {
      done(err as Error);
      return;
    }
    if (this.syncOnLoop && Date.now() >= this.poolUntil) {
      const started = performance.now();
      let failed: Error | null = null;
      try {
        fsyncSync(this.walFd);
      } catch (err) {
        failed = err as Error;
      }
      // A slow disk (or a slow moment of it) must not hold the event loop: the thread pool for a while.
      if (performance.now() - started > SLOW_SYNC_MS) this.poolUntil = Date.now() + POOL_AFTER_SLOW_MS;
      done(failed);
      return;
    }
    fsync(this.walFd, done);
  }

  /** Gives back the WAL's descriptor; for the store's close, after its last write settled. */
  close(): void {
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
  }

  /** BEGIN IMMEDIATE without SQLite's sleeping wait: false when another connection holds the write lock. */
  private begin(): boolean {
    this.db.exec('PRAGMA busy_timeout = 0');
    try {
      this.db.exec('BEGIN IMMEDIATE');
      return true;
    } catch (err) {
      if ((err as { errcode?: number }).errcode === SQLITE_BUSY) return false;
      throw err;
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${this.busyTimeoutMs}`);
    }
  }

  write<T>(fn: () => T, durable = true): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, durable, resolve: resolve as (v: unknown) => void, reject });
      if (!durable && this.held) {
        // Not to wait for the sync: committed in the next turn with the durable writes held so far.
        this.held = false;
        setImmediate(() => this.flush());
      } else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    if (this.queue.length === 0) {
      this.scheduled = false;
      return;
    }
    if (this.syncing && this.queue.length < this.maxBatch && this.queue.every((w) => w.durable)) {
      // Committed when the sync in flight ends (syncWal's done); `scheduled` stays set meanwhile.
      this.held = true;
      return;
    }
    // NORMAL in WAL mode: no sync inside the commit (SQLite: "PRAGMA synchronous"); durable writes settle
    // after syncWal. Set back to FULL right after, so that no other commit on this connection is unsynced.
    let locked: boolean;
    try {
      this.db.exec('PRAGMA synchronous = NORMAL');
      locked = this.begin();
      if (!locked && this.busySince !== null && Date.now() - this.busySince > this.busyTimeoutMs)
        throw Object.assign(new Error('database is locked'), { errcode: SQLITE_BUSY });
    } catch (err) {
      this.db.exec('PRAGMA synchronous = FULL');
      this.busySince = null;
      for (const w of this.queue.splice(0, this.maxBatch)) w.reject(err);
      setImmediate(() => this.flush());
      return;
    }
    if (!locked) {
      this.db.exec('PRAGMA synchronous = FULL');
      this.busySince ??= Date.now();
      setTimeout(() => this.flush(), 1);
      return;
    }
    this.busySince = null;
    // The batch is taken only now: writes issued while the lock was busy are in it.
    const batch = this.queue.splice(0, this.maxBatch);
    if (this.queue.length > 0) setImmediate(() => this.flush());
    else this.scheduled = false;
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
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
    } finally {
      this.db.exec('PRAGMA synchronous = FULL');
    }
    // Unsynced writes and failed ones settle now; durable ones once the WAL is on disk (in memory: now).
    const later: Array<{ w: PendingWrite; value: unknown }> = [];
    batch.forEach((w, i) => {
      const r = results[i]!;
      if (!r.ok) w.reject(r.error);
      else if (w.durable && this.walPath !== null) later.push({ w, value: r.value });
      else w.resolve(r.value);
    });
    if (later.length === 0) return;
    // Committed but not known to be on disk when the sync fails: not to be promised (a 250 becomes a 451).
    this.awaitingSync.push((err) => {
      for (const { w, value } of later) err ? w.reject(err) : w.resolve(value);
    });
    this.syncWal();
  }
}
