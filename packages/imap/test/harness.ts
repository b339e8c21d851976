// A real IMAP server (our engine) over a SQLite store in a temporary directory, on loopback.
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import { type Bus, InProcessBus } from '@mailwerk/bus';
import { type MessageStructure, parseMessage } from '@mailwerk/mime';
import { contentId, DEFAULT_MAILBOXES, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import type { ContextChanges } from '../src/contexts.ts';
import { type ImapOptions, ImapService } from '../src/index.ts';

export const PASSWORD = 'correct horse battery';

export interface Rig {
  store: MailStore;
  bus: Bus;
  service: ImapService;
  /** Port of the STARTTLS listener (143's role). */
  port: number;
  /** Port of the implicit-TLS listener (993's role). */
  tlsPort: number;
  accounts: Record<string, string>;
  /** The server's certificate (PEM), for clients that must be told to trust it. */
  cert: string;
  /** The SQLite file of the store (for tests that damage rows). */
  dbPath: string;
  client(user?: string, options?: Partial<ImapFlowOptions>): Promise<ImapFlow>;
  close(): Promise<void>;
}

let tlsFiles: Promise<{ key: string; cert: string }> | null = null;
let hash: Promise<string> | null = null;

async function listen(s: Server): Promise<number> {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.address() as AddressInfo).port;
}

export async function rig(
  options: Partial<ImapOptions> & {
    users?: string[];
    quota?: number;
    /** Puts something between the service and the store (a test that needs a failing store). */
    wrapStore?: (s: MailStore) => MailStore;
  } = {},
): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-imap-'));
  const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
  const bus = options.bus ?? new InProcessBus();
  tlsFiles ??= generateSelfSigned('imap.test');
  hash ??= hashPassword(PASSWORD);
  await store.addDomain('example.org');
  const accounts: Record<string, string> = {};
  for (const u of options.users ?? ['bob', 'ann']) {
    const a = await store.createAccount({
      address: `${u}@example.org`,
      passwordHash: await hash,
      mailboxes: [...DEFAULT_MAILBOXES],
      quotaBytes: options.quota ?? null,
    });
    accounts[u] = a.id;
  }
  const { wrapStore, users: _users, quota: _quota, ...serviceOptions } = options;
  const service = new ImapService({
    store: wrapStore ? wrapStore(store) : store,
    bus,
    hostname: 'imap.test',
    tls: await tlsFiles,
    allowPlaintext: false,
    maxMessageSize: 1024 * 1024,
    throttle: new AuthThrottle({ baseDelayMs: 100, maxDelayMs: 400 }),
    ...serviceOptions,
  });
  const port = await listen(service.server(false));
  const tlsPort = await listen(service.server(true));
  const clients: ImapFlow[] = [];
  return {
    store,
    bus,
    service,
    port,
    tlsPort,
    accounts,
    cert: (await tlsFiles).cert,
    dbPath: join(dir, 'db.sqlite'),
    async client(user = 'bob', extra = {}) {
      const c = new ImapFlow({
        host: '127.0.0.1',
        port: tlsPort,
        secure: true,
        tls: { rejectUnauthorized: false },
        auth: { user: `${user}@example.org`, pass: PASSWORD },
        logger: false,
        ...extra,
      });
      await c.connect();
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) await c.logout().catch(() => c.close());
      await service.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until `check` returns a value other than undefined/false, or fails after `ms`. */
export async function eventually<T>(check: () => T | Promise<T>, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Stores a message straight into a user's mailbox and says so on the bus, as delivery does. */
export async function storeMessage(
  r: Rig,
  user: string,
  mailbox: string,
  raw: Buffer,
  options: { flags?: string[]; internalDate?: Date; structure?: MessageStructure } = {},
) {
  const mb = (await r.store.getMailbox(r.accounts[user]!, mailbox))!;
  const m = await r.store.appendMessage({
    accountId: r.accounts[user]!,
    mailboxId: mb.id,
    blobId: contentId(raw),
    data: raw,
    size: raw.length,
    structure: options.structure ?? parseMessage(raw),
    flags: options.flags ?? [],
    ...(options.internalDate ? { internalDate: options.internalDate } : {}),
  });
  await r.bus.publish({
    type: 'message.new',
    accountId: r.accounts[user]!,
    mailboxId: mb.id,
    uid: m.uid,
    modseq: m.modseq,
  });
  return m;
}

export const sample = (subject: string, body = 'Hello there.\r\n') =>
  Buffer.from(
    `From: Ann <ann@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: ${subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\n${body}`,
  );

/** A line-level IMAP client for checking exact responses (TLS or plain, no compression). */
export class RawImap {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private n = 0;
  socket: import('node:net').Socket;

  private constructor(socket: import('node:net').Socket) {
    this.socket = socket;
    this.attach();
  }

  private attach() {
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    this.socket.on('close', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(port: number, secure: boolean, servername?: string): Promise<RawImap> {
    const { connect } = await import(secure ? 'node:tls' : 'node:net');
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername });
    const c = new RawImap(socket);
    await c.until((t) => t.includes('\r\n'));
    c.take();
    return c;
  }

  /** Upgrades with STARTTLS. */
  async starttls(): Promise<string> {
    const r = await this.cmd('STARTTLS');
    const tls = await import('node:tls');
    this.socket.removeAllListeners('data');
    this.socket = tls.connect({ socket: this.socket, rejectUnauthorized: false });
    this.attach();
    await new Promise((resolve) => this.socket.once('secureConnect', resolve));
    return r;
  }

  private async until(done: (text: string) => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!done(this.buf.toString('latin1'))) {
      if (this.socket.destroyed || Date.now() > end)
        throw new Error(`no answer; got: ${this.buf.toString('latin1')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  private take(): string {
    const t = this.buf.toString('latin1');
    this.buf = Buffer.alloc(0);
    return t;
  }

  /** Sends a tagged command and returns everything up to and including its tagged reply (latin1, so bytes stay bytes). */
  async cmd(command: string): Promise<string> {
    const tag = `t${++this.n}`;
    this.socket.write(`${tag} ${command}\r\n`);
    await this.until((t) => new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n`).test(t));
    return this.take();
  }

  /** Sends raw bytes and waits for a line matching `pattern`. */
  async send(data: string | Buffer, pattern: RegExp): Promise<string> {
    this.socket.write(data);
    await this.until((t) => pattern.test(t));
    return this.take();
  }

  close() {
    this.socket.destroy();
  }
}

/** The number of messages in a mailbox, by STATUS. */
export async function count(c: ImapFlow, path: string): Promise<number> {
  const s = await c.status(path, { messages: true });
  if (!s || s.messages === undefined) throw new Error(`no STATUS for ${path}`);
  return s.messages;
}

/** A client keeping a CONTEXT result (RFC 5267 §4.3.3–4): `changes` applied to `before`, pair by pair. */
export function applyChanges(before: number[], changes: ContextChanges, sorted: boolean): number[] {
  let list = [...before];
  for (const [pos, ids] of changes.removed) {
    if (pos === 0) list = list.filter((x) => !ids.includes(x));
    else if (list.splice(pos - 1, ids.length).join() !== ids.join())
      throw new Error(`REMOVEFROM ${pos} names others`);
  }
  for (const [pos, ids] of changes.added) {
    if (pos === 0) list = [...list, ...ids].sort((a, b) => a - b);
    else list.splice(pos - 1, 0, ...ids);
  }
  return sorted ? list : list.sort((a, b) => a - b);
}
