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
// (BIG_MIB=2: the size of the message each idle connection fetches in the "after a large FETCH" measure; 0: skip it)
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateSelfSigned } from '@mailwerk/tls';
import { ImapFlow } from 'imapflow';
import { startDovecot } from './dovecot.ts';
import { message, PASSWORD } from './messages.ts';
import { treePssMiB } from './proc.ts';
import { RawImap } from './raw-imap.ts';

const count = Number(process.argv[2] ?? 10_000);
const perSession = Number(process.argv[3] ?? 300);
const idlers = Number(process.argv[4] ?? 1000);
const idleMailbox = process.argv[5] ?? 'INBOX';

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

// 1. FETCH and SEARCH over the big mailbox.
interface Reads {
  fetch: number[];
  search: number[];
}
const SEARCHES = ['SEARCH UNSEEN', 'SEARCH SUBJECT "number 9999"', 'SEARCH BODY "message 9999 of"'];
async function reads(label: string, port: number, mailbox: string): Promise<Reads> {
  const c = new RawImap(port);
  await c.greeting();
  await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
  const selStart = performance.now();
  const sel = (await c.cmd(`SELECT ${mailbox}`)).toString();
  console.log(
    `${label}: SELECT of the ${count}-message mailbox: ${(performance.now() - selStart).toFixed(0)} ms`,
  );
  if (!sel.includes(`* ${count} EXISTS`)) throw new Error(`SELECT: ${sel}`);
  const fetch: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const out = await c.cmd('FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)');
    fetch.push(performance.now() - t);
    bytes = out.length;
    const fetched = out.toString('latin1').match(/^\* \d+ FETCH /gm)?.length ?? 0;
    if (fetched !== count) throw new Error(`FETCH returned ${fetched} of ${count}`);
  }
  const sorted = [...fetch].sort((x, y) => x - y);
  console.log(
    `${label}: FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE), ${count} messages: first ${fetch[0]!.toFixed(0)} ms, best ${sorted[0]!.toFixed(0)} ms, median ${sorted[2]!.toFixed(0)} ms, ${(bytes / 1024 / 1024).toFixed(1)} MiB (runs: ${fetch.map((t) => t.toFixed(0)).join(', ')} ms)`,
  );
  const search: number[] = [];
  for (const q of SEARCHES) {
    const t = performance.now();
    const out = (await c.cmd(q)).toString('latin1');
    search.push(performance.now() - t);
    const hits = (/\* SEARCH([ \d]*)/.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).length;
    console.log(`${label}: ${q} over ${count} messages: ${search.at(-1)!.toFixed(0)} ms, ${hits} hits`);
  }
  c.socket.destroy();
  return { fetch, search };
}
const ours = await reads('Mailwerk', port, 'Big');

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
/** Opens `n` connections that sign in, select `mailbox` and IDLE; returns `measure()`'s growth per connection over the second half. */
async function idleCost(
  port: number,
  mailbox: string,
  n: number,
  measure: () => Promise<number>,
  /** Run by each connection after SELECT, before IDLE (a large FETCH, as a mail client's first sync). */
  first?: (c: RawImap) => Promise<void>,
): Promise<number> {
  const conns: RawImap[] = [];
  const open = async (k: number) => {
    for (let i = 0; i < k; i += 25) {
      await Promise.all(
        Array.from({ length: Math.min(25, k - i) }, async () => {
          const c = new RawImap(port);
          await c.greeting();
          const login = (await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`)).toString();
          if (!/OK/.test(login)) throw new Error(login);
          const sel = (await c.cmd(`SELECT ${mailbox}`)).toString();
          if (!/ OK /.test(sel)) throw new Error(sel);
          await first?.(c);
          await c.idle();
          conns.push(c);
        }),
      );
    }
  };
  const half = Math.floor(n / 2);
  await open(half);
  await new Promise((r) => setTimeout(r, 500));
  const mid = await measure();
  await open(n - half);
  await new Promise((r) => setTimeout(r, 500));
  const end = await measure();
  for (const c of conns) c.socket.destroy();
  return (end - mid) / (n - half);
}
if (idlers > 0) {
  const t = performance.now();
  let last: Memory | null = null;
  let first: Memory | null = null;
  const rss = await idleCost(port, idleMailbox, idlers, async () => {
    last = await memory();
    first ??= last;
    return last.rss;
  });
  const m = last! as Memory;
  const f = first! as Memory;
  const per = (a: number, b: number) => ((a - b) / (idlers - Math.floor(idlers / 2)) / 1024).toFixed(1);
  console.log(
    `Mailwerk: IDLE in ${idleMailbox}: ${m.connections} connections signed in and idling (set up in ${((performance.now() - t) / 1000).toFixed(1)} s); per connection (the last ${idlers - Math.floor(idlers / 2)}): RSS ${(rss / 1024).toFixed(1)} KiB, JS heap ${per(m.heapUsed, f.heapUsed)} KiB, external ${per(m.external, f.external)} KiB; server RSS ${(m.rss / 1024 / 1024).toFixed(0)} MiB`,
  );
}

// 3b. The same after each connection has fetched one large message (BIG_MIB MiB, 2 by default): what a
// connection keeps after a mail client's first sync. Node's TLS socket keeps an output buffer as large as
// the largest single write it was given (packages/tls/src/paced.ts); the session writes in slices.
const bigMiB = Number(process.env.BIG_MIB ?? 2);
const line = `${'x'.repeat(998)}\r\n`;
const big = Buffer.from(
  `Subject: large\r\n\r\n${line.repeat(Math.ceil((bigMiB * 1024 * 1024) / line.length))}`,
);
/** Appends the large message to `mailbox`, then measures idle connections that each fetched it (`*`) first. */
async function afterLargeFetch(port: number, mailbox: string, n: number, measure: () => Promise<number>) {
  const a = new RawImap(port);
  await a.greeting();
  await a.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
  const appended = (await a.append(mailbox, big)).toString();
  if (!/ OK /.test(appended)) throw new Error(appended);
  a.socket.destroy();
  return idleCost(port, mailbox, n, measure, async (c) => {
    const out = await c.cmd('FETCH * BODY.PEEK[]');
    if (out.length < big.length) throw new Error(`FETCH returned ${out.length} bytes`);
  });
}
const largeLabel = `after each connection fetched a ${(big.length / 1024 / 1024).toFixed(1)} MiB message`;
if (idlers > 0 && bigMiB > 0) {
  const t = performance.now();
  const rss = await afterLargeFetch(port, 'Drafts', idlers, async () => (await memory()).rss);
  console.log(
    `Mailwerk: IDLE ${largeLabel} (${idlers} connections, ${((performance.now() - t) / 1000).toFixed(1)} s): per connection (the last ${idlers - Math.floor(idlers / 2)}): RSS ${(rss / 1024).toFixed(1)} KiB`,
  );
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

// 5. The same reads and the same idle connections against Dovecot, in the same run (bench/dovecot.ts; needs
// root and dovecot-imapd, skipped otherwise). Dovecot runs one process per IMAP connection, so its idle cost
// is the PSS of its whole process tree, over at most DOVECOT_IDLERS connections.
if (process.getuid?.() !== 0 || !existsSync('/usr/sbin/dovecot')) {
  console.log('Dovecot: skipped (needs root and the Debian package dovecot-imapd)');
} else {
  const all = Array.from({ length: count }, (_, i) => message(i + 1));
  const dovecot = await startDovecot(
    new Map([['bob@example.org', all]]),
    PASSWORD,
    await generateSelfSigned('bench.example.org'),
  );
  try {
    const theirs = await reads('Dovecot', dovecot.port, 'INBOX');
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    console.log(
      `ratio Mailwerk / Dovecot, time (below 1: Mailwerk faster): FETCH first ${(ours.fetch[0]! / theirs.fetch[0]!).toFixed(2)}, FETCH median ${(median(ours.fetch) / median(theirs.fetch)).toFixed(2)}, ${SEARCHES.map((q, i) => `${q} ${(ours.search[i]! / theirs.search[i]!).toFixed(2)}`).join(', ')}`,
    );
    const n = Math.min(idlers, Number(process.env.DOVECOT_IDLERS ?? 200));
    if (n > 1) {
      const pss = await idleCost(
        dovecot.port,
        'INBOX',
        n,
        async () => treePssMiB([dovecot.pid]) * 1024 * 1024,
      );
      console.log(
        `Dovecot: IDLE in INBOX (${count} messages), ${n} connections; per connection (the last ${n - Math.floor(n / 2)}): PSS of all its processes ${(pss / 1024).toFixed(1)} KiB`,
      );
      if (bigMiB > 0) {
        const after = await afterLargeFetch(
          dovecot.port,
          'INBOX',
          n,
          async () => treePssMiB([dovecot.pid]) * 1024 * 1024,
        );
        console.log(
          `Dovecot: IDLE ${largeLabel}, ${n} connections; per connection (the last ${n - Math.floor(n / 2)}): PSS of all its processes ${(after / 1024).toFixed(1)} KiB`,
        );
      }
    }
  } finally {
    await dovecot.stop();
  }
}
