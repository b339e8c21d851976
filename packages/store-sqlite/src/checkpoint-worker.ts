/**
 * The WAL checkpointer's thread (see checkpointer.ts): its own connection to
 * the database, a look at the wal-index every few milliseconds, and a
 * checkpoint when enough frames wait to be copied into the database.
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';
import { WalIndexReader } from './wal-index.ts';

export interface CheckpointWorkerData {
  path: string;
  /** Frames waiting to be copied that start a checkpoint. */
  thresholdFrames: number;
  /** How often the wal-index is looked at while the WAL grows, ms; up to idlePollMs while it does not. */
  pollMs: number;
  idlePollMs: number;
}

/** Tries of the closing FULL checkpoint a pass makes, a millisecond apart, before it leaves it to the next. */
const FULL_TRIES = 5;

const { path, thresholdFrames, pollMs, idlePollMs } = workerData as CheckpointWorkerData;
const port = parentPort!;

// Never SQLite's sleeping busy wait: a FULL checkpoint that waited for the write lock (or for readers,
// holding it) would hold up every writer of the database. Without a busy handler it takes the lock only
// when it is free at once, and copies no further than the oldest reader (SQLite: sqlite3_wal_checkpoint_v2).
const db = new DatabaseSync(path, { timeout: 0 });
// A checkpoint syncs the WAL before it copies frames into the database and the database after (FULL and
// NORMAL alike); the WAL is restarted only over frames that are on disk in both places.
db.exec('PRAGMA synchronous = FULL');
// A read opens the wal-index (the -shm file), which the reader below maps by hand.
db.prepare('SELECT count(*) AS n FROM sqlite_master').get();
const wal = new WalIndexReader(path);
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const full = db.prepare('PRAGMA wal_checkpoint(FULL)');
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * One checkpoint: the bulk of the frames PASSIVE, with no lock that stops a
 * writer; then the few written meanwhile under the write lock (FULL), so that
 * every frame is in the database and the next write starts the WAL from its
 * beginning. Without that second step a checkpointer beside busy writers
 * never catches up, and the WAL only grows. A try that finds the write lock
 * taken copies what it can and the next try comes a millisecond later.
 */
function checkpoint(): void {
  passive.get();
  for (let i = 0; i < FULL_TRIES; i++) {
    if ((full.get() as { busy: number }).busy === 0) return;
    Atomics.wait(pause, 0, 0, 1);
  }
}

let timer: NodeJS.Timeout | null = null;
let delay = pollMs;
let lastFrame = -1;

function tick(): void {
  timer = null;
  try {
    const at = wal.read();
    if (at !== null && at.mxFrame - at.nBackfill >= thresholdFrames) {
      checkpoint();
      // No frame copied: a reader holds them back (or another connection checkpoints); not again at once.
      const after = wal.read();
      const stuck = after !== null && after.nBackfill === at.nBackfill && after.mxFrame >= at.mxFrame;
      delay = stuck ? idlePollMs : pollMs;
    } else if (at !== null && at.mxFrame !== lastFrame) delay = pollMs;
    else delay = Math.min(delay * 2, idlePollMs);
    lastFrame = at?.mxFrame ?? -1;
  } catch (err) {
    // Told, not fatal: the writers' own checkpoints (the backstop) keep the WAL bounded meanwhile.
    port.postMessage({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    delay = idlePollMs;
  }
  timer = setTimeout(tick, delay);
}

port.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  if (timer) clearTimeout(timer);
  wal.close();
  db.close();
  port.close();
});

tick();
