/**
 * The process `mailwerk start` becomes on one host (bin/mailwerk execs it,
 * so it keeps the PID a service manager watches). It stays small: the
 * built JavaScript, no store, no service code, no configuration parser.
 *
 * 1. The CLI, in a short-lived child (`main.ts … start --supervised`),
 *    initialises what is missing and hands over the configuration.
 * 2. The services start, each in a process of its own (supervisor.ts).
 * 3. The CLI child prints the summary (or why the start failed) and exits.
 * 4. SIGTERM or SIGINT stops everything within the configured bound.
 *
 * Usage (by bin/mailwerk): supervise.js [the arguments of `mailwerk … start …`]
 */
import { execFile, fork } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '@mailwerk/config';
import { adminServer } from './admin.ts';
import { configChanges, withReloadable } from './config-reload.ts';
import { listen } from './listen.ts';
import { createLogger } from './log.ts';
import { handOverData, isRoot, serviceIdentity } from './privileges.ts';
import { SERVICES } from './services.ts';
import { StartError, Supervisor } from './supervisor.ts';
import { mailwerkVersion } from './version.ts';

/** Messages between this process and the CLI child. */
export type ReporterMessage =
  | { t: 'config'; configPath: string; config: Config }
  | { t: 'started'; listening: Array<{ service: string; address: string }> }
  | { t: 'failed'; message: string; code?: string; address?: string };

const ROOT = join(import.meta.dirname, '..', '..', '..');

/**
 * Node options of the service processes: the built JavaScript (no type
 * stripping, about 12 MB less each), a 4 MiB young generation instead of 16
 * MiB (less memory at rest; 1 MiB saved 6 MB a process more but doubled the
 * garbage collection of the MTA and the MDA under load, docs/decisions.md),
 * and one V8 worker thread.
 */
const SERVICE_NODE_OPTIONS = ['--conditions=mailwerk-js', '--max-semi-space-size=4', '--v8-pool-size=1'];

const reporter = fork(
  join(ROOT, 'apps', 'cli', 'src', 'main.ts'),
  [...process.argv.slice(2), '--supervised'],
  {
    execArgv: ['--disable-warning=ExperimentalWarning'],
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  },
);
const reporterExit = new Promise<number>((resolve) => reporter.once('exit', (code) => resolve(code ?? 1)));
const handed = await new Promise<Extract<ReporterMessage, { t: 'config' }> | null>((resolve) => {
  reporter.once('message', (m: ReporterMessage) => resolve(m.t === 'config' ? m : null));
  reporter.once('exit', () => resolve(null));
});
// The CLI said why it could not start (a bad configuration, a data directory it cannot create …).
if (!handed) process.exit(await reporterExit);

const { config, configPath } = handed;
const log = createLogger(config.log_level, 'supervisor');
const supervisor = new Supervisor({
  configPath,
  config,
  services: SERVICES,
  log,
  entry: join(import.meta.dirname, 'child.js'),
  execArgv: SERVICE_NODE_OPTIONS,
  watchdogMs: config.supervisor.watchdog_seconds * 1000,
  stopTimeoutMs: config.supervisor.stop_timeout_seconds * 1000,
  // glibc raises its mmap threshold after large blocks are freed, so the 19 MiB of every argon2 check (on
  // libuv's threads) then stay in the heap for good: measured 176 MB instead of 99 MB for the access
  // process after ten sign-ins (bench/memory.ts). A fixed threshold returns such blocks when freed.
  env: { ...process.env, MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? '1048576' },
});
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await supervisor.stop();
  rmSync(pidFile, { force: true });
  process.exit(code);
};
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void stop(0));
// SIGHUP (kill -HUP, `mailwerk reload`) reloads the certificates and the reloadable settings in every
// service; it never ends anything. The file is checked by the CLI, as at start (config-reload.ts).
let current = config;
process.on('SIGHUP', () => {
  log.log('info', 'reload requested (SIGHUP)', {});
  execFile(
    process.execPath,
    [
      '--disable-warning=ExperimentalWarning',
      join(ROOT, 'apps', 'cli', 'src', 'main.ts'),
      '--json',
      '--config',
      configPath,
      'config',
      'check',
    ],
    { maxBuffer: 4 * 1024 * 1024, timeout: 30_000 },
    (err, stdout, stderr) => {
      if (err) {
        log.log('error', 'configuration not reloaded: the file does not check; the settings in use stay', {
          error: (stderr || err.message).trim(),
        });
        supervisor.reload('SIGHUP');
        return;
      }
      const next = JSON.parse(stdout) as Config;
      const { applied, atNextStart } = configChanges(current, next);
      current = withReloadable(current, next);
      log.setLevel?.(current.log_level);
      if (applied.length || atNextStart.length)
        log.log('info', 'configuration reloaded', { applied, atNextStart });
      supervisor.reload('SIGHUP', applied.length ? current : undefined);
    },
  );
});
/** Where `mailwerk reload` finds this process. */
const pidFile = join(config.data_dir, 'mailwerk.pid');
try {
  // Started as root: the data directory goes to the services' user before they start (privileges.ts).
  if (isRoot()) {
    try {
      handOverData(config, serviceIdentity(config));
    } catch (err) {
      throw new StartError('start', { message: (err as Error).message });
    }
  }
  const listening = await supervisor.start();
  if (config.admin.port > 0) {
    const admin = adminServer(supervisor, { version: mailwerkVersion(), node: process.versions.node });
    try {
      const address = await listen(admin, config.admin.port, config.admin.listen);
      listening.push({ service: 'Admin (HTTP)', address });
      log.log('info', 'listening', { service: 'Admin (HTTP)', address });
    } catch (err) {
      // Mail goes on without its metrics: a taken admin port is a log line, not a server that does not start.
      log.log('error', 'the admin port is not available: no metrics, health or status endpoints', {
        address: `${config.admin.listen}:${config.admin.port}`,
        error: (err as Error).message,
      });
    }
  }
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o644 });
  reporter.send({ t: 'started', listening } satisfies ReporterMessage);
  await reporterExit;
} catch (err) {
  const e = err instanceof StartError ? err : new StartError('start', { message: String(err) });
  reporter.send({
    t: 'failed',
    message: e.message,
    ...(e.code ? { code: e.code } : {}),
    ...(e.address ? { address: e.address } : {}),
  } satisfies ReporterMessage);
  await reporterExit;
  process.exit(1);
}
