/**
 * The receiving path on loopback: a fresh store, the MDA's LMTP server and the
 * MX on 127.0.0.1 with ephemeral ports, and the queue runner between them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InProcessBus } from '@mailwerk/bus';
import { createLmtpServer } from '@mailwerk/mda';
import type { SmtpServer } from '@mailwerk/smtp';
import {
  type Account,
  contentId,
  DEFAULT_MAILBOXES,
  formatReply,
  type MailStore,
  type QueueEntry,
} from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import {
  createInboundServer,
  type InboundLimits,
  type InboundServerOptions,
  QueueRunner,
  type QueueRunnerOptions,
} from '../src/index.ts';

let tlsPair: { key: string; cert: string } | null = null;
export async function testTls() {
  tlsPair ??= await generateSelfSigned('mx.test.example');
  return tlsPair;
}

export async function listen(server: SmtpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.server.address() as AddressInfo).port;
}

export const closeServer = (server: SmtpServer) =>
  new Promise<void>((resolve) => server.close(() => resolve()));

export interface Rig {
  dir: string;
  store: MailStore;
  bus: InProcessBus;
  smtpPort: number;
  lmtpPort: number;
  runner: QueueRunner;
  users: Record<string, Account>;
  /** The reply of every recipient attempt, in order. */
  attempts: string[];
  /** Stops the MDA (to test queueing while it is down) and starts it again on the same port. */
  stopMda(): Promise<void>;
  startMda(): Promise<void>;
  inbox(address: string, mailbox?: string): Promise<Buffer[]>;
  /** Queues a message as the MX would have (for what only the MX can write, such as our own trust headers). */
  queue(sender: string, recipients: string[], data: string): Promise<QueueEntry>;
  close(): Promise<void>;
}

export async function rig(
  limits: Partial<InboundLimits> = {},
  runnerOptions: Partial<QueueRunnerOptions> = {},
  mxOptions: Partial<InboundServerOptions> = {},
): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-mta-'));
  const store = openSqliteStore({ path: join(dir, 'mailwerk.sqlite'), blobs: 'sqlite' });
  const bus = new InProcessBus();
  await store.addDomain('example.org');
  const users: Record<string, Account> = {};
  const attempts: string[] = [];
  for (const name of ['bob', 'ann', 'carl']) {
    users[name] = await store.createAccount({
      address: `${name}@example.org`,
      passwordHash: 'x',
      mailboxes: [...DEFAULT_MAILBOXES, { name: 'Lists' }],
    });
  }
  let mda = createLmtpServer({ store, bus, hostname: 'mda.test.example', maxMessageSize: 10_000_000 });
  const lmtpPort = await listen(mda);
  const runner = new QueueRunner({
    store,
    hostname: 'mx.test.example',
    lmtp: `127.0.0.1:${lmtpPort}`,
    isLocalDomain: async (d) => (await store.getDomain(d)) !== null,
    retry: { delayMs: () => 200, maxAgeMs: 3_600_000 },
    pollMs: 50,
    mdaPauseMs: 150,
    onAttempt: (_entry, results) => {
      attempts.push(...results.map((x) => (x.reply ? formatReply(x.reply) : '')));
    },
    ...runnerOptions,
  });
  const smtp = createInboundServer({
    store,
    hostname: 'mx.test.example',
    tls: await testTls(),
    limits: { maxMessageSize: 200_000, maxRecipients: 5, ...limits },
    // As the MTA service wires them: local mail delivered before the reply; else a fresh entry queued
    // leased to the runner and handed over.
    deliverNow: (entry, data, expanded) => runner.deliverNow(entry, data, expanded),
    handoff: runner,
    onQueued: (entry) => runner.queued(entry),
    ...mxOptions,
  });
  const smtpPort = await listen(smtp);
  runner.start();
  return {
    dir,
    store,
    bus,
    smtpPort,
    lmtpPort,
    runner,
    users,
    attempts,
    async stopMda() {
      await closeServer(mda);
    },
    async startMda() {
      mda = createLmtpServer({ store, bus, hostname: 'mda.test.example', maxMessageSize: 10_000_000 });
      await new Promise<void>((resolve) => mda.listen(lmtpPort, '127.0.0.1', resolve));
    },
    async inbox(address, mailbox = 'INBOX') {
      const acc = (await store.getAccountByAddress(address))!;
      const box = (await store.getMailbox(acc.id, mailbox))!;
      return Promise.all((await store.listMessages(box.id)).map((m) => store.blobs.get(m.blobId)));
    },
    async queue(sender, recipients, text) {
      const data = Buffer.from(text);
      const entry = await store.enqueue({
        sender,
        recipients: recipients.map((address) => ({ address })),
        blobId: contentId(data),
        data,
        size: data.length,
      });
      runner.wake();
      return entry;
    },
    async close() {
      await runner.stop();
      await Promise.all([closeServer(smtp), closeServer(mda).catch(() => {})]);
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Polls until `check` returns a truthy value or the time is up. */
export async function eventually<T>(
  check: () => Promise<T | null | undefined | false>,
  ms = 5000,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A raw SMTP client: writes exactly what the test says (pipelined, bare LFs
 * and all) and collects complete replies, so reply codes can be checked to
 * the digit.
 */
export class RawClient {
  private buffer = '';
  private readonly replies: string[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  greeting = '';
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      // A complete reply ends with a line whose code is followed by a space.
      for (;;) {
        const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buffer);
        if (!m) break;
        this.replies.push(m[0].trimEnd());
        this.buffer = this.buffer.slice(m[0].length);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static async open(port: number): Promise<RawClient> {
    const c = await RawClient.connect(port);
    c.greeting = await c.read();
    return c;
  }

  /** Connects without waiting for the greeting (to talk before it). */
  static async connect(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(ms = 5000): Promise<void> {
    const until = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > until) throw new Error('the server kept the connection open');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The next reply, waiting up to `ms`. */
  async read(ms = 5000): Promise<string> {
    const until = Date.now() + ms;
    while (this.replies.length === 0) {
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no reply in time; unparsed: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.replies.shift()!;
  }

  write(text: string): void {
    this.socket.write(text, 'latin1');
  }

  /** Sends one command and returns its reply. */
  async cmd(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** Replies that are already in, without waiting. */
  drain(): string[] {
    return this.replies.splice(0);
  }

  close(): void {
    this.socket.destroy();
  }
}
