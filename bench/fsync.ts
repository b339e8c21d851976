/**
 * The disk's synced write alone: 8 KB written and fsync'd, again and again, for a number of seconds,
 * in a file under the directory given (the store's own, to measure the disk the store is on). Every
 * 250 Mailwerk answers waits for one such sync, shared by the deliveries of one group commit; a sync
 * that stalls holds all of them at once. So this tells whether a p99 measured on a machine is the
 * software's or the disk's (bench/README.md, compare.ts).
 *
 *   node bench/fsync.ts [seconds=20] [dir=the system's temporary directory]
 *
 * Prints the syncs made, p50 / p99 / p99.9 / max in ms, and when each sync over 20 ms came (seconds
 * from the start) with how long it took.
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentile } from './smtp-client.ts';

const seconds = Number(process.argv[2] ?? 20);
const dir = mkdtempSync(join(process.argv[3] ?? tmpdir(), 'mailwerk-fsync-'));
const fd = openSync(join(dir, 'sync.test'), 'w', 0o600);
const block = Buffer.alloc(8192, 1);
const times: number[] = [];
const stalls: string[] = [];
const start = performance.now();
try {
  // Over the same 8 MB again and again, as a WAL is written from its start again after a checkpoint.
  for (let i = 0; performance.now() - start < seconds * 1000; i++) {
    writeSync(fd, block, 0, block.length, (i % 1000) * block.length);
    const t = performance.now();
    fsyncSync(fd);
    const ms = performance.now() - t;
    times.push(ms);
    if (ms > 20) stalls.push(`${((t - start) / 1000).toFixed(1)} s: ${ms.toFixed(0)} ms`);
  }
} finally {
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
}
times.sort((a, b) => a - b);
const f = (p: number) => percentile(times, p).toFixed(2);
console.log(
  `${times.length} syncs in ${seconds} s; p50 ${f(50)} / p99 ${f(99)} / p99.9 ${f(99.9)} / max ${times.at(-1)!.toFixed(1)} ms`,
);
console.log(`over 20 ms: ${stalls.length ? stalls.join(', ') : 'none'}`);
