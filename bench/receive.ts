// Receiving benchmark (issue: "Receiving mail"): N messages of about SIZE bytes
// over C concurrent SMTP connections to a real `mailwerk start` process on
// loopback, every message synced to disk before its 250.
// Prints: accepted msg/s, delivered-into-mailbox msg/s, p50/p99 latency from the
// end of DATA to the 250, and the server's resident memory.
// Usage: node bench/receive.ts [count=5000] [size=5000] [connections=20]
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  benchDir,
  freePort,
  initMailwerk,
  MAILWERK_BIN,
  receivingEnv,
  smtpSource,
  treePssMiB,
} from './proc.ts';
import { benchMessage, percentile, SmtpClient } from './smtp-client.ts';

const count = Number(process.argv[2] ?? 5000);
const size = Number(process.argv[3] ?? 5000);
const connections = Number(process.argv[4] ?? 20);

const dir = await benchDir('mailwerk-bench-');
const port = await freePort();
const env = receivingEnv(dir, port, connections);
await initMailwerk(env, dir, ['bob@example.org']);

// BENCH_SPLIT=1 runs the MX and the MDA as two processes (as the shared setup does).
const split = process.env.BENCH_SPLIT === '1';
const start = (service: string | undefined, ready: RegExp) => {
  const p = spawn(MAILWERK_BIN, ['start', ...(service ? ['--service', service] : [])], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise<typeof p>((resolve) => {
    let out = '';
    p.stdout!.on('data', (d) => {
      out += d;
      if (ready.test(out)) resolve(p);
    });
  });
};
const mda = split ? await start('mda', /LMTP \(MDA\).*running/) : null;
const server = await start(split ? 'mta' : process.env.BENCH_SERVICES, /SMTP \(MX\).*running/);

const body = benchMessage(size);

const latencies: number[] = [];
let next = 0;
const t0 = performance.now();
if (process.env.BENCH_LOADGEN === 'smtp-source') {
  // Postfix's load generator (Debian package postfix) instead of ours; it reports no latencies.
  await smtpSource({ port, sessions: connections, messages: count, size });
} else
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = await SmtpClient.open(port);
      await c.cmd('EHLO load.example');
      while (next < count) {
        next++;
        latencies.push(await c.send('load@ext.org', ['bob@example.org'], body));
      }
      await c.quit();
    }),
  );
const acceptedSecs = (performance.now() - t0) / 1000;

const db = new DatabaseSync(join(dir, 'data', 'mailwerk.sqlite'), { readOnly: true, timeout: 10_000 });
const delivered = () => Number((db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n);
while (!process.env.BENCH_SERVICES && delivered() < count) await new Promise((r) => setTimeout(r, 50));
const deliveredSecs = (performance.now() - t0) / 1000;
// Read once, after the load: reading /proc/PID/smaps_rollup walks the process's page tables and stalls
// it, and sampled every 100 ms it took this process a third of a core (perf, 2026-12-02) besides.
const pss = treePssMiB([server.pid!, ...(mda ? [mda.pid!] : [])]);
db.close();

latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length ? percentile(latencies, p).toFixed(1) : 'n/a');
console.log(`messages: ${count} x ${size} B over ${connections} connections`);
console.log(`accepted:  ${(count / acceptedSecs).toFixed(0)} msg/s`);
console.log(`delivered: ${(count / deliveredSecs).toFixed(0)} msg/s (into the mailbox, end to end)`);
console.log(`latency end of DATA -> 250: p50 ${pct(50)} ms, p99 ${pct(99)} ms`);
console.log(`server PSS after the load (every process): ${pss.toFixed(0)} MiB`);
for (const p of [server, mda]) {
  if (!p) continue;
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
}
await rm(dir, { recursive: true, force: true });
