/**
 * The mailbox append alone: the SQLite store in this process, messages stored as the MDA stores a
 * delivery (body, message row, sort fields, journal, quota; synced before it settles), `batch` at a
 * time so that the group commit takes them in one transaction as it does under load. Prints the
 * messages a second, the CPU a message (user and system) and the read and write system calls a message
 * (from /proc/self/io: pread and pwrite count there too, so the WAL's frames and the statement journal's
 * spills show). One process and no network: much less noisy than the end-to-end benchmarks, and the
 * system calls do not depend on the machine's load at all. Then, once, the pages a message writes to the
 * WAL by table and index: read off the WAL while another connection's read transaction keeps SQLite from
 * checkpointing it, and named with the dbstat table. Last, the four reads the MDA makes a delivery
 * before its append (the recipient's domain and account at RCPT, the INBOX row and the active Sieve
 * script at DATA), timed between the appends: through the store's methods, then the same four SELECTs
 * as plain statements, each in its own (autocommit) read transaction and the four in one.
 *
 *   node bench/append.ts [messages=6000] [batch=6] [rounds=3] [size=5000]
 *
 * Each round appends to a fresh store; the first also warms V8 up.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseMessage } from '@mailwerk/mime';
import { contentId } from '@mailwerk/store';
import { storeWithBob } from '../packages/store-sqlite/test/helpers.ts';
import { benchMessage } from './smtp-client.ts';

const [count = 6000, batch = 6, rounds = 3, size = 5000] = process.argv.slice(2).map(Number);

/** The read and write system calls this process made so far (all its threads). */
function syscalls(): { reads: number; writes: number } {
  const io = readFileSync('/proc/self/io', 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
  return { reads: field('syscr'), writes: field('syscw') };
}

/** A fresh store in a temporary directory with bob@example.org, and a function appending `batch` messages. */
async function freshStore() {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-append-'));
  const path = join(dir, 'mailwerk.sqlite');
  const { store, account, inbox } = await storeWithBob(path);
  const body = benchMessage(size);
  let next = 0;
  /** `n` messages, `batch` at a time, each with content of its own (a Message-ID), as deliveries are. */
  const append = async (n: number) => {
    for (let i = 0; i < n; i += batch) {
      await Promise.all(
        Array.from({ length: Math.min(batch, n - i) }, () => {
          const k = next++;
          const raw = Buffer.from(`Message-ID: <${k}@bench.example>\r\n${body}`);
          return store.appendMessage({
            accountId: account.id,
            mailboxId: inbox.id,
            blobId: contentId(raw),
            data: raw,
            size: raw.length,
            structure: parseMessage(raw),
            deliveryKey: `mailwerk.bench${k}`,
          });
        }),
      );
    }
  };
  const close = async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { path, store, account, append, close };
}

async function round(n: number): Promise<string> {
  const { append, close } = await freshStore();
  try {
    const cpu0 = process.cpuUsage();
    const io0 = syscalls();
    const t0 = performance.now();
    await append(count);
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const io = syscalls();
    const per = (v: number) => (v / count).toFixed(1);
    return `| ${n} | ${Math.round(count / secs)} | ${Math.round((cpu.user + cpu.system) / count)} (${Math.round(cpu.user / count)} / ${Math.round(cpu.system / count)}) | ${per(io.writes - io0.writes)} | ${per(io.reads - io0.reads)} |`;
  } finally {
    await close();
  }
}

/**
 * The WAL frames (pages written) a message, by table and index, for `n` messages appended to a store
 * already holding `before`. A read transaction held on another connection keeps the checkpoint from
 * copying or restarting the WAL meanwhile, so every frame the appends wrote is still in it.
 */
async function framesByTree(before: number, n: number): Promise<Array<[string, number]>> {
  const { path, append, close } = await freshStore();
  try {
    await append(before);
    const reader = new DatabaseSync(path);
    try {
      // An empty WAL, then a read transaction that keeps it from being checkpointed or restarted.
      reader.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM messages').get();
      await append(n);
      reader.exec('COMMIT');
      const wal = readFileSync(`${path}-wal`);
      // The WAL: a 32-byte header, then frames of a 24-byte header (the page number first) and a page.
      const pageSize = wal.readUInt32BE(8);
      const frame = 24 + pageSize;
      const names = new Map<number, string>();
      for (const r of reader.prepare('SELECT name, pageno, pagetype FROM dbstat').all())
        names.set(Number(r.pageno), `${r.name}${r.pagetype === 'overflow' ? ' (overflow pages)' : ''}`);
      const by = new Map<string, number>();
      for (let off = 32; off + frame <= wal.length; off += frame) {
        const name = names.get(wal.readUInt32BE(off)) ?? '(free list)';
        by.set(name, (by.get(name) ?? 0) + 1);
      }
      return [...by].map(([name, c]): [string, number] => [name, c / n]).sort((a, b) => b[1] - a[1]);
    } finally {
      reader.close();
    }
  } finally {
    await close();
  }
}

/**
 * The CPU of the four reads of a delivery, µs, between appends of `batch` (the reads of the next batch
 * run while the WAL grows and the last commit's sync may still be under way, as in the MDA): through
 * the store (names normalized, rows made objects, each read its own transaction), and as plain
 * statements, each alone and the four inside one BEGIN … COMMIT.
 */
async function lookups(n: number): Promise<{ store: number; each: number; together: number }> {
  const { path, store, account, append, close } = await freshStore();
  // A second connection to the same file for the explicit transaction: the store's own connection is
  // the group commit's, which must not find a transaction open.
  const db = new DatabaseSync(path);
  const begin = db.prepare('BEGIN');
  const commit = db.prepare('COMMIT');
  const reads = [
    db.prepare('SELECT * FROM domains WHERE name = ?'),
    db.prepare('SELECT * FROM accounts WHERE address = ?'),
    db.prepare('SELECT * FROM mailboxes WHERE account_id = ? AND name = ?'),
    db.prepare('SELECT * FROM sieve_scripts WHERE account_id = ? AND active = 1'),
  ];
  const id = Number(account.id);
  const plain = () => {
    reads[0]!.get('example.org');
    reads[1]!.get('bob@example.org');
    reads[2]!.get(id, 'INBOX');
    reads[3]!.get(id);
  };
  const sum = { store: 0, each: 0, together: 0 };
  const cpu = (key: keyof typeof sum, t: NodeJS.CpuUsage) => {
    const u = process.cpuUsage(t);
    sum[key] += u.user + u.system;
  };
  try {
    for (let i = 0; i < n; i += batch) {
      for (let j = 0; j < batch; j++) {
        let t = process.cpuUsage();
        await store.getDomain('example.org');
        await store.getAccountByAddress('bob@example.org');
        await store.getMailbox(account.id, 'INBOX');
        await store.getActiveSieveScript(account.id);
        cpu('store', t);
        t = process.cpuUsage();
        plain();
        cpu('each', t);
        t = process.cpuUsage();
        begin.run();
        plain();
        commit.run();
        cpu('together', t);
      }
      await append(batch);
    }
    return { store: sum.store / n, each: sum.each / n, together: sum.together / n };
  } finally {
    db.close();
    await close();
  }
}

console.log(`${count} messages of about ${size} bytes a round, ${batch} at a time`);
console.log('| round | msg/s | CPU µs/msg (user / sys) | write syscalls/msg | read syscalls/msg |');
console.log('| --- | --- | --- | --- | --- |');
for (let n = 1; n <= rounds; n++) console.log(await round(n));
const frames = await framesByTree(3000, 600);
const total = frames.reduce((sum, [, c]) => sum + c, 0);
console.log(
  `\nWAL frames a message, 600 messages appended to 3,000, ${batch} at a time: ${total.toFixed(2)}`,
);
for (const [name, c] of frames) console.log(`  ${c.toFixed(2)}  ${name}`);

console.log('\nThe four reads of a delivery, between appends: CPU µs, 3,000 deliveries a round');
console.log('| round | through the store | plain SQL, each alone | plain SQL, in one transaction |');
console.log('| --- | --- | --- | --- |');
for (let n = 1; n <= rounds; n++) {
  const r = await lookups(3000);
  console.log(`| ${n} | ${r.store.toFixed(1)} | ${r.each.toFixed(1)} | ${r.together.toFixed(1)} |`);
}
