// IMAP under a mail client's command mix, Mailwerk and Dovecot side by side in one run.
//
// Each server gets USERS accounts whose INBOX holds COUNT messages (the same bytes), reached over implicit
// TLS on loopback. USERS clients (one per account) stay signed in for SECONDS each and run, one command at
// a time as a mail client does, a mix drawn with a fixed seed: header FETCHes of a window (30 %), a whole
// message (15 %), all flags (10 %), STORE (15 %), SEARCH UNSEEN / SUBJECT (8 %), SELECT (5 %), APPEND
// (7 %), STORE \Deleted + UID EXPUNGE (3 %), NOOP (5 %) and IDLE/DONE (2 %).
// Prints commands per second and p50/p99 latency per command for each server, then the ratio.
//
// Dovecot: a private instance in its high-performance mode (bench/dovecot.ts); run as root.
//
// Usage: node bench/imap-mix.ts [users=10] [seconds=30] [count=1000]
// BENCH_ONLY=mailwerk or BENCH_ONLY=dovecot runs one side.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { generateSelfSigned } from '@mailwerk/tls';
import { startDovecot } from './dovecot.ts';
import { message, PASSWORD } from './messages.ts';
import { RawImap } from './raw-imap.ts';

const users = Number(process.argv[2] ?? 10);
const seconds = Number(process.argv[3] ?? 30);
const count = Number(process.argv[4] ?? 1000);
const only = process.env.BENCH_ONLY;

/** A small deterministic generator (mulberry32), so both servers get the same sequence of commands. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MIX: Array<[string, number]> = [
  ['FETCH headers', 30],
  ['FETCH body', 15],
  ['FETCH flags', 10],
  ['STORE', 15],
  ['SEARCH', 8],
  ['SELECT', 5],
  ['APPEND', 7],
  ['EXPUNGE', 3],
  ['NOOP', 5],
  ['IDLE', 2],
];
const TOTAL = MIX.reduce((a, [, w]) => a + w, 0);

interface Result {
  commands: number;
  seconds: number;
  latencies: Map<string, number[]>;
}

/** One client's session: signs in, selects INBOX, runs the mix until the time is up. */
async function client(
  port: number,
  user: string,
  seed: number,
  until: number,
  latencies: Map<string, number[]>,
) {
  const c = new RawImap(port);
  await c.greeting();
  const login = (await c.cmd(`LOGIN ${user} "${PASSWORD}"`)).toString();
  if (!/ OK/.test(login)) throw new Error(`${user}: ${login}`);
  let sel = (await c.cmd('SELECT INBOX')).toString();
  /** The number of messages as the client knows it: from EXISTS, less one for each EXPUNGE after it. */
  let known = Number(/\* (\d+) EXISTS/.exec(sel)?.[1] ?? count);
  const exists = () => known;
  let uidNext = Number(/UIDNEXT (\d+)/.exec(sel)?.[1] ?? count + 1);
  const random = rng(seed);
  let n = 0;
  while (performance.now() < until) {
    let pick = random() * TOTAL;
    let kind = 'NOOP';
    for (const [k, w] of MIX) {
      if (pick < w) {
        kind = k;
        break;
      }
      pick -= w;
    }
    const total = exists();
    const uid = 1 + Math.floor(random() * Math.max(1, uidNext - 1));
    const t = performance.now();
    let out: Buffer;
    switch (kind) {
      case 'FETCH headers': {
        const from = 1 + Math.floor(random() * Math.max(1, total - 20));
        out = await c.cmd(
          `FETCH ${from}:${from + 19} (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References Content-Type)])`,
        );
        break;
      }
      case 'FETCH body':
        out = await c.cmd(`UID FETCH ${uid} (UID RFC822.SIZE BODY.PEEK[])`);
        break;
      case 'FETCH flags':
        out = await c.cmd('UID FETCH 1:* (FLAGS)');
        break;
      case 'STORE':
        out = await c.cmd(`UID STORE ${uid} ${random() < 0.5 ? '+' : '-'}FLAGS (\\Seen)`);
        break;
      case 'SEARCH':
        out = await c.cmd(
          random() < 0.6
            ? 'UID SEARCH UNSEEN'
            : `UID SEARCH SUBJECT "number ${Math.floor(random() * count)}"`,
        );
        break;
      case 'SELECT':
        out = await c.cmd('SELECT INBOX');
        sel = out.toString();
        uidNext = Number(/UIDNEXT (\d+)/.exec(sel)?.[1] ?? uidNext);
        break;
      case 'APPEND':
        out = await c.append('INBOX', message(count + n), '\\Seen');
        uidNext++;
        break;
      case 'EXPUNGE': {
        await c.cmd(`UID STORE ${uid} +FLAGS.SILENT (\\Deleted)`);
        out = await c.cmd(`UID EXPUNGE ${uid}`);
        break;
      }
      case 'NOOP':
        out = await c.cmd('NOOP');
        break;
      default:
        await c.idle();
        out = await c.done();
    }
    const ms = performance.now() - t;
    if (!/ OK/.test(out.subarray(Math.max(0, out.length - 200)).toString('latin1')))
      throw new Error(`${kind}: ${out.subarray(Math.max(0, out.length - 300)).toString('latin1')}`);
    const list = latencies.get(kind) ?? [];
    latencies.set(kind, list);
    list.push(ms);
    n++;
    // Keep the view current, as a client does from the untagged responses, in the order they came.
    for (const m of out.toString('latin1').matchAll(/^\* (\d+) (EXISTS|EXPUNGE)\r$/gm))
      known = m[2] === 'EXISTS' ? Number(m[1]) : known - 1;
  }
  await c.cmd('LOGOUT');
  c.socket.destroy();
  return n;
}

async function run(label: string, port: number, accounts: string[]): Promise<Result> {
  // Warm-up: every account signs in once and selects (Dovecot builds its index then).
  await Promise.all(
    accounts.map(async (a) => {
      const c = new RawImap(port);
      await c.greeting();
      await c.cmd(`LOGIN ${a} "${PASSWORD}"`);
      await c.cmd('SELECT INBOX');
      await c.cmd('FETCH 1:* (FLAGS)');
      await c.cmd('LOGOUT');
      c.socket.destroy();
    }),
  );
  const latencies = new Map<string, number[]>();
  const start = performance.now();
  const until = start + seconds * 1000;
  const counts = await Promise.all(accounts.map((a, i) => client(port, a, 1000 + i, until, latencies)));
  const result = {
    commands: counts.reduce((a, b) => a + b, 0),
    seconds: (performance.now() - start) / 1000,
    latencies,
  };
  print(label, result);
  return result;
}

function print(label: string, r: Result): void {
  const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
  console.log(
    `\n${label}: ${r.commands} commands in ${r.seconds.toFixed(1)} s = ${(r.commands / r.seconds).toFixed(0)} commands/s`,
  );
  for (const [kind] of MIX) {
    const xs = (r.latencies.get(kind) ?? []).sort((a, b) => a - b);
    if (!xs.length) continue;
    console.log(
      `  ${kind.padEnd(14)} ${String(xs.length).padStart(6)}  p50 ${pct(xs, 0.5).toFixed(1).padStart(6)} ms  p99 ${pct(xs, 0.99).toFixed(1).padStart(6)} ms`,
    );
  }
}

const tls = await generateSelfSigned('bench.example.org');
const results: Record<string, Result> = {};

if (only !== 'dovecot') {
  const child = fork(join(import.meta.dirname, 'imap-server.ts'), ['0', String(users), String(count)], {
    execArgv: [
      '--disable-warning=ExperimentalWarning',
      ...(process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []),
    ],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<{ port: number }>((resolve) =>
    child.on('message', (m: { type: string; port: number }) => m.type === 'ready' && resolve(m)),
  );
  results.mailwerk = await run(
    'Mailwerk',
    ready.port,
    Array.from({ length: users }, (_, i) => `u${i + 1}@example.org`),
  );
  child.send({ type: 'stop' });
  await new Promise((resolve) => child.once('exit', resolve));
}

if (only !== 'mailwerk') {
  const accounts = new Map(
    Array.from({ length: users }, (_, u) => [
      `u${u + 1}@example.org`,
      Array.from({ length: count }, (_, i) => message(i + 1)),
    ]),
  );
  const d = await startDovecot(accounts, PASSWORD, tls);
  try {
    results.dovecot = await run('Dovecot', d.port, [...accounts.keys()]);
  } finally {
    await d.stop();
  }
}

if (results.mailwerk && results.dovecot) {
  const rate = (r: Result) => r.commands / r.seconds;
  console.log(
    `\nratio Mailwerk / Dovecot, commands per second: ${(rate(results.mailwerk) / rate(results.dovecot)).toFixed(2)}`,
  );
}
