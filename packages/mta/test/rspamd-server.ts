/**
 * A real rspamd (Debian package rspamd) for the tests: a minimal
 * configuration in a temporary directory, one scanner worker on a loopback
 * port, the rules in fixtures/rspamd-rules.lua, and DNS pointed at a closed
 * loopback port so that no query leaves the host.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../limits/test/redis-server.ts';

export interface Rspamd {
  url: string;
  stop(): Promise<void>;
}

export async function startRspamd(): Promise<Rspamd> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-rspamd-'));
  await mkdir(join(dir, 'db'));
  const port = await freePort();
  const rules = join(import.meta.dirname, 'fixtures', 'rspamd-rules.lua');
  await writeFile(
    join(dir, 'rspamd.conf'),
    `options {
  pidfile = "${dir}/rspamd.pid";
  dbdir = "${dir}/db";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 0; }
}
logging { type = "file"; filename = "${dir}/rspamd.log"; level = "warning"; }
actions { reject = 15; rewrite_subject = 8; add_header = 6; greylist = 4; subject = "[SPAM] %s"; }
worker "normal" { bind_socket = "127.0.0.1:${port}"; count = 1; }
lua = "${rules}";
`,
  );
  const asRoot = process.getuid?.() === 0 ? ['-u', 'root', '-g', 'root'] : [];
  const child: ChildProcess = spawn('rspamd', ['-f', '-i', ...asRoot, '-c', join(dir, 'rspamd.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  // Loading (the TLD list, language models) takes a few seconds.
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`rspamd exited: ${stderr}`);
    try {
      const res = await fetch(`${url}/ping`);
      if ((await res.text()).trim() === 'pong') break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) throw new Error(`rspamd did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
