import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { BACKSTOP_FRAMES, WalCheckpointer } from '../src/checkpointer.ts';
import { openSqliteStore } from '../src/index.ts';
import { WalIndexReader } from '../src/wal-index.ts';

/** Waits for a condition, with a deadline. */
async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

let dir: string;
let n = 0;
/** Domains added so far: each write adds a new one. */
let added = 0;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mailwerk-ckpt-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));
const fresh = () => join(dir, `db${n++}.sqlite`);

describe('the wal-index reader', () => {
  it('reads the frames of the WAL and those copied into the database as SQLite counts them', () => {
    const path = fresh();
    const db = new DatabaseSync(path);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB)');
    const wal = new WalIndexReader(path);
    const pageSize = Number((db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size);
    for (let i = 1; i <= 20; i++) {
      db.prepare('INSERT INTO t (v) VALUES (?)').run(Buffer.alloc(i * 700));
      // The WAL file: a 32-byte header, then frames of a 24-byte header and a page (walformat.html).
      const frames = (statSync(`${path}-wal`).size - 32) / (24 + pageSize);
      assert.deepEqual(wal.read(), { mxFrame: frames, nBackfill: 0 });
    }
    const r = db.prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as { log: number; checkpointed: number };
    assert.deepEqual(wal.read(), { mxFrame: r.log, nBackfill: r.checkpointed });
    assert.ok(r.checkpointed > 0 && r.checkpointed === r.log);
    wal.close();
    db.close();
  });
});

describe('WAL checkpoints in a thread', () => {
  /** Writes one small transaction a turn until `done`; returns the most frames the WAL had before then. */
  async function writeUntil(
    store: ReturnType<typeof openSqliteStore>,
    wal: WalIndexReader,
    done: (prev: number, now: number) => boolean,
    max = 5000,
  ): Promise<number> {
    let most = 0;
    let prev = wal.read()!.mxFrame;
    for (let i = 0; i < max; i++) {
      await store.addDomain(`d${added++}.example`);
      const now = wal.read()!.mxFrame;
      if (done(prev, now)) return most;
      most = Math.max(most, now);
      prev = now;
    }
    throw new Error(`not done after ${max} writes (the WAL at ${prev} frames)`);
  }

  /** A store on a fresh file, with the thread (threshold 100 frames) or without, and a reader of its wal-index. */
  function watched(thread: boolean) {
    const path = fresh();
    const store = openSqliteStore({
      path,
      blobs: 'sqlite',
      ...(thread ? { checkpointer: { thresholdFrames: 100, pollMs: 1 } } : {}),
    });
    return { path, store, wal: new WalIndexReader(path) };
  }

  it('without the thread, the writers checkpoint only past the backstop', async () => {
    const { store, wal } = watched(false);
    try {
      // SQLite's own default would have restarted the WAL at 1,000 frames.
      let restarted = false;
      await writeUntil(store, wal, (prev, now) => {
        restarted = now < prev;
        return restarted || now > 1500;
      });
      assert.equal(restarted, false, 'the WAL restarted before 1,500 frames');
      assert.equal(wal.read()!.nBackfill, 0);
    } finally {
      wal.close();
      await store.close();
    }
  });

  it('copies the WAL into the database once enough frames wait, and the next writes start it again', async () => {
    const { path, store, wal } = watched(true);
    try {
      // The WAL restarts (its frame count falls) well before the writers' own checkpoint would.
      const most = await writeUntil(store, wal, (prev, now) => now < prev);
      assert.ok(most >= 100, `restarted at ${most} frames, before the threshold`);
      assert.ok(most < BACKSTOP_FRAMES, `restarted at ${most} frames: the backstop, not the thread`);
    } finally {
      wal.close();
      await store.close();
    }
    // The thread has ended with its connection: the last connection to close removes the WAL.
    assert.equal(existsSync(`${path}-wal`), false);
  });

  it('holds no writer up while a reader keeps an old snapshot, and restarts the WAL once it has gone', async () => {
    const { path, store, wal } = watched(true);
    const reader = new DatabaseSync(path, { readOnly: true });
    try {
      await store.addDomain('first.example');
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) AS n FROM domains').get();
      // A checkpoint that waited for the reader while it held the write lock would stall these writes.
      await writeUntil(store, wal, (_, now) => now > 600);
      await until('the thread has copied up to the reader', () => wal.read()!.nBackfill > 0);
      const started = performance.now();
      await store.addDomain('during.example');
      assert.ok(performance.now() - started < 1000, 'a write waited for the checkpoint');
      assert.ok(wal.read()!.nBackfill < wal.read()!.mxFrame, 'the frames the reader may need stay');
      reader.exec('COMMIT');
      await writeUntil(store, wal, (prev, now) => now < prev);
    } finally {
      if (reader.isTransaction) reader.exec('COMMIT');
      reader.close();
      wal.close();
      await store.close();
    }
  });

  it('tells of a thread that cannot run, and stops all the same', async () => {
    // A database in rollback-journal mode has no wal-index to read.
    const path = fresh();
    new DatabaseSync(path).close();
    const errors: Error[] = [];
    const c = new WalCheckpointer(path, { onError: (err) => errors.push(err) });
    await until('the error is told', () => errors.length > 0);
    assert.match(errors[0]!.message, /shm|ENOENT/);
    await c.stop();
  });
});
