// IMAP benchmark (issue: "IMAP access for Outlook and Thunderbird").
// The server runs in a child process (bench/imap-server.ts) over a SQLite store
// filled with COUNT messages; this process is the clients, over loopback TLS.
// Prints:
//  - FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE) over the COUNT-message
//    mailbox: time from command to tagged OK (best and median of 5), bytes;
//  - APPEND rate: messages/s over 10 concurrent sessions (imapflow, no compression);
//  - memory per connection with IDLERS connections signed in and in IDLE
//    (server RSS and heap after GC, minus the same before they connected).
//    in MAILBOX (INBOX by default, holding the appended messages: each session
//    keeps the mailbox's UID list; Drafts is empty).
// Usage: node bench/imap.ts [count=10000] [appendsPerSession=300] [idlers=1000] [mailbox=INBOX]
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { RawImap } from './raw-imap.ts';

const count = Number(process.argv[2] ?? 10_000);
const perSession = Number(process.argv[3] ?? 300);
const idlers = Number(process.argv[4] ?? 1000);
const idleMailbox = process.argv[5] ?? 'INBOX';
const PASSWORD = 'benchmark password';

const child = fork(join(import.meta.dirname, 'imap-server.ts'), [String(count)], {
  execArgv: ['--expose-gc', '--disable-warning=ExperimentalWarning'],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
type Memory = { rss: number; heapUsed: number; external: number; connections: number };
const next = (type: string) =>
  new Promise<Record<string, number>>((resolve) => {
    const on = (m: { type: string }) => {
      if (m.type === type) {
        child.off('message', on);
        resolve(m as unknown as Record<string, number>);
      }
    };
    child.on('message', on);
  });
const ready = await next('ready');
const port = ready.port!;
console.log(`filled ${count} messages in ${(ready.fillMs! / 1000).toFixed(1)} s`);
const memory = async (): Promise<Memory> => {
  const p = next('memory');
  child.send({ type: 'memory' });
  return (await p) as unknown as Memory;
};

class Raw extends RawImap {
  constructor() {
    super(port);
  }
}

// 1. FETCH over the big mailbox.
{
  const c = new Raw();
  await c.greeting();
  await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
  const selStart = performance.now();
  const sel = (await c.cmd('SELECT Big')).toString();
  console.log(`SELECT of the ${count}-message mailbox: ${(performance.now() - selStart).toFixed(0)} ms`);
  if (!sel.includes(`* ${count} EXISTS`)) throw new Error(`SELECT: ${sel}`);
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const out = await c.cmd('FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)');
    times.push(performance.now() - t);
    bytes = out.length;
    const fetched = out.toString('latin1').match(/^\* \d+ FETCH /gm)?.length ?? 0;
    if (fetched !== count) throw new Error(`FETCH returned ${fetched} of ${count}`);
  }
  const runs = times.map((t) => t.toFixed(0)).join(', ');
  times.sort((a, b) => a - b);
  console.log(
    `FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE), ${count} messages: best ${times[0]!.toFixed(0)} ms, median ${times[2]!.toFixed(0)} ms, ${(bytes / 1024 / 1024).toFixed(1)} MiB (runs: ${runs} ms)`,
  );
  for (const q of ['SEARCH UNSEEN', 'SEARCH SUBJECT "number 9999"', 'SEARCH BODY "message 9999 of"']) {
    const t = performance.now();
    const out = (await c.cmd(q)).toString('latin1');
    const hits = (/\* SEARCH([ \d]*)/.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).length;
    console.log(`${q} over ${count} messages: ${(performance.now() - t).toFixed(0)} ms, ${hits} hits`);
  }
  c.socket.destroy();
}

// 2. APPEND over 10 concurrent sessions.
{
  const sessions = 10;
  const clients = await Promise.all(
    Array.from({ length: sessions }, async () => {
      const c = new ImapFlow({
        host: '127.0.0.1',
        port,
        secure: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'bob@example.org', pass: PASSWORD },
        logger: false,
        disableCompression: true,
      });
      await c.connect();
      return c;
    }),
  );
  const body = `${'A line of a normal message body, about seventy characters long here.\r\n'.repeat(40)}`;
  const t = performance.now();
  await Promise.all(
    clients.map(async (c, s) => {
      for (let i = 0; i < perSession; i++) {
        const raw = `From: ann@example.net\r\nTo: bob@example.org\r\nSubject: append ${s}.${i}\r\nMessage-ID: <a${s}.${i}@example.net>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n${body}`;
        const r = await c.append('INBOX', raw, ['\\Seen']);
        if (!r) throw new Error('APPEND failed');
      }
    }),
  );
  const s = (performance.now() - t) / 1000;
  console.log(
    `APPEND: ${sessions * perSession} messages of ${body.length + 150} bytes over ${sessions} sessions in ${s.toFixed(2)} s: ${((sessions * perSession) / s).toFixed(0)} msg/s`,
  );
  await Promise.all(clients.map((c) => c.logout()));
}

// 3. Memory per connection in IDLE: the cost of the second half of the connections over the first, so the
// allocator's growth during the first sign-ins (argon2 takes 19 MiB per check) does not count as theirs.
if (idlers > 0) {
  const conns: Raw[] = [];
  const open = async (n: number) => {
    for (let i = 0; i < n; i += 25) {
      await Promise.all(
        Array.from({ length: Math.min(25, n - i) }, async () => {
          const c = new Raw();
          await c.greeting();
          const login = (await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`)).toString();
          if (!/OK/.test(login)) throw new Error(login);
          await c.cmd(`SELECT ${idleMailbox}`);
          await c.idle();
          conns.push(c);
        }),
      );
    }
  };
  const t = performance.now();
  const half = Math.floor(idlers / 2);
  await open(half);
  await new Promise((r) => setTimeout(r, 500));
  const mid = await memory();
  await open(idlers - half);
  await new Promise((r) => setTimeout(r, 500));
  const end = await memory();
  const connectS = (performance.now() - t) / 1000;
  const per = (a: number, b: number) => ((a - b) / (idlers - half) / 1024).toFixed(1);
  console.log(
    `IDLE in ${idleMailbox}: ${end.connections} connections signed in and idling (set up in ${connectS.toFixed(1)} s); per connection (the last ${idlers - half}): RSS ${per(end.rss, mid.rss)} KiB, JS heap ${per(end.heapUsed, mid.heapUsed)} KiB, external ${per(end.external, mid.external)} KiB; server RSS ${(end.rss / 1024 / 1024).toFixed(0)} MiB`,
  );
  for (const c of conns) c.socket.destroy();
}

child.send({ type: 'stop' });
await once(child, 'exit');

// 4. The same measure for a bare Node TLS server: the floor under any TLS connection in Node.
if (idlers > 0) {
  const base = fork(join(import.meta.dirname, 'tls-baseline.ts'), [], {
    execArgv: ['--expose-gc', '--disable-warning=ExperimentalWarning'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = (type: string) =>
    new Promise<Record<string, number>>((resolve) => {
      const on = (m: { type: string }) => {
        if (m.type !== type) return;
        base.off('message', on);
        resolve(m as unknown as Record<string, number>);
      };
      base.on('message', on);
      if (type !== 'ready') base.send({ type });
    });
  const { port: bport } = await ask('ready');
  const conns: RawImap[] = [];
  const open = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const c = new RawImap(bport!);
      await once(c.socket, 'secureConnect');
      c.socket.write('a NOOP\r\n');
      await once(c.socket, 'data');
      conns.push(c);
    }
  };
  const half = Math.floor(idlers / 2);
  await open(half);
  await new Promise((r) => setTimeout(r, 500));
  const mid = await ask('memory');
  await open(idlers - half);
  await new Promise((r) => setTimeout(r, 500));
  const end = await ask('memory');
  console.log(
    `bare Node TLS server, same measure: per connection (the last ${idlers - half}): RSS ${((end.rss! - mid.rss!) / (idlers - half) / 1024).toFixed(1)} KiB`,
  );
  for (const c of conns) c.socket.destroy();
  base.send({ type: 'stop' });
  await once(base, 'exit');
}
