// The server side of bench/imap.ts and bench/imap-mix.ts, in a process of its
// own so its memory is measured alone: a SQLite store in a temporary
// directory, the IMAP service on loopback (implicit TLS).
// - `imap-server.ts COUNT`: bob@example.org with the mailbox Big of COUNT messages;
// - `imap-server.ts COUNT USERS PER_USER`: also u1…uUSERS@example.org, each INBOX holding PER_USER messages.
// Talks to the driver over IPC: {ready, port}, then answers {memory} requests.
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import { InProcessBus } from '@mailwerk/bus';
import { ImapService } from '@mailwerk/imap';
import { parseMessage } from '@mailwerk/mime';
import { contentId, DEFAULT_MAILBOXES } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { message, PASSWORD } from './messages.ts';

const count = Number(process.argv[2] ?? 10_000);
const users = Number(process.argv[3] ?? 0);
const perUser = Number(process.argv[4] ?? count);
const dir = await mkdtemp(join(tmpdir(), 'mailwerk-bench-imap-'));
const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
await store.addDomain('example.org');
const account = await store.createAccount({
  address: 'bob@example.org',
  passwordHash: await hashPassword(PASSWORD),
  mailboxes: [...DEFAULT_MAILBOXES, { name: 'Big', specialUse: null }],
});
const big = (await store.getMailbox(account.id, 'Big'))!;

async function fill(accountId: string, mailboxId: string, n: number): Promise<void> {
  const batch: Promise<unknown>[] = [];
  for (let i = 1; i <= n; i++) {
    const raw = message(i);
    batch.push(
      store.appendMessage({
        accountId,
        mailboxId,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
        flags: i % 3 === 0 ? ['\\Seen'] : [],
      }),
    );
    if (batch.length === 200) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}

const fillStart = performance.now();
await fill(account.id, big.id, count);
for (let u = 1; u <= users; u++) {
  const a = await store.createAccount({
    address: `u${u}@example.org`,
    passwordHash: await hashPassword(PASSWORD),
    mailboxes: [...DEFAULT_MAILBOXES],
  });
  await fill(a.id, (await store.getMailbox(a.id, 'INBOX'))!.id, perUser);
}
const fillMs = performance.now() - fillStart;

const service = new ImapService({
  store,
  bus: new InProcessBus(),
  hostname: 'bench.example.org',
  tls: await generateSelfSigned('bench.example.org'),
  allowPlaintext: false,
  maxMessageSize: 10 * 1024 * 1024,
  maxConnections: 5000,
  maxConnectionsPerIp: 5000,
  throttle: new AuthThrottle(),
});
const server = service.server(true);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;

const memory = () => {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, connections: service.sessions.size };
};

process.on('message', async (msg: { type: string }) => {
  if (msg.type === 'memory') process.send!({ type: 'memory', ...memory() });
  if (msg.type === 'stop') {
    await service.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
    process.exit(0);
  }
});
process.send!({ type: 'ready', port, fillMs });
