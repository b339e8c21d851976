// The server side of bench/imap.ts, in a process of its own so its memory is
// measured alone: a SQLite store in a temporary directory, one account, a
// mailbox filled with `count` messages, the IMAP service on loopback.
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

const count = Number(process.argv[2] ?? 10_000);
const dir = await mkdtemp(join(tmpdir(), 'mailwerk-bench-imap-'));
const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
await store.addDomain('example.org');
const account = await store.createAccount({
  address: 'bob@example.org',
  passwordHash: await hashPassword('benchmark password'),
  mailboxes: [...DEFAULT_MAILBOXES, { name: 'Big', specialUse: null }],
});
const big = (await store.getMailbox(account.id, 'Big'))!;

/** A message as mailing lists and colleagues send them: a dozen headers, text and HTML alternatives. */
function message(i: number): Buffer {
  const text = `Hello Bob,\r\n\r\nthis is message ${i} of the benchmark. ${'Some words to make it a normal size. '.repeat(20)}\r\n\r\nAnn\r\n`;
  return Buffer.from(
    [
      `Return-Path: <ann@example.net>`,
      `Delivered-To: bob@example.org`,
      `Received: from mx.example.net (mx.example.net [192.0.2.7]) by mx.example.org with ESMTPS id ${i}; Mon, 23 Nov 2026 10:00:00 +0000`,
      `From: Ann Example <ann@example.net>`,
      `To: Bob <bob@example.org>, team@example.org`,
      `Cc: "Carl, the third" <carl@example.net>`,
      `Subject: Report number ${i} =?UTF-8?Q?f=C3=BCr?= the week`,
      `Date: Mon, 23 Nov 2026 10:${String(i % 60).padStart(2, '0')}:00 +0000`,
      `Message-ID: <bench-${i}@example.net>`,
      `In-Reply-To: <bench-${i - 1}@example.net>`,
      `MIME-Version: 1.0`,
      `Content-Type: multipart/alternative; boundary="b${i}"`,
      '',
      `--b${i}`,
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      text,
      `--b${i}`,
      'Content-Type: text/html; charset=utf-8',
      '',
      `<p>${text}</p>`,
      `--b${i}--`,
      '',
    ].join('\r\n'),
  );
}

const fillStart = performance.now();
const batch: Promise<unknown>[] = [];
for (let i = 1; i <= count; i++) {
  const raw = message(i);
  batch.push(
    store.appendMessage({
      accountId: account.id,
      mailboxId: big.id,
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
const port = (server.server.address() as AddressInfo).port;

const memory = () => {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, connections: server.connections.size };
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
