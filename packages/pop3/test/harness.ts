// A real POP3 server (and the IMAP service, to see deletions from the other protocol) over a SQLite
// store in a temporary directory, on loopback; clients are python3's poplib and curl, as users run them.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import { InProcessBus } from '@mailwerk/bus';
import { ImapService } from '@mailwerk/imap';
import { parseMessage } from '@mailwerk/mime';
import { contentId, DEFAULT_MAILBOXES, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { ImapFlow } from 'imapflow';
import { Pop3Service } from '../src/index.ts';

export const PASSWORD = 'correct horse battery';

export interface Rig {
  store: MailStore;
  bus: InProcessBus;
  pop3: Pop3Service;
  imap: ImapService;
  /** STLS port (110's role) and implicit TLS port (995's role). */
  port: number;
  tlsPort: number;
  imapsPort: number;
  bob: string;
  deliver(raw: Buffer | string, user?: string): Promise<number>;
  /** Bob, signed in over IMAP (imapflow). */
  imapClient(): Promise<ImapFlow>;
  close(): Promise<void>;
}

async function listen(
  s: Server | { listen(p: number, h: string, cb: () => void): void; server: Server },
): Promise<number> {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const server = 'server' in s ? s.server : s;
  return (server.address() as AddressInfo).port;
}

let tls: Promise<{ key: string; cert: string }> | null = null;
let hash: Promise<string> | null = null;

export async function rig(): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-pop3-'));
  const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
  const bus = new InProcessBus();
  tls ??= generateSelfSigned('pop3.test');
  hash ??= hashPassword(PASSWORD);
  await store.addDomain('example.org');
  const ids: Record<string, string> = {};
  for (const u of ['bob', 'ann']) {
    ids[u] = (
      await store.createAccount({
        address: `${u}@example.org`,
        passwordHash: await hash,
        mailboxes: [...DEFAULT_MAILBOXES],
      })
    ).id;
  }
  const throttle = new AuthThrottle({ baseDelayMs: 100, maxDelayMs: 400 });
  const common = { store, bus, hostname: 'pop3.test', tls: await tls, allowPlaintext: false, throttle };
  const pop3 = new Pop3Service(common);
  const imap = new ImapService({ ...common, maxMessageSize: 1 << 20 });
  const port = await listen(pop3.server(false));
  const tlsPort = await listen(pop3.server(true));
  const imapsPort = await listen(imap.server(true));
  return {
    store,
    bus,
    pop3,
    imap,
    port,
    tlsPort,
    imapsPort,
    bob: ids.bob!,
    async deliver(raw, user = 'bob') {
      const data = Buffer.from(raw);
      const inbox = (await store.getMailbox(ids[user]!, 'INBOX'))!;
      const m = await store.appendMessage({
        accountId: ids[user]!,
        mailboxId: inbox.id,
        blobId: contentId(data),
        data,
        size: data.length,
        structure: parseMessage(data),
      });
      return m.uid;
    },
    async imapClient() {
      const c = new ImapFlow({
        host: '127.0.0.1',
        port: imapsPort,
        secure: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'bob@example.org', pass: PASSWORD },
        logger: false,
      });
      await c.connect();
      return c;
    },
    async close() {
      await pop3.close();
      await imap.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a python3 script (poplib); it prints one JSON value, which is returned. */
export function python<T>(script: string, env: Record<string, string>): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'python3',
      ['-c', script],
      { env: { ...process.env, ...env }, timeout: 20_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`python3 failed: ${stderr || err.message}`));
        try {
          resolve(JSON.parse(stdout) as T);
        } catch {
          reject(new Error(`python3 printed: ${stdout} ${stderr}`));
        }
      },
    );
    child.stdin?.end();
  });
}

/** Runs curl; resolves with its exit code, stdout and stderr. */
export function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-sS', '-k', '--max-time', '15', ...args],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

export const message = (subject: string, body = 'Hello.\r\n') =>
  `From: Ann <ann@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: ${subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n${body}`;
