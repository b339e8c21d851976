// SORT and THREAD (RFC 5256) over one big mailbox, Mailwerk and Dovecot side by side in one run.
//
// Each server gets one account whose INBOX holds COUNT messages (the same bytes: bench/messages.ts, where
// every message answers the one before it, so REFERENCES builds one long chain). One client signs in,
// selects INBOX and runs each command once cold (the first time the server reads those messages for it)
// and RUNS times warm; it prints the cold time and the warm median per command, and the ratio of the
// warm medians. The target of the IMAP4rev2 issue: under 300 ms each at 10,000 messages.
//
// Dovecot: a private instance (bench/dovecot.ts); run as root.
//
// Usage: node bench/sort-thread.ts [count=10000] [runs=5]
// BENCH_ONLY=mailwerk or BENCH_ONLY=dovecot runs one side. BENCH_COMMANDS='cmd;cmd' runs those commands
// instead, in that order (the first one is the cold one: e.g. THREAD REFERENCES before any SORT).
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { generateSelfSigned } from '@mailwerk/tls';
import { startDovecot } from './dovecot.ts';
import { message, PASSWORD } from './messages.ts';
import { RawImap } from './raw-imap.ts';

const count = Number(process.argv[2] ?? 10_000);
const runs = Number(process.argv[3] ?? 5);
const only = process.env.BENCH_ONLY;

const COMMANDS = process.env.BENCH_COMMANDS
  ? process.env.BENCH_COMMANDS.split(';')
  : [
      'SORT (SUBJECT) UTF-8 ALL',
      'SORT (DATE) UTF-8 ALL',
      'SORT (REVERSE ARRIVAL) UTF-8 ALL',
      'SORT (FROM SIZE) UTF-8 ALL',
      'THREAD ORDEREDSUBJECT UTF-8 ALL',
      'THREAD REFERENCES UTF-8 ALL',
    ];

type Timing = Map<string, { cold: number; warm: number }>;

async function measure(port: number): Promise<Timing> {
  const c = new RawImap(port);
  await c.greeting();
  await c.cmd(`LOGIN u1@example.org "${PASSWORD}"`);
  await c.cmd('SELECT INBOX');
  const out: Timing = new Map();
  for (const command of COMMANDS) {
    const times: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const t = performance.now();
      const reply = await c.cmd(command);
      times.push(performance.now() - t);
      const tail = reply.subarray(Math.max(0, reply.length - 200)).toString('latin1');
      if (!/ OK/.test(tail)) throw new Error(`${command}: ${tail}`);
    }
    const [cold, ...warm] = times;
    warm.sort((a, b) => a - b);
    out.set(command, { cold: cold!, warm: warm[Math.floor(warm.length / 2)]! });
  }
  await c.cmd('LOGOUT');
  c.socket.destroy();
  return out;
}

function print(label: string, t: Timing): void {
  console.log(`\n${label}, ${count} messages (ms, cold / warm median of ${runs}):`);
  for (const [command, { cold, warm }] of t)
    console.log(`  ${command.padEnd(34)} ${cold.toFixed(0).padStart(7)} / ${warm.toFixed(0).padStart(6)}`);
}

const results: Record<string, Timing> = {};
if (only !== 'dovecot') {
  const child = fork(join(import.meta.dirname, 'imap-server.ts'), ['0', '1', String(count)], {
    execArgv: ['--disable-warning=ExperimentalWarning'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<{ port: number }>((resolve) =>
    child.on('message', (m: { type: string; port: number }) => m.type === 'ready' && resolve(m)),
  );
  results.mailwerk = await measure(ready.port);
  print('Mailwerk', results.mailwerk);
  child.send({ type: 'stop' });
  await new Promise((resolve) => child.once('exit', resolve));
}
if (only !== 'mailwerk') {
  const tls = await generateSelfSigned('bench.example.org');
  const accounts = new Map([['u1@example.org', Array.from({ length: count }, (_, i) => message(i + 1))]]);
  const d = await startDovecot(accounts, PASSWORD, tls);
  try {
    results.dovecot = await measure(d.port);
    print('Dovecot', results.dovecot);
  } finally {
    await d.stop();
  }
}
if (results.mailwerk && results.dovecot) {
  console.log('\nratio Mailwerk / Dovecot, warm median (lower is faster):');
  for (const command of COMMANDS)
    console.log(
      `  ${command.padEnd(34)} ${(results.mailwerk.get(command)!.warm / results.dovecot.get(command)!.warm).toFixed(2)}`,
    );
}
