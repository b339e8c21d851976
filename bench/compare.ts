// Receiving, side by side with the incumbent (issue: "Receiving throughput").
//
// Sets up on loopback, with throwaway configurations and data directories that
// are removed at the end:
// - Mailwerk from this checkout (`mailwerk start`: MX, queue, LMTP, MDA, SQLite);
// - Postfix relaying over LMTP into Dovecot (Debian packages postfix and
//   dovecot-lmtpd; private instances, never the system's own: see
//   packages/mta/test/peers.ts), Maildir under the temporary directory;
// - for the accepting-only comparison, Mailwerk's MX alone (`--service mta`)
//   and Postfix's smtp-sink, which discards and is the ceiling.
// Then runs the same loads against each pair, interleaved (the order flips
// every round), and prints a table per round and the median ratios.
//
// Loads: Postfix's smtp-source (one message per connection with -s 20, or
// connections reused with -d; 5 KB and 100 KB; 1 and 5 recipients) and our own
// client (bench/smtp-client.ts, 20 sessions reused) for p50/p99 from the end of
// DATA to the 250. Delivered means counted in the mailbox (the SQLite store,
// the Maildirs), not at the SMTP reply. Peak memory is the PSS summed over the process
// tree (Mailwerk's supervisor and services; Postfix's and Dovecot's masters
// and their children), sampled every 100 ms (after the load only, for our client's latency loads). CPU ms/msg is the user and system time of the same trees
// from the start of the load to the last delivery (or the last acceptance), per message delivered (or
// accepted): what each system costs the machine, whatever the load generator took of it.
//
// Usage (as root: the incumbents drop privileges to their own users):
//   node bench/compare.ts [rounds=3] [count=2000]
// BENCH_LOADS=a,b,… runs only the named loads (see `loads` below); BENCH_WARMUP=n the unmeasured
// messages each system takes first (default a fifth of the count). BENCH_LATENCIES=DIR writes, for each
// load of our client, a file per system and round with a line a message: its session, when its DATA
// ended (ms from the load's start) and the ms to its reply, to see whether the slow ones come together.
// Installs postfix and dovecot-lmtpd through apt when they are missing.
import { execFileSync, spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { peersMissing, startDovecotLmtp, startPostfix } from '../packages/mta/test/peers.ts';
import {
  benchDir,
  freePort,
  initMailwerk,
  listenerPorts,
  MAILWERK_BIN,
  receivingEnv,
  smtpSource,
  treeCpuMs,
  treePssMiB,
} from './proc.ts';
import { benchMessage, percentile, SmtpClient } from './smtp-client.ts';

const rounds = Number(process.argv[2] ?? 3);
const count = Number(process.argv[3] ?? 2000);
const SESSIONS = 20;
// smtp-source -r N sends to bob@, 2bob@ … Nbob@.
const USERS = ['bob', '2bob', '3bob', '4bob', '5bob'].map((u) => `${u}@example.org`);

if (process.getuid?.() === 0 && peersMissing()) {
  console.error('installing postfix and dovecot-lmtpd ...');
  execFileSync('apt-get', ['install', '-y', '-qq', 'postfix', 'dovecot-lmtpd'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}
const missing = peersMissing();
if (missing) {
  console.error(`bench/compare.ts: ${missing}`);
  process.exit(1);
}

interface System {
  name: string;
  port: number;
  /** Messages in mailboxes so far (null: it does not deliver). */
  delivered(): number | null;
  /** Roots of its process tree. */
  pids(): number[];
  stop(): Promise<void>;
}

async function startMailwerk(services?: string): Promise<System> {
  const dir = await benchDir('mailwerk-compare-');
  const port = await freePort();
  const env = {
    ...receivingEnv(dir, port, SESSIONS),
    // Two instances run at once: every port their own.
    ...(await listenerPorts()),
  };

  await initMailwerk(env, dir, USERS);
  // The MX alone with BENCH_MTA_PROCESSES=n: n `--service mta` processes on the one port (mta.processes),
  // as an admin runs them without the supervisor; the whole suite: the supervisor starts them.
  const copies = services ? Number(process.env.BENCH_MTA_PROCESSES ?? 1) : 1;
  const procs = Array.from({ length: copies }, () =>
    spawn(MAILWERK_BIN, ['start', ...(services ? ['--service', services] : [])], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve, reject) => {
          let out = '';
          p.stdout!.on('data', (d) => {
            out += d;
            if (/SMTP \(MX\).*running/.test(out)) resolve();
          });
          p.once('exit', (code) => reject(new Error(`mailwerk start exited ${code}: ${out}`)));
        }),
    ),
  );
  const db = new DatabaseSync(join(dir, 'data', 'mailwerk.sqlite'), { readOnly: true, timeout: 10_000 });
  const countStmt = db.prepare('SELECT count(*) AS n FROM messages');
  return {
    name: services ? 'Mailwerk MX alone' : 'Mailwerk',
    port,
    delivered: () => (services ? null : Number((countStmt.get() as { n: number }).n)),
    pids: () => procs.map((p) => p.pid!),
    async stop() {
      db.close();
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => new Promise((r) => p.once('exit', r))));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startIncumbent(): Promise<System> {
  const dovecot = await startDovecotLmtp();
  // Postfix's defaults otherwise; the clients are local, so no per-client limits apply (mynetworks).
  const postfix = await startPostfix({ domain: 'example.org', lmtpPort: dovecot.port });
  return {
    name: 'Postfix → Dovecot',
    port: postfix.port,
    delivered: () => dovecot.count(),
    pids: () => [postfix.pid(), dovecot.pid()],
    async stop() {
      await postfix.stop();
      await dovecot.stop();
    },
  };
}

async function startSink(): Promise<System> {
  const port = await freePort();
  // -c counts, -u drops root; 256 is the listen backlog.
  const p = spawn('smtp-sink', ['-u', 'nobody', `127.0.0.1:${port}`, '256'], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    try {
      await (await SmtpClient.open(port)).quit();
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    name: 'smtp-sink',
    port,
    delivered: () => null,
    pids: () => [p.pid!],
    async stop() {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    },
  };
}

interface Load {
  key: string;
  name: string;
  pair: 'delivery' | 'accepting';
  size: number;
  rcpts: number;
  reuse: boolean;
  /** Our own client (latencies) rather than smtp-source. */
  own: boolean;
  /**
   * Our client's messages a second over all sessions, each session keeping its share of the schedule
   * (an open load, below what either system can take, so that the latency is the delivery's own and
   * not the wait for the cores); absent: each session sends as soon as it is answered.
   */
  rate?: number;
  messages: number;
}

const loads: Load[] = [
  {
    key: 'conn5k',
    name: '5 KB, one message per connection',
    pair: 'delivery',
    size: 5000,
    rcpts: 1,
    reuse: false,
    own: false,
    messages: count,
  },
  {
    key: 'reuse5k',
    name: '5 KB, connections reused',
    pair: 'delivery',
    size: 5000,
    rcpts: 1,
    reuse: true,
    own: false,
    messages: count,
  },
  {
    key: 'conn100k',
    name: '100 KB, one message per connection',
    pair: 'delivery',
    size: 100_000,
    rcpts: 1,
    reuse: false,
    own: false,
    messages: Math.ceil(count / 4),
  },
  {
    key: 'rcpt5',
    name: '5 KB, 5 recipients, one message per connection',
    pair: 'delivery',
    size: 5000,
    rcpts: 5,
    reuse: false,
    own: false,
    messages: Math.ceil(count / 2),
  },
  {
    key: 'latency',
    name: '5 KB, our client, 20 sessions reused (latency)',
    pair: 'delivery',
    size: 5000,
    rcpts: 1,
    reuse: true,
    own: true,
    // Five times the count, so that its p99 is the system's and not one stall of the machine's disk: a
    // sync that stalls holds the 20 sessions' messages at once, 1 % of 2,000, and the development
    // machine's fsync stalls for 75–378 ms about once in 20–30 s (bench/fsync.ts, bench/README.md).
    messages: count * 5,
  },
  {
    key: 'paced',
    name: '5 KB, our client, 20 sessions reused, 100 msg/s (latency below saturation)',
    pair: 'delivery',
    size: 5000,
    rcpts: 1,
    reuse: true,
    own: true,
    rate: 100,
    messages: Math.ceil(count / 2),
  },
  {
    key: 'accept',
    name: '5 KB, one message per connection, accepting only',
    pair: 'accepting',
    size: 5000,
    rcpts: 1,
    reuse: false,
    own: false,
    messages: count,
  },
].filter((l) => !process.env.BENCH_LOADS || process.env.BENCH_LOADS.split(',').includes(l.key));

interface Figures {
  accepted: number;
  delivered: number | null;
  p50: number | null;
  p99: number | null;
  rss: number;
  /** CPU time of the system's processes per message delivered (or accepted, when it does not deliver), ms. */
  cpu: number;
}

/** Our client's figures: the sorted latencies, and a line a message for BENCH_LATENCIES. */
async function ownClient(load: Load, port: number): Promise<{ sorted: number[]; lines: string[] }> {
  const latencies: number[] = [];
  const lines: string[] = [];
  const message = benchMessage(load.size);
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, session) => {
      const c = await SmtpClient.open(port);
      await c.cmd('EHLO load.example');
      while (next < load.messages) {
        const n = next++;
        // Paced: message n is due at n / rate seconds; a session that is early waits for it.
        const due = load.rate ? start + (n * 1000) / load.rate : 0;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const ms = await c.send('load@ext.org', USERS.slice(0, load.rcpts), message);
        latencies.push(ms);
        lines.push(`${session}\t${(performance.now() - ms - start).toFixed(2)}\t${ms.toFixed(2)}`);
      }
      await c.quit();
    }),
  );
  return { sorted: latencies.sort((a, b) => a - b), lines };
}

async function measure(system: System, load: Load, round = 0): Promise<Figures> {
  const before = system.delivered();
  let peak = 0;
  // Reading a process's PSS (/proc/PID/smaps_rollup) walks its memory map under its lock and stalls it
  // meanwhile, the longer the bigger the process: sampled every 100 ms it put Mailwerk's p99 from 6.5–8.0
  // to 12–14 ms at 100 msg/s, Postfix's from 1.2–1.5 to 2.3–4.9 ms. So with our client (the loads that
  // measure latency) the PSS is read once, after the load; Node keeps what its heaps grew to.
  const sampler = load.own
    ? null
    : setInterval(() => {
        peak = Math.max(peak, treePssMiB(system.pids()));
      }, 100);
  const cpu0 = treeCpuMs(system.pids());
  const t0 = performance.now();
  let latencies: number[];
  if (load.own) {
    const own = await ownClient(load, system.port);
    latencies = own.sorted;
    if (process.env.BENCH_LATENCIES) {
      const file = `${load.key}-${system.name.replace(/[^A-Za-z0-9]+/g, '-')}-round${round}.tsv`;
      await writeFile(
        join(process.env.BENCH_LATENCIES, file),
        `session\tend_of_data_ms\treply_ms\n${own.lines.join('\n')}\n`,
      );
    }
  } else {
    await smtpSource({
      port: system.port,
      sessions: SESSIONS,
      messages: load.messages,
      size: load.size,
      recipients: load.rcpts,
      reuse: load.reuse,
    });
    latencies = [];
  }
  const acceptedSecs = (performance.now() - t0) / 1000;
  let delivered: number | null = null;
  if (before !== null) {
    const want = before + load.messages * load.rcpts;
    const deadline = Date.now() + 600_000;
    while ((system.delivered() ?? 0) < want) {
      if (Date.now() > deadline)
        throw new Error(`${system.name}: not everything was delivered in 10 minutes`);
      await new Promise((r) => setTimeout(r, 20));
    }
    delivered = (load.messages * load.rcpts) / ((performance.now() - t0) / 1000);
  }
  if (sampler) clearInterval(sampler);
  peak = Math.max(peak, treePssMiB(system.pids()));
  const cpu = (treeCpuMs(system.pids()) - cpu0) / (load.messages * (before !== null ? load.rcpts : 1));
  return {
    cpu,
    accepted: load.messages / acceptedSecs,
    delivered,
    p50: latencies.length ? percentile(latencies, 50) : null,
    p99: latencies.length ? percentile(latencies, 99) : null,
    rss: peak,
  };
}

const fmt = (n: number | null, digits = 0) =>
  n === null
    ? '—'
    : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const systems = {
  delivery: [await startMailwerk(), await startIncumbent()],
  accepting: loads.some((l) => l.pair === 'accepting') ? [await startMailwerk('mta'), await startSink()] : [],
};
// Interrupted (Ctrl-C, a kill): every system is stopped and its directory removed, as at the end; else the
// private Postfix's master and Dovecot outlive the run and keep taking the machine.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    console.error(`compare.ts: ${signal}, stopping the systems`);
    void Promise.all(
      [...systems.delivery, ...systems.accepting].map((s) => s.stop().catch(() => undefined)),
    ).finally(() => process.exit(130));
  });
const ratios = new Map<string, { accepted: number[]; delivered: number[] }>();
// Every system first takes an unmeasured load (a fifth of the count, one 5 KB message per connection, as
// the first load of its pair would), delivered before the rounds begin: Mailwerk's processes otherwise
// run their first round in code V8 has not optimized yet (2026-12-02: 401 delivered/s at 3.47 ms CPU a
// message in round 1, 622 at 2.10 in round 2), and the incumbents' first round fills their caches.
// BENCH_WARMUP=0 leaves it out.
const warmup = Number(process.env.BENCH_WARMUP ?? Math.ceil(count / 5));
try {
  if (warmup > 0)
    for (const [pair, pairSystems] of Object.entries(systems))
      for (const s of pairSystems)
        await measure(s, {
          key: 'warmup',
          name: 'warm-up',
          pair: pair as Load['pair'],
          size: 5000,
          rcpts: 1,
          reuse: false,
          own: false,
          messages: warmup,
        });
  console.log(
    `${rounds} rounds, ${count} messages per 5 KB load, ${SESSIONS} sessions, after ${warmup} unmeasured; the order flips every round\n`,
  );
  for (let round = 1; round <= rounds; round++) {
    console.log(`## round ${round}\n`);
    console.log(
      '| load | system | accepted msg/s | delivered msg/s | DATA→250 p50 / p99 ms | peak PSS MiB | CPU ms/msg |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const load of loads) {
      const [ours, theirs] = systems[load.pair] as [System, System];
      const order = round % 2 ? [ours, theirs] : [theirs, ours];
      const figures = new Map<System, Figures>();
      for (const s of order) figures.set(s, await measure(s, load, round));
      for (const s of [ours, theirs]) {
        const f = figures.get(s)!;
        const lat = f.p50 === null ? '—' : `${fmt(f.p50, 1)} / ${fmt(f.p99, 1)}`;
        console.log(
          `| ${load.name} | ${s.name} | ${fmt(f.accepted)} | ${fmt(f.delivered)} | ${lat} | ${fmt(f.rss)} | ${fmt(f.cpu, 2)} |`,
        );
      }
      const a = figures.get(ours)!;
      const b = figures.get(theirs)!;
      const r = ratios.get(load.key) ?? { accepted: [], delivered: [] };
      r.accepted.push(a.accepted / b.accepted);
      if (a.delivered !== null && b.delivered !== null) r.delivered.push(a.delivered / b.delivered);
      ratios.set(load.key, r);
    }
    console.log();
  }
  console.log(
    `## median ratios over ${rounds} rounds (Mailwerk / Postfix → Dovecot; MX alone / smtp-sink)\n`,
  );
  console.log('| load | accepted | delivered |');
  console.log('| --- | --- | --- |');
  for (const load of loads) {
    const r = ratios.get(load.key)!;
    console.log(
      `| ${load.name} | ${fmt(median(r.accepted), 2)} | ${r.delivered.length ? fmt(median(r.delivered), 2) : '—'} |`,
    );
  }
} finally {
  for (const s of [...systems.delivery, ...systems.accepting]) await s.stop().catch(() => undefined);
}
process.exit(0);
