/**
 * The queue's synced write alone, in one process: `enqueue` of a 5 KB message (body and entry in one
 * transaction, synced before it settles, as the MX does before its 250) on a fresh SQLite store,
 * arriving at a steady rate in bunches of a timer tick as twenty SMTP sessions end their DATA. No
 * network and no load generator in the way: what storage costs a message (CPU of this process, the
 * thread pool's fsync included), how long a write waits, and how long the event loop is held up —
 * the part of the MX's cost and of its p99 that the store owns.
 *
 *   node bench/queue-write.ts [writes=6000] [rate=2000] [rounds=3]
 *
 * Prints per round: CPU µs a write, p50/p99 of a write's time to settle, the event loop's delay
 * (p99, max) and when the writes slower than 5 ms began (ms from the start: a pattern in time tells
 * a periodic stall, such as SQLite's automatic checkpoint, from the disk's own).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { contentId } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { percentile } from './smtp-client.ts';

const [writes = 6000, rate = 2000, rounds = 3] = process.argv.slice(2).map(Number);
const body = Buffer.alloc(5000, 'x');

async function round(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'mailwerk-queue-write-'));
  const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
  const latencies: number[] = [];
  const slowStarts: number[] = [];
  let t0 = performance.now();
  const one = async (i: number) => {
    const data = Buffer.concat([body, Buffer.from(String(i))]);
    const t = performance.now();
    await store.enqueue({
      sender: 'load@ext.org',
      recipients: [{ address: 'bob@example.org' }],
      blobId: contentId(data),
      data,
      size: data.length,
      meta: { client: '127.0.0.1' },
    });
    const ms = performance.now() - t;
    latencies.push(ms);
    if (ms > 5) slowStarts.push(Math.round(t - t0));
  };
  // Unmeasured: statements prepared, code optimized.
  await Promise.all(Array.from({ length: 200 }, (_, i) => one(-1 - i)));
  latencies.length = 0;
  slowStarts.length = 0;
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpu = process.cpuUsage();
  t0 = performance.now();
  const pending: Promise<void>[] = [];
  let next = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(writes, Math.floor(((performance.now() - t0) * rate) / 1000));
      while (next < due) pending.push(one(next++));
      if (next >= writes) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await Promise.all(pending);
  const used = process.cpuUsage(cpu);
  loop.disable();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  const ms = (ns: number) => (ns / 1e6).toFixed(1);
  const starts = [...new Set(slowStarts)];
  return `| ${Math.round((used.user + used.system) / writes)} | ${percentile(latencies, 50).toFixed(2)} / ${percentile(latencies, 99).toFixed(1)} | ${ms(loop.percentile(99))} / ${ms(loop.max)} | ${starts.slice(0, 8).join(', ')}${starts.length > 8 ? ' …' : ''} |`;
}

console.log(`${writes} queue writes of 5 KB a round, arriving at ${rate} a second`);
console.log(
  '| round | CPU µs/write | write p50 / p99 ms | event loop delay p99 / max ms | slow writes began at (ms) |',
);
console.log('| --- | --- | --- | --- | --- |');
for (let i = 1; i <= rounds; i++) console.log(`| ${i} ${await round()}`);
