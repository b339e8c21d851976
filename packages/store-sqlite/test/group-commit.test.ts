import assert from 'node:assert/strict';
import fs, { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it, mock } from 'node:test';
import { GroupCommit, openDatabase } from '../src/db.ts';

describe('group commit: synced and unsynced writes', () => {
  let dir: string;
  let db: DatabaseSync;
  let other: DatabaseSync;
  /** Every statement run through exec, in order (the real database runs them). */
  const execs: string[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailwerk-gc-'));
    db = new DatabaseSync(join(dir, 'db.sqlite'));
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = FULL');
    db.exec('CREATE TABLE t (v TEXT)');
    const exec = db.exec.bind(db);
    db.exec = (sql: string) => {
      execs.push(sql);
      return exec(sql);
    };
    other = new DatabaseSync(join(dir, 'db.sqlite'), { readOnly: true });
  });
  after(() => {
    db.close();
    other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const synchronous = () =>
    Number((db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous);
  const seen = (v: string) => Boolean(other.prepare('SELECT 1 AS x FROM t WHERE v = ?').get(v));
  const insert = (v: string) => () => db.prepare('INSERT INTO t (v) VALUES (?)').run(v);

  it('commits a batch of unsynced writes without the sync, visible at once to another connection, and sets FULL back', async () => {
    execs.length = 0;
    const g = new GroupCommit(db);
    await Promise.all([g.write(insert('a'), false), g.write(insert('b'), false)]);
    assert.ok(seen('a') && seen('b'));
    assert.deepEqual(
      execs.filter((s) => /synchronous|BEGIN|COMMIT/.test(s)),
      ['PRAGMA synchronous = NORMAL', 'BEGIN IMMEDIATE', 'COMMIT', 'PRAGMA synchronous = FULL'],
    );
    assert.equal(synchronous(), 2);
  });

  /**
   * An fs function replaced for one test, through syncBuiltinESMExports so that the store's named import
   * sees it; returns what puts it back.
   */
  function replaceFs<K extends 'fsync' | 'fsyncSync'>(name: K, impl: (typeof fs)[K]): () => void {
    const m = mock.method(fs, name, impl as never);
    syncBuiltinESMExports();
    return () => {
      m.mock.restore();
      syncBuiltinESMExports();
    };
  }

  /** fs.fsync held: its callbacks run when the test releases them. */
  function holdFsync(): { release(err?: Error): void; calls: () => number; restore(): void } {
    const held: Array<(err: Error | null) => void> = [];
    let calls = 0;
    const restore = replaceFs('fsync', ((_fd: number, cb: (err: Error | null) => void) => {
      calls++;
      held.push(cb);
    }) as typeof fs.fsync);
    return {
      release: (err) => {
        for (const cb of held.splice(0)) cb(err ?? null);
      },
      calls: () => calls,
      restore,
    };
  }

  it('settles a durable batch only after the WAL is synced, off the event loop; one sync for the batches committed meanwhile', async () => {
    const hold = holdFsync();
    try {
      execs.length = 0;
      const g = new GroupCommit(db);
      let settled = 0;
      const first = g.write(insert('c')).then(() => settled++);
      await new Promise((r) => setTimeout(r, 20));
      // Committed (another connection sees it), not yet settled: the sync is in flight.
      assert.ok(seen('c'));
      assert.equal(settled, 0);
      assert.equal(hold.calls(), 1);
      const second = g.write(insert('d')).then(() => settled++);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(hold.calls(), 1, 'the second batch waits for a sync that starts after its commit');
      hold.release();
      await first;
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(hold.calls(), 2);
      assert.equal(settled, 1);
      hold.release();
      await second;
      assert.deepEqual(execs.filter((s) => /synchronous|BEGIN|COMMIT/.test(s)).slice(0, 4), [
        'PRAGMA synchronous = NORMAL',
        'BEGIN IMMEDIATE',
        'COMMIT',
        'PRAGMA synchronous = FULL',
      ]);
      assert.equal(synchronous(), 2);
    } finally {
      hold.restore();
    }
  });

  /** Waits for a condition, with a deadline. */
  async function until(check: () => boolean, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`not so within ${ms} ms: ${check}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  /** A few turns of the event loop: what a batch not held would have committed by then (setImmediate). */
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  };

  it('holds durable writes while a sync is in flight and commits them in one transaction when it ends', async () => {
    const hold = holdFsync();
    try {
      execs.length = 0;
      const g = new GroupCommit(db);
      const first = g.write(insert('h1'));
      await until(() => hold.calls() === 1);
      // Three durable writes in three turns of the event loop, the sync still in flight.
      const later: Array<Promise<unknown>> = [];
      for (const v of ['h2', 'h3', 'h4']) {
        later.push(g.write(insert(v)));
        await turns(3);
      }
      assert.ok(!seen('h2') && !seen('h3') && !seen('h4'), 'held, not committed, while the sync runs');
      hold.release();
      await first;
      await until(() => hold.calls() === 2);
      assert.ok(seen('h2') && seen('h3') && seen('h4'));
      assert.equal(execs.filter((s) => s === 'BEGIN IMMEDIATE').length, 2, 'one transaction for the three');
      hold.release();
      await Promise.all(later);
    } finally {
      hold.restore();
    }
  });

  it('never holds a write that is not durable: it is committed at once, with the durable ones held so far', async () => {
    const hold = holdFsync();
    try {
      const g = new GroupCommit(db);
      const first = g.write(insert('n1'));
      await until(() => hold.calls() === 1);
      const durable = g.write(insert('n2'));
      await turns(3);
      assert.ok(!seen('n2'));
      await g.write(insert('n3'), false);
      assert.ok(seen('n3') && seen('n2'), 'the unsynced write went at once, and took the held one along');
      assert.equal(hold.calls(), 1, 'the held write waits for the next sync, after the one in flight');
      hold.release();
      await first;
      await until(() => hold.calls() === 2);
      hold.release();
      await durable;
    } finally {
      hold.restore();
    }
  });

  it('fails a durable write whose sync fails: it must not be promised', async () => {
    const hold = holdFsync();
    try {
      const g = new GroupCommit(db);
      const w = g.write(insert('x'));
      await new Promise((r) => setTimeout(r, 20));
      hold.release(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
      await assert.rejects(w, /EIO/);
    } finally {
      hold.restore();
    }
  });

  it('sets FULL back when a write of an unsynced batch throws, and the others of the batch land', async () => {
    const g = new GroupCommit(db);
    const results = await Promise.allSettled([
      g.write(() => {
        throw new Error('broken write');
      }, false),
      g.write(insert('e'), false),
    ]);
    assert.equal(results[0]!.status, 'rejected');
    assert.equal(results[1]!.status, 'fulfilled');
    assert.ok(seen('e'));
    assert.equal(synchronous(), 2);
  });

  it('waits for a write lock held by another connection without stopping the event loop, then commits', async () => {
    const holder = new DatabaseSync(join(dir, 'db.sqlite'));
    holder.exec('BEGIN IMMEDIATE');
    const g = new GroupCommit(db);
    let settled = false;
    const write = g.write(insert('f')).then(() => {
      settled = true;
    });
    // Timers keep firing while the write waits: the loop is free.
    let ticks = 0;
    const started = Date.now();
    while (ticks < 20) {
      await new Promise((r) => setTimeout(r, 1));
      ticks++;
    }
    assert.ok(Date.now() - started < 2000, 'the event loop turned freely');
    assert.equal(settled, false, 'nothing is committed while another connection holds the lock');
    holder.exec('COMMIT');
    holder.close();
    await write;
    assert.ok(seen('f'));
  });

  it('fails the writes as a busy database would once the lock stays taken past the busy timeout', async () => {
    const holder = new DatabaseSync(join(dir, 'db.sqlite'));
    holder.exec('BEGIN IMMEDIATE');
    try {
      const g = new GroupCommit(db, { busyTimeoutMs: 50 });
      await assert.rejects(g.write(insert('g')), /database is locked/);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    assert.ok(!seen('g'));
  });

  /**
   * fs.fsyncSync counted, and `extraMs` of busy time standing in for the sync: a slow disk cannot be had
   * on demand here, nor a fast one (a real sync of this machine's disk now and then takes over 4 ms, which
   * rightly sends the next ones to the thread pool and made a test that wants them on the loop flaky).
   */
  function countSyncOnLoop(extraMs: () => number): { calls: () => number; restore(): void } {
    let calls = 0;
    const restore = replaceFs('fsyncSync', () => {
      calls++;
      const until = performance.now() + extraMs();
      while (performance.now() < until);
    });
    return { calls: () => calls, restore };
  }

  it('with syncOnLoop, syncs the WAL on the event loop before the batch settles, never in the thread pool', {
    timeout: 10_000,
  }, async () => {
    // The thread pool's fsync counted and passed through.
    const fsyncReal = fs.fsync;
    let poolCalls = 0;
    const restorePool = replaceFs('fsync', ((fd: number, cb: (err: Error | null) => void) => {
      poolCalls++;
      fsyncReal(fd, cb);
    }) as typeof fs.fsync);
    const loop = countSyncOnLoop(() => 0);
    try {
      const g = new GroupCommit(db, { syncOnLoop: true });
      await Promise.all([g.write(insert('h')), g.write(insert('i'))]);
      await g.write(insert('j'));
      assert.ok(seen('h') && seen('i') && seen('j'));
      assert.equal(loop.calls(), 2, 'one sync a batch');
      assert.equal(poolCalls, 0);
      // Unsynced writes are not synced on the loop either.
      await g.write(insert('k'), false);
      assert.equal(loop.calls(), 2);
    } finally {
      loop.restore();
      restorePool();
    }
  });

  it('with syncOnLoop, a sync slower than 4 ms sends the next ones to the thread pool for ten seconds', {
    timeout: 10_000,
  }, async () => {
    let slow = 6;
    const loop = countSyncOnLoop(() => slow);
    const pool = holdFsync();
    mock.timers.enable({ apis: ['Date'], now: Date.now() });
    try {
      const g = new GroupCommit(db, { syncOnLoop: true });
      await g.write(insert('l'));
      assert.equal(loop.calls(), 1);
      slow = 0;
      // A durable write whose sync is to reach the (held) thread pool: counted there, then let go.
      const viaPool = async (v: string, calls: number, why: string) => {
        const w = g.write(insert(v));
        await new Promise((r) => setImmediate(r));
        await new Promise((r) => setImmediate(r));
        assert.equal(pool.calls(), calls, why);
        pool.release();
        await w;
      };
      await viaPool('m', 1, 'the next sync went to the thread pool');
      mock.timers.tick(9_000);
      await viaPool('n', 2, 'still the thread pool after 9 s');
      mock.timers.tick(1_001);
      await g.write(insert('o'));
      assert.equal(loop.calls(), 2, 'back on the loop after 10 s');
      assert.equal(pool.calls(), 2);
    } finally {
      mock.timers.reset();
      pool.restore();
      loop.restore();
    }
  });

  it('with syncOnLoop, fails a durable write whose sync fails', { timeout: 10_000 }, async () => {
    const restore = replaceFs('fsyncSync', () => {
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    });
    try {
      const g = new GroupCommit(db, { syncOnLoop: true });
      await assert.rejects(g.write(insert('p')), /EIO/);
    } finally {
      restore();
    }
  });
});

describe('the statement journal of a batch', () => {
  /** The files this process has open, by name (Linux: /proc/self/fd). */
  const openFiles = () =>
    readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/self/fd/${fd}`)];
      } catch {
        return [];
      }
    });

  it('stays in memory: a write that changes more than 64 KiB of pages opens no temporary file', {
    skip: !existsSync('/proc/self/fd') && 'needs /proc/self/fd',
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailwerk-stmtjournal-'));
    const db = openDatabase({ path: join(dir, 'db.sqlite') });
    try {
      db.exec('CREATE TABLE big (v BLOB)');
      const add = db.prepare('INSERT INTO big (v) VALUES (?)');
      for (let i = 0; i < 200; i++) add.run(Buffer.alloc(1000, i));
      const g = new GroupCommit(db);
      // Inside the write's SAVEPOINT every page of the table is changed, so what ROLLBACK TO would need
      // (about 200 KB) passes the size at which SQLite moves a statement journal from memory to a file
      // (SQLite names those etilqs_…, and removes them at once: they show only as open descriptors).
      const during = await g.write(() => {
        db.exec('UPDATE big SET v = zeroblob(1000)');
        return openFiles().filter((f) => f.includes('etilqs_'));
      });
      assert.deepEqual(during, []);
      assert.equal(
        Number(
          (db.prepare('SELECT count(*) AS n FROM big WHERE v = zeroblob(1000)').get() as { n: number }).n,
        ),
        200,
      );
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
