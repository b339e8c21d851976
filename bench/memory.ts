// Memory of `mailwerk start` (the supervisor and its service processes), at rest and after a short load of
// IMAP clients: PSS per process (resident memory with pages shared between the processes, such as Node's own
// code, split among them) and the sum, which is what the suite costs the machine.
// Usage: node bench/memory.ts [clients=10] [seconds=10]
import { execFileSync, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { message, PASSWORD } from './messages.ts';
import { benchDir, freePort, initMailwerk, listenerPorts, MAILWERK_BIN, pssKiB, RUN_AS } from './proc.ts';
import { RawImap } from './raw-imap.ts';

const clients = Number(process.argv[2] ?? 10);
const seconds = Number(process.argv[3] ?? 10);

const dir = await benchDir('mailwerk-bench-mem-');
const ports = await listenerPorts();
const imaps = Number(ports.MAILWERK_ACCESS__IMAPS_PORT);
const env = {
  PATH: process.env.PATH,
  ...RUN_AS,
  MAILWERK_CONFIG: join(dir, 'mailwerk.toml'),
  MAILWERK_LOG_LEVEL: 'warn',
  MAILWERK_MTA__LISTEN: '127.0.0.1',
  MAILWERK_MTA__SMTP_PORT: String(await freePort()),
  MAILWERK_ACCESS__LISTEN: '127.0.0.1',
  ...ports,
};
await initMailwerk(
  env,
  dir,
  Array.from({ length: clients }, (_, i) => `u${i + 1}@example.org`),
  PASSWORD,
);

const server = spawn(MAILWERK_BIN, ['start'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise<void>((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    if (/IMAP \(TLS\)\s+\S+\s+running/.test(out)) resolve();
  });
  server.once('exit', (code) => reject(new Error(`mailwerk start exited with ${code}`)));
});

/** PSS in KiB of the supervisor and each process under it. */
function measure(): Array<{ name: string; pss: number }> {
  const pss = pssKiB;
  const rows = [{ name: 'supervisor', pss: pss(server.pid!) }];
  for (const line of execFileSync('pgrep', ['-a', '-P', String(server.pid)])
    .toString()
    .trim()
    .split('\n')) {
    const [pid, ...cmd] = line.split(' ');
    rows.push({ name: cmd[cmd.length - 1]!, pss: pss(Number(pid)) });
  }
  return rows;
}

function print(label: string, rows: Array<{ name: string; pss: number }>): void {
  const mb = (k: number) => (k / 1024).toFixed(1);
  console.log(
    `${label}: ${rows.map((r) => `${r.name} ${mb(r.pss)}`).join(', ')}; total ${mb(rows.reduce((a, r) => a + r.pss, 0))} MB (PSS)`,
  );
}

await new Promise((r) => setTimeout(r, 3000));
print('at rest', measure());

// Each client fills its INBOX a little, then reads it for the given time.
const sessions = await Promise.all(
  Array.from({ length: clients }, async (_, i) => {
    const c = new RawImap(imaps);
    await c.greeting();
    await c.cmd(`LOGIN u${i + 1}@example.org "${PASSWORD}"`);
    for (let k = 0; k < 50; k++) await c.append('INBOX', message(k));
    await c.cmd('SELECT INBOX');
    return c;
  }),
);
const until = Date.now() + seconds * 1000;
await Promise.all(
  sessions.map(async (c) => {
    while (Date.now() < until) {
      await c.cmd('FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)');
      await c.cmd('UID FETCH 1:10 (BODY.PEEK[])');
      await c.cmd('SEARCH UNSEEN');
    }
  }),
);
print(`with ${clients} IMAP clients busy`, measure());
for (const c of sessions) c.socket.destroy();
await new Promise((r) => setTimeout(r, 3000));
print('at rest again', measure());
server.kill('SIGTERM');
await new Promise((resolve) => server.once('exit', resolve));
await rm(dir, { recursive: true, force: true });
