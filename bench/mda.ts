/**
 * The MDA alone: a real `mailwerk start --service mda` (its own process, the SQLite store, every
 * message synced before its 250) taking LMTP from our LMTP client, 20 deliveries at a time as the
 * MX's direct deliveries and the queue runner make them. What the MDA costs a message, without the
 * MX, the load generator's SMTP or a comparison: its process's CPU (user + system, from /proc) over
 * the messages it delivered, and the time from the end of the message to the LMTP reply.
 *
 *   node bench/mda.ts [messages=4000] [rounds=3] [size=5000]
 *
 * As root it runs the MDA as `nobody`, like the other benchmarks. Each round delivers to a fresh
 * store; the first round runs in code V8 has not optimized yet.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { LmtpClient } from '../packages/mta/src/lmtp-client.ts';
import {
  benchDir,
  freePort,
  initMailwerk,
  listenerPorts,
  MAILWERK_BIN,
  receivingEnv,
  treeCpuMs,
} from './proc.ts';
import { benchMessage, percentile } from './smtp-client.ts';

const [count = 4000, rounds = 3, size = 5000] = process.argv.slice(2).map(Number);
const CONCURRENCY = 20;

async function round(): Promise<{ perSecond: number; cpuMicros: number; p50: number; p99: number }> {
  const dir = await benchDir('mailwerk-mda-');
  const lmtpPort = await freePort();
  const env = {
    ...receivingEnv(dir, await freePort(), CONCURRENCY),
    ...(await listenerPorts()),
    MAILWERK_MDA__LMTP: `127.0.0.1:${lmtpPort}`,
  };
  await initMailwerk(env, dir, ['bob@example.org']);
  const mda = spawn(MAILWERK_BIN, ['start', '--service', 'mda'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    mda.stdout!.on('data', (d) => {
      out += d;
      if (/LMTP.*running/.test(out)) resolve();
    });
    mda.once('exit', (code) => reject(new Error(`mailwerk start --service mda exited ${code}: ${out}`)));
  });
  const client = new LmtpClient(`127.0.0.1:${lmtpPort}`, { hostname: 'mx.bench' });
  const data = Buffer.from(benchMessage(size));
  const deliver = async (n: number, latencies?: number[]) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next++ < n) {
          const t = performance.now();
          const [r] = await client.deliver({ sender: 'load@ext.org', recipients: ['bob@example.org'], data });
          if (r?.code !== 250) throw new Error(`not delivered: ${r?.code} ${r?.text}`);
          latencies?.push(performance.now() - t);
        }
      }),
    );
  };
  // Unmeasured: the connections opened, the first statements prepared.
  await deliver(Math.ceil(count / 10));
  const latencies: number[] = [];
  const cpu0 = treeCpuMs([mda.pid!]);
  const t0 = performance.now();
  await deliver(count, latencies);
  const seconds = (performance.now() - t0) / 1000;
  const cpuMs = treeCpuMs([mda.pid!]) - cpu0;
  client.close();
  mda.kill('SIGTERM');
  await new Promise((r) => mda.once('exit', r));
  await rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    perSecond: Math.round(count / seconds),
    cpuMicros: Math.round((cpuMs * 1000) / count),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

console.log(`${count} messages of about ${size} bytes a round, ${CONCURRENCY} deliveries at a time`);
console.log('| round | delivered msg/s | MDA CPU µs/msg | LMTP end of data → 250 p50 / p99 ms |');
console.log('| --- | --- | --- | --- |');
for (let i = 1; i <= rounds; i++) {
  const r = await round();
  console.log(`| ${i} | ${r.perSecond} | ${r.cpuMicros} | ${r.p50.toFixed(1)} / ${r.p99.toFixed(1)} |`);
}
