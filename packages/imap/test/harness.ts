// A real IMAP server (imap-core with our hooks) over a SQLite store in a temporary directory, on loopback.
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import { InProcessBus } from '@mailwerk/bus';
import { DEFAULT_MAILBOXES, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import { type CoreServer, type ImapOptions, ImapService } from '../src/index.ts';

export const PASSWORD = 'correct horse battery';

export interface Rig {
  store: MailStore;
  bus: InProcessBus;
  service: ImapService;
  /** Port of the STARTTLS listener (143's role). */
  port: number;
  /** Port of the implicit-TLS listener (993's role). */
  tlsPort: number;
  accounts: Record<string, string>;
  client(user?: string, options?: Partial<ImapFlowOptions>): Promise<ImapFlow>;
  close(): Promise<void>;
}

let tlsFiles: Promise<{ key: string; cert: string }> | null = null;
let hash: Promise<string> | null = null;

async function listen(s: CoreServer): Promise<number> {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.server.address() as AddressInfo).port;
}

export async function rig(
  options: Partial<ImapOptions> & { users?: string[]; quota?: number } = {},
): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-imap-'));
  const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
  const bus = new InProcessBus();
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
  const service = new ImapService({
    store,
    bus,
    hostname: 'imap.test',
    tls: await tlsFiles,
    allowPlaintext: false,
    maxMessageSize: 1024 * 1024,
    throttle: new AuthThrottle({ baseDelayMs: 50, maxDelayMs: 400 }),
    ...options,
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

export const sample = (subject: string, body = 'Hello there.\r\n') =>
  Buffer.from(
    `From: Ann <ann@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: ${subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\n${body}`,
  );
