/**
 * Checkpoints of the WAL off the writers' event loops.
 *
 * A commit appends the pages it changed to the WAL; a checkpoint copies them
 * into the database file and lets the WAL start again from its beginning.
 * SQLite's own (wal_autocheckpoint) runs inside the commit that takes the
 * WAL past 1,000 frames, on that writer's event loop: under the 20-session
 * load the MX or the MDA stopped for about 5 ms every 1,000 frames (~140
 * messages) to copy 4 MB and sync twice, and no SMTP reply or delivery went
 * on meanwhile (docs/decisions.md, "Checkpoints in a thread").
 *
 * This runs them in a worker thread of the MDA's process, on its own
 * connection, when 1,000 frames wait to be copied; the writers' own
 * checkpoints stay as a backstop at BACKSTOP_FRAMES, for a host where no MDA
 * runs or the thread falls behind.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CheckpointWorkerData } from './checkpoint-worker.ts';

/** The writers' own checkpoints (PRAGMA wal_autocheckpoint): past this many frames, about 16 MB. */
export const BACKSTOP_FRAMES = 4000;

export interface CheckpointerOptions {
  /** Frames waiting to be copied that start a checkpoint (SQLite's own default threshold). */
  thresholdFrames?: number;
  /** How often the wal-index is looked at while the WAL grows, ms. */
  pollMs?: number;
  /** Told of what went wrong in the thread; the backstop keeps the WAL bounded meanwhile. */
  onError?: (err: Error) => void;
}

export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<unknown>;

  /** `path`: a database file in WAL mode with a connection open in this process (its -shm exists). */
  constructor(path: string, options: CheckpointerOptions = {}) {
    const data: CheckpointWorkerData = {
      path,
      thresholdFrames: options.thresholdFrames ?? 1000,
      pollMs: options.pollMs ?? 5,
      idlePollMs: 200,
    };
    // The thread's module beside this one: .ts from the sources, .js from the build (runtime/src/build.ts).
    const file = new URL(`./checkpoint-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
    this.worker = new Worker(file, { workerData: data });
    // Not events.once: it would reject on the 'error' a failing thread emits before its 'exit'.
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve));
    // The thread never keeps the process alive; the store's close stops it.
    this.worker.unref();
    const onError = options.onError ?? (() => {});
    this.worker.on('error', onError);
    this.worker.on('message', (m: { error?: string }) => {
      if (m.error) onError(new Error(`WAL checkpointer: ${m.error}`));
    });
  }

  /** Ends the thread after the checkpoint it may be running; resolves when it has closed its connection. */
  async stop(): Promise<void> {
    // Held open until the thread has gone: an unreferenced one would let the process end meanwhile.
    this.worker.ref();
    this.worker.postMessage('stop');
    await this.exited;
  }
}
