/**
 * The mailbox append alone: the SQLite store in this process, messages stored as the MDA stores a
 * delivery (body, message row, sort fields, journal, quota; synced before it settles), `batch` at a
 * time so that the group commit takes them in one transaction as it does under load. Prints the
 * messages a second, the CPU a message (user and system) and the read and write system calls a message
 * (from /proc/self/io: pread and pwrite count there too, so the WAL's frames and the statement journal's
 * spills show). One process and no network: much less noisy than the end-to-end benchmarks, and the
 * system calls do not depend on the machine's load at all.
 *
 *   node bench/append.ts [messages=6000] [batch=6] [rounds=3] [size=5000]
 *
 * Each round appends to a fresh store; the first also warms V8 up.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMessage } from '@mailwerk/mime';
import { contentId } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { benchMessage } from './smtp-client.ts';

const [count = 6000, batch = 6, rounds = 3, size = 5000] = process.argv.slice(2).map(Number);

/** The read and write system calls this process made so far (all its threads). */
function syscalls(): { reads: number; writes: number } {
  const io = readFileSync('/proc/self/io', 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
  return { reads: field('syscr'), writes: field('syscw') };
}

async function round(n: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-append-'));
  const store = openSqliteStore({ path: join(dir, 'mailwerk.sqlite'), blobs: 'sqlite' });
  try {
    await store.addDomain('example.org');
    const account = await store.createAccount({
      address: 'bob@example.org',
      passwordHash: 'x',
      mailboxes: [{ name: 'INBOX' }],
    });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    const body = benchMessage(size);
    const cpu0 = process.cpuUsage();
    const io0 = syscalls();
    const t0 = performance.now();
    for (let i = 0; i < count; i += batch) {
      await Promise.all(
        Array.from({ length: Math.min(batch, count - i) }, (_, j) => {
          // Each message its own content, as deliveries are (a Message-ID of its own).
          const raw = Buffer.from(`Message-ID: <${i + j}.${n}@bench.example>\r\n${body}`);
          return store.appendMessage({
            accountId: account.id,
            mailboxId: inbox.id,
            blobId: contentId(raw),
            data: raw,
            size: raw.length,
            structure: parseMessage(raw),
            deliveryKey: `mailwerk.bench${i + j}`,
          });
        }),
      );
    }
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const io = syscalls();
    const per = (v: number) => (v / count).toFixed(1);
    return `| ${n} | ${Math.round(count / secs)} | ${Math.round((cpu.user + cpu.system) / count)} (${Math.round(cpu.user / count)} / ${Math.round(cpu.system / count)}) | ${per(io.writes - io0.writes)} | ${per(io.reads - io0.reads)} |`;
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

console.log(`${count} messages of about ${size} bytes a round, ${batch} at a time`);
console.log('| round | msg/s | CPU µs/msg (user / sys) | write syscalls/msg | read syscalls/msg |');
console.log('| --- | --- | --- | --- | --- |');
for (let n = 1; n <= rounds; n++) console.log(await round(n));
