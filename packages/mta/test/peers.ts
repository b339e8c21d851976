/**
 * Private instances of the incumbents on loopback, for the tests that put
 * them on either side of our LMTP boundary: Postfix (Debian package postfix)
 * as the MTA in front of our MDA, and Dovecot's LMTP server (dovecot-lmtpd)
 * behind our MTA. Each runs from a temporary directory with its own
 * configuration, ports and logs, and is stopped by `stop()`; the system's own
 * instances (if any) are not touched. Both need root: they drop privileges
 * to their own users, as in production.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Why the peers cannot run here, or null when they can. */
export function peersMissing(): string | null {
  if (process.getuid?.() !== 0) return 'Postfix and Dovecot instances need root';
  for (const bin of ['/usr/sbin/postfix', '/usr/sbin/dovecot', '/usr/lib/dovecot/lmtp'])
    if (!existsSync(bin)) return `${bin} is missing (apt-get install postfix dovecot-lmtpd)`;
  return null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts connections on the port, up to `ms`. */
async function listening(port: number, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const readPid = (file: string) => (existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : 0);

/** Waits (up to 10 s) until the process is gone. */
async function gone(pid: number): Promise<void> {
  const until = Date.now() + 10_000;
  while (pid > 0 && Date.now() < until) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  // The daemons run as their own users and must reach their files in here.
  chmodSync(dir, 0o755);
  return dir;
}

export interface PostfixFront {
  /** Postfix's SMTP port. */
  port: number;
  /** Its log (maillog_file). */
  log(): string;
  /** The master process's pid (its services are its children). */
  pid(): number;
  stop(): Promise<void>;
}

/**
 * Postfix relaying `domain` to an LMTP server, as an admin puts Postfix in
 * front of a mail store: relay_domains plus relay_transport = lmtp. Retries
 * are quick (1 s) so a test sees a deferral turn into a delivery.
 */
export async function startPostfix(options: {
  domain: string;
  lmtpPort: number;
  /** Extra main.cf lines (a benchmark raises the client limits). */
  extra?: string;
}): Promise<PostfixFront> {
  const dir = tempDir('mailwerk-postfix-');
  const port = await freePort();
  for (const d of ['etc', 'queue', 'data']) mkdirSync(join(dir, d));
  execFileSync('chown', ['postfix', join(dir, 'data')]);
  const log = join(dir, 'maillog');
  writeFileSync(
    join(dir, 'etc', 'main.cf'),
    `compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = front.test
mydomain = front.test
myorigin = front.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = ${options.domain}
relay_transport = lmtp:inet:127.0.0.1:${options.lmtpPort}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_transport = error:no local delivery here
smtputf8_enable = yes
maillog_file = ${log}
maillog_file_prefixes = ${dir}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
${options.extra ?? ''}
`,
  );
  // Only the services a relay needs, none chrooted (the chroot would need a copy of /etc in the queue).
  const services = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'lmtp unix - - n - - lmtp',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  writeFileSync(join(dir, 'etc', 'master.cf'), `${services.join('\n')}\n`);
  const etc = join(dir, 'etc');
  // No pipes: the daemon would keep them open and spawnSync would wait for it to exit.
  const r = spawnSync('postfix', ['-c', etc, 'start'], { stdio: 'ignore' });
  const readLog = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  if (r.status !== 0) throw new Error(`postfix did not start (exit ${r.status}): ${readLog()}`);
  await listening(port);
  return {
    port,
    log: readLog,
    pid: () => readPid(join(dir, 'queue', 'pid', 'master.pid')),
    async stop() {
      const pid = readPid(join(dir, 'queue', 'pid', 'master.pid'));
      spawnSync('postfix', ['-c', etc, 'stop'], { stdio: 'ignore' });
      await gone(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface DovecotLmtp {
  port: number;
  /** The messages in a user's Maildir (new/ and cur/). */
  messages(user: string): Buffer[];
  /** How many messages all Maildirs hold, without reading them. */
  count(): number;
  log(): string;
  /** The master process's pid (its services are its children). */
  pid(): number;
  stop(): Promise<void>;
}

/** Dovecot's LMTP server, taking mail for any user into Maildirs under a temporary directory. */
export async function startDovecotLmtp(): Promise<DovecotLmtp> {
  const dir = tempDir('mailwerk-dovecot-');
  const port = await freePort();
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(dir, d));
  execFileSync('chown', ['dovecot', join(dir, 'mail')]);
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 1
first_valid_gid = 1
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:${dir}/mail/%u/Maildir
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=${dir}/mail/%u allow_all_users=yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
}
service anvil {
  chroot =
}
`,
  );
  const { readLog, stop } = await launchDovecot(dir, conf, [port]);
  return {
    port,
    log: readLog,
    messages(user) {
      const md = join(dir, 'mail', user, 'Maildir');
      return ['new', 'cur'].flatMap((sub) => {
        const d = join(md, sub);
        return existsSync(d) ? readdirSync(d).map((f) => readFileSync(join(d, f))) : [];
      });
    },
    count() {
      const mail = join(dir, 'mail');
      let n = 0;
      for (const user of readdirSync(mail))
        for (const sub of ['new', 'cur']) {
          const d = join(mail, user, 'Maildir', sub);
          if (existsSync(d)) n += readdirSync(d).length;
        }
      return n;
    },
    pid: () => readPid(join(dir, 'run', 'master.pid')),
    stop,
  };
}

/**
 * Starts a private Dovecot from `conf` (its base_dir under `dir`/run, its log `dir`/dovecot.log) and
 * waits for its ports; `stop()` ends it and removes `dir`.
 */
async function launchDovecot(dir: string, conf: string, ports: number[]) {
  const readLog = () =>
    existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8') : '';
  // No pipes: the daemon would keep them open and spawnSync would wait for it to exit.
  const r = spawnSync('dovecot', ['-c', conf], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`dovecot did not start (exit ${r.status}): ${readLog()}`);
  for (const port of ports) await listening(port);
  return {
    readLog,
    async stop() {
      const pid = readPid(join(dir, 'run', 'master.pid'));
      spawnSync('dovecot', ['-c', conf, 'stop'], { stdio: 'ignore' });
      await gone(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface DovecotImap {
  /** IMAP (no TLS: loopback only) and POP3 ports. */
  port: number;
  pop3Port: number;
  /** A user's Maildir (Maildir++), to fill before a test reads it over IMAP; owned by dovecot. */
  maildir(user: string): string;
  /** Gives the Maildir tree back to Dovecot's user after the test wrote into it. */
  chown(): void;
  log(): string;
  stop(): Promise<void>;
}

/** Why a Dovecot IMAP/POP3 instance cannot run here, or null. */
export function dovecotImapMissing(): string | null {
  if (process.getuid?.() !== 0) return 'a Dovecot instance needs root';
  for (const bin of ['/usr/sbin/dovecot', '/usr/lib/dovecot/imap', '/usr/lib/dovecot/pop3'])
    if (!existsSync(bin)) return `${bin} is missing (apt-get install dovecot-imapd dovecot-pop3d)`;
  return null;
}

/**
 * Dovecot's IMAP and POP3 servers over Maildirs under a temporary directory, for the users given with
 * their passwords (a passwd-file), the folders separated by "/" and Sent/Trash marked special-use.
 */
export async function startDovecotImap(users: Record<string, string>): Promise<DovecotImap> {
  const dir = tempDir('mailwerk-dovecot-imap-');
  const port = await freePort();
  const pop3Port = await freePort();
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(dir, d));
  writeFileSync(
    join(dir, 'passwd'),
    Object.entries(users)
      .map(([u, p]) => `${u}:{PLAIN}${p}::::::\n`)
      .join(''),
  );
  for (const u of Object.keys(users)) mkdirSync(join(dir, 'mail', u, 'Maildir'), { recursive: true });
  const chown = () => execFileSync('chown', ['-R', 'dovecot:dovecot', join(dir, 'mail')]);
  chown();
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:${dir}/mail/%u/Maildir
pop3_uidl_format = %08Xu%08Xv
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Trash {
    special_use = \\Trash
  }
}
passdb {
  driver = passwd-file
  args = ${dir}/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=${dir}/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${pop3Port}
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
`,
  );
  const { readLog, stop } = await launchDovecot(dir, conf, [port, pop3Port]);
  return {
    port,
    pop3Port,
    maildir: (user) => join(dir, 'mail', user, 'Maildir'),
    chown,
    log: readLog,
    stop,
  };
}
