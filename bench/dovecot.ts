// A private Dovecot IMAP server for the benchmarks that compare with it (imap.ts, imap-mix.ts): Debian's
// dovecot-imapd (apt-get install dovecot-imapd), a throwaway configuration in its high-performance mode
// (imap-login service_count = 0, one imap process per connection), implicit TLS on loopback, Maildir in
// a temporary directory. Run as root (Dovecot drops to its own users). Never the system's instance.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './proc.ts';
import { RawImap } from './raw-imap.ts';

export interface Dovecot {
  port: number;
  /** The master process: its tree is every Dovecot process of the instance. */
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts Dovecot with `accounts` (address → the messages of its INBOX, written straight into the
 * Maildir; Dovecot indexes them when the mailbox is first selected), all with `password`.
 */
export async function startDovecot(
  accounts: Map<string, Buffer[]>,
  password: string,
  tls: { key: string; cert: string },
): Promise<Dovecot> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-bench-dovecot-'));
  const base = join(dir, 'dovecot');
  const port = await freePort();
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(base, d), { recursive: true });
  writeFileSync(join(base, 'key.pem'), tls.key, { mode: 0o600 });
  writeFileSync(join(base, 'cert.pem'), tls.cert);
  writeFileSync(join(base, 'passwd'), [...accounts.keys()].map((a) => `${a}:{PLAIN}${password}\n`).join(''));
  const uid = Number(execFileSync('id', ['-u', 'dovecot']).toString());
  const gid = Number(execFileSync('id', ['-g', 'dovecot']).toString());
  for (const [address, messages] of accounts) {
    const md = join(base, 'mail', address, 'Maildir');
    for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(md, sub), { recursive: true });
    messages.forEach((raw, k) => {
      const i = k + 1;
      // Every third one read, as the Mailwerk side stores them.
      writeFileSync(join(md, 'cur', `${1_700_000_000 + i}.M${i}P1.bench:2,${i % 3 === 0 ? 'S' : ''}`), raw);
    });
  }
  execFileSync('chown', ['-R', `${uid}:${gid}`, join(base, 'mail')]);
  chmodSync(dir, 0o755);
  writeFileSync(
    join(base, 'dovecot.conf'),
    `base_dir = ${base}/run
state_dir = ${base}/state
log_path = ${base}/dovecot.log
protocols = imap
listen = 127.0.0.1
first_valid_uid = 1
first_valid_gid = 1
ssl = required
ssl_cert = <${base}/cert.pem
ssl_key = <${base}/key.pem
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:${base}/mail/%u/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${base}/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=${base}/mail/%u
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${port}
    ssl = yes
  }
  service_count = 0
  process_min_avail = 2
  chroot =
}
service imap {
  process_limit = 2048
}
service anvil {
  chroot =
}
mail_max_userip_connections = 2000
`,
  );
  const d = spawn('dovecot', ['-F', '-c', join(base, 'dovecot.conf')], { stdio: 'inherit' });
  const stop = async () => {
    if (d.exitCode === null) {
      d.kill('SIGTERM');
      await new Promise((resolve) => d.once('exit', resolve));
    }
    await rm(dir, { recursive: true, force: true });
  };
  // Wait for the listener.
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = new RawImap(port);
      s.socket.once('secureConnect', () => {
        s.socket.destroy();
        resolve(true);
      });
      s.socket.once('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 100) {
      await stop();
      throw new Error('dovecot did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, pid: d.pid!, stop };
}
