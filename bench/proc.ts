// What processes cost, read from /proc (Linux).
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * PSS of one process in KiB: pages shared between processes (Node's code,
 * the code of Postfix's many smtpd processes) split among them, where RSS
 * would count them once per process. 0 for a process that is gone.
 */
export function pssKiB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The pids of the trees under `roots`, roots included. */
export function processTree(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** PSS summed over the trees under `roots`, in MiB. */
export const treePssMiB = (roots: number[]): number =>
  processTree(roots).reduce((sum, pid) => sum + pssKiB(pid), 0) / 1024;

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ: 100 on Linux's common builds). */
const TICKS_PER_SECOND = Number(
  (() => {
    try {
      return execFileSync('getconf', ['CLK_TCK']).toString().trim();
    } catch {
      return '100';
    }
  })(),
);

/**
 * CPU time (user + system, ms) spent so far by the trees under `roots`: each living process's own, and
 * what its children that ended and were waited for spent (cutime, cstime), so the short-lived processes of
 * Postfix and Dovecot (an smtpd, an lmtp) count once they are reaped. The difference of two readings is
 * the CPU the system spent between them; a process that ended unreaped in between is missed.
 */
export function treeCpuMs(roots: number[]): number {
  let ticks = 0;
  for (const pid of processTree(roots)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name: state is [0]; utime, stime, cutime, cstime are [11]..[14].
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone meanwhile
    }
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** The checkout's `mailwerk` command. */
export const MAILWERK_BIN = join(import.meta.dirname, '..', 'bin', 'mailwerk');

/** Runs `mailwerk ARGS` with `env`, `input` on its standard input; rejects unless it exits 0. */
export const mailwerkCli =
  (env: NodeJS.ProcessEnv) =>
  (args: string[], input = ''): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const c = spawn(MAILWERK_BIN, args, { env, stdio: ['pipe', 'ignore', 'inherit'] });
      c.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`mailwerk ${args.join(' ')}: ${code}`)),
      );
      c.stdin.end(input);
    });

/** A data directory `dir`/data for bench.example.org, with the domain example.org and `users` (each with `password`). */
export async function initMailwerk(
  env: NodeJS.ProcessEnv,
  dir: string,
  users: readonly string[],
  password = 'benchmark password',
): Promise<void> {
  const cli = mailwerkCli(env);
  await cli(['init', '--data-dir', join(dir, 'data'), '--hostname', 'bench.example.org']);
  await cli(['domain', 'add', 'example.org']);
  for (const u of users) await cli(['user', 'add', u], `${password}\n`);
}

/**
 * The environment of a `mailwerk` on loopback for a receiving benchmark: a
 * configuration in `dir`, the MX on `port`, the limits meant for the internet
 * raised for a load that comes from one address, sender authentication off (it
 * would ask the real DNS about the generator's domain), CPU profiles in
 * BENCH_PROF when set.
 */
export const receivingEnv = (dir: string, port: number, sessions: number): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  ...RUN_AS,
  MAILWERK_CONFIG: join(dir, 'mailwerk.toml'),
  MAILWERK_MTA__SMTP_PORT: String(port),
  MAILWERK_MTA__LISTEN: '127.0.0.1',
  MAILWERK_ACCESS__LISTEN: '127.0.0.1',
  MAILWERK_LOG_LEVEL: 'warn',
  MAILWERK_CHECKS__AUTHENTICATION: 'false',
  MAILWERK_LIMITS__MAX_CONNECTIONS_PER_IP: String(sessions * 2),
  MAILWERK_LIMITS__CONNECTIONS_PER_MINUTE: '1000000',
  // BENCH_MTA_PROCESSES=2: the MTA in two processes sharing the MX port (mta.processes).
  ...(process.env.BENCH_MTA_PROCESSES ? { MAILWERK_MTA__PROCESSES: process.env.BENCH_MTA_PROCESSES } : {}),
  ...(process.env.BENCH_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_PROF}` } : {}),
});

/**
 * Run as root (Postfix and Dovecot need it), `mailwerk start` drops its services to an unprivileged user:
 * `nobody` here, so a benchmark creates no user on the machine. Its data directory must be reachable by it.
 */
export const RUN_AS = { MAILWERK_RUN_AS: 'nobody' } as const;

/** A temporary directory the services' unprivileged user can reach (mkdtemp makes it 0700). */
export async function benchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

/** A TCP port free on loopback right now. */
export const freePort = (): Promise<number> =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** Free ports for every listener but the MX, as `MAILWERK_…` variables: instances that run at once each get their own. */
export async function listenerPorts(): Promise<Record<string, string>> {
  const keys = [
    'MTA__SUBMISSION_PORT',
    'MTA__SUBMISSIONS_PORT',
    'ACCESS__IMAP_PORT',
    'ACCESS__IMAPS_PORT',
    'ACCESS__POP3_PORT',
    'ACCESS__POP3S_PORT',
    'ADMIN__PORT',
    'ACCESS__AUTOCONFIG_HTTP_PORT',
    'ACCESS__AUTOCONFIG_HTTPS_PORT',
  ];
  const env: Record<string, string> = {};
  for (const k of keys) env[`MAILWERK_${k}`] = String(await freePort());
  return env;
}

/** What Postfix's load generator sends: `messages` of `size` bytes over `sessions` connections at once. */
export interface SmtpSourceLoad {
  port: number;
  sessions: number;
  messages: number;
  size: number;
  /** Recipients a message (smtp-source -r; bob@, 2bob@ … Nbob@). */
  recipients?: number;
  /** Several messages a connection (-d) rather than one. */
  reuse?: boolean;
}

/** Runs Postfix's smtp-source (Debian package postfix) against 127.0.0.1; it reports no latencies. */
export function smtpSource(load: SmtpSourceLoad): Promise<void> {
  const args = ['-s', String(load.sessions), '-m', String(load.messages), '-l', String(load.size)];
  if (load.recipients) args.push('-r', String(load.recipients));
  if (load.reuse) args.push('-d');
  args.push('-f', 'load@ext.org', '-t', 'bob@example.org', `127.0.0.1:${load.port}`);
  return new Promise<void>((resolve, reject) => {
    const p = spawn('smtp-source', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('error', (e) => reject(new Error(`smtp-source: ${e.message} (Debian package postfix)`)));
    p.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`smtp-source exited ${code}: ${err}`)),
    );
  });
}
