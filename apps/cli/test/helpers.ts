import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '@mailwerk/store-sqlite';

export const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'mailwerk');

/**
 * What every test's mailwerk gets unless the test says otherwise: the admin port and account set-up off
 * (test files run at once, and each has one port), and, run as root, the services dropped to `nobody` (so no test creates a
 * user on the machine; privileges.ts).
 */
export const DEFAULT_ENV = {
  MAILWERK_ADMIN__PORT: '0',
  MAILWERK_RUN_AS: 'nobody',
  // On by default on 80/443 (2080/2443 in the sandboxes): one port for all test files at once.
  MAILWERK_ACCESS__AUTOCONFIG: 'false',
} as const;

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Sandbox {
  dir: string;
  config: string;
  /** Runs the real `mailwerk` binary against this sandbox's config, feeding `input` on stdin. */
  run(args: string[], input?: string, env?: Record<string, string>): Promise<Result>;
  /** Starts a long-running `mailwerk` (start) and resolves once its output matches `ready`. */
  spawn(args: string[], ready: RegExp, env?: Record<string, string>): Promise<Service>;
  /** Like run, but fails the test unless the exit status is 0, and parses --json output. */
  json<T = unknown>(args: string[], input?: string): Promise<T>;
  cleanup(): Promise<void>;
}

export interface Service {
  child: ChildProcess;
  output(): string;
  /** Ends the process and waits for it. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function startService(
  dir: string,
  config: string,
  args: string[],
  ready: RegExp,
  env: Record<string, string>,
): Promise<Service> {
  const child = spawn(BIN, args, {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir, MAILWERK_CONFIG: config, ...DEFAULT_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const service: Service = {
    child,
    output: () => out,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start: ${out}`)), 15_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(service);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`service exited with ${code}: ${out}`));
    });
  });
}

/**
 * Ports for services that need theirs in their config, and keep it over many starts. A port the kernel hands out
 * (`listen(0)`) comes from the ephemeral range, where every outgoing connection of the other test files running at
 * the same time also takes its local port: one restart in a long test then found "its" port taken (CI, 2026-12-02).
 * So ports are chosen below that range, and reserved for this process with a file per port that other test
 * processes respect while this process lives.
 */
const RESERVED = join(tmpdir(), 'mailwerk-test-ports');
const LOW = 20_000;
const HIGH = ephemeralStart() - 1;

function ephemeralStart(): number {
  try {
    return (
      Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768
    );
  } catch {
    return 32_768;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the reservation file of `port` for this process, unless a living process holds it. */
function reserve(port: number): boolean {
  const file = join(RESERVED, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(file, 'utf8'));
      if (holder === process.pid || (holder > 0 && alive(holder))) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

const bindable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });

/** A loopback port outside the kernel's ephemeral range that nothing listens on, reserved for this test process. */
export async function freePort(): Promise<number> {
  mkdirSync(RESERVED, { recursive: true, mode: 0o777 });
  for (let tries = 0; tries < 1000; tries++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (reserve(port) && (await bindable(port))) return port;
  }
  throw new Error(`no free port between ${LOW} and ${HIGH}`);
}

export async function sandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-cli-'));
  // Run as root, `mailwerk start` drops its services to an unprivileged user (RUN_AS), who must reach the data.
  await chmod(dir, 0o755);
  const config = join(dir, 'mailwerk.toml');
  const run = (args: string[], input = '', extraEnv: Record<string, string> = {}): Promise<Result> =>
    new Promise((resolve, reject) => {
      const child = spawn(BIN, args, {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          MAILWERK_CONFIG: config,
          ...DEFAULT_ENV,
          ...extraEnv,
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(input);
    });
  const sb: Sandbox = {
    dir,
    config,
    run,
    // ManageSieve has no setting that turns it off: each started mailwerk gets a free port of its own.
    spawn: async (args, ready, env = {}) =>
      startService(dir, config, args, ready, {
        MAILWERK_ACCESS__MANAGESIEVE_PORT: String(await freePort()),
        ...env,
      }),
    async json<T>(args: string[], input?: string) {
      const r = await run(['--json', ...args], input);
      if (r.code !== 0) throw new Error(`mailwerk ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  return sb;
}

/** A sandbox initialised as most tests expect it: mail.example.org, unprivileged ports. */
export async function initialised(): Promise<Sandbox> {
  const fresh = await sandbox();
  const init = await fresh.run([
    'init',
    '--data-dir',
    'data',
    '--hostname',
    'mail.example.org',
    '--unprivileged-ports',
  ]);
  if (init.code !== 0) throw new Error(`mailwerk init failed: ${init.stderr}`);
  return fresh;
}

/** The service processes under a supervisor: name → pid. */
export function children(supervisorPid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let list = '';
  try {
    list = execFileSync('pgrep', ['-a', '-P', String(supervisorPid)]).toString();
  } catch {
    return out; // none
  }
  for (const line of list.trim().split('\n')) {
    const m = /^(\d+) .*child\.js \S+ (mta|mda|access)$/.exec(line);
    if (m) out[m[2]!] = Number(m[1]);
  }
  return out;
}

/** Every message of a user: folder, subject, sorted flags, INTERNALDATE (seconds), and its bytes. */
export async function contents(sb: Sandbox, user: string) {
  const store = openSqliteStore({ path: join(sb.dir, 'data', 'mailwerk.sqlite'), blobs: 'sqlite' });
  try {
    const account = (await store.getAccountByAddress(user))!;
    const out: Array<{ folder: string; subject: string; flags: string; date: number; raw: string }> = [];
    for (const box of await store.listMailboxes(account.id)) {
      for (const m of await store.listMessages(box.id)) {
        out.push({
          folder: box.name,
          subject: m.structure.root.envelope?.subject ?? '',
          flags: [...m.flags].sort().join(' '),
          date: Math.floor(m.internalDate.getTime() / 1000),
          raw: (await store.blobs.get(m.blobId)).toString('latin1'),
        });
      }
    }
    return out.sort((a, b) => `${a.folder} ${a.subject}`.localeCompare(`${b.folder} ${b.subject}`));
  } finally {
    await store.close();
  }
}
