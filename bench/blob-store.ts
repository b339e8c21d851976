// Measures message writes into the embedded store with bodies in files vs
// inside SQLite: what one delivery costs (blob put + append, each synced).
// Usage: node bench/blob-store.ts [count=2000] [size=5000] [concurrency=1]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMessage } from '@mailwerk/mime';
import { storeWithBob } from '../packages/store-sqlite/test/helpers.ts';

const count = Number(process.argv[2] ?? 2000);
const size = Number(process.argv[3] ?? 5000);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

for (const kind of ['files', 'sqlite'] as const) {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-bench-'));
  const { store, account, inbox } = await storeWithBob(
    join(dir, 'mailwerk.sqlite'),
    kind === 'files' ? { dir: join(dir, 'blobs') } : 'sqlite',
  );
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const raw = Buffer.from(`Subject: bench ${i}\r\n\r\n${'x'.repeat(size - 30)}\r\n`);
    const s = performance.now();
    const blobId = await store.blobs.put(raw);
    await store.appendMessage({
      accountId: account.id,
      mailboxId: inbox.id,
      blobId,
      size: raw.length,
      structure: parseMessage(raw),
    });
    lat.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  console.log(
    `bodies in ${kind.padEnd(6)}: ${(count / secs).toFixed(0)} msg/s, p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms (${count} x ${size} B, synced)`,
  );
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
