/**
 * A service process under `mailwerk start`'s supervisor:
 * `child.ts CONFIG SERVICE [SHARED]` (SHARED: other processes of the same
 * service listen on its ports too, mta.processes). It runs one service with the bus and counters
 * of the supervisor (over IPC) unless Redis is configured, tells the
 * supervisor when it listens (or why it cannot), and says it is alive every
 * second together with its oldest running work, so that a stalled event loop
 * is noticed and reported.
 */
import type { Config } from '@mailwerk/config';
import { type ChildMessage, IpcBus, IpcCounters, type ParentMessage } from './ipc.ts';
import { createLogger } from './log.ts';
import { dropPrivileges, isRoot, serviceIdentity } from './privileges.ts';
import { type Running, SERVICES, type ServiceName, startServices } from './services.ts';

const [configPath, service, shared] = process.argv.slice(2) as [string, ServiceName, string | undefined];
if (!SERVICES.includes(service) || !process.send) {
  process.stderr.write(
    'mailwerk: child.ts is started by `mailwerk start`, with a config path and a service\n',
  );
  process.exit(2);
}
const send = (m: ChildMessage) => {
  if (process.connected) process.send!(m);
};

// The supervisor sends the configuration it read; without one (started by hand), this process reads the file.
const config = await new Promise<Config>((resolve) => {
  const timer = setTimeout(async () => {
    process.off('message', first);
    resolve((await import('@mailwerk/config')).loadConfig({ path: configPath }));
  }, 2000);
  const first = (m: ParentMessage) => {
    if (m.t !== 'config') return;
    clearTimeout(timer);
    process.off('message', first);
    resolve(m.config);
  };
  process.on('message', first);
});
const log = createLogger(config.log_level, service);
const viaSupervisor = !config.redis.url;
const bus = viaSupervisor ? new IpcBus() : undefined;
const counters = viaSupervisor ? new IpcCounters() : undefined;

// Work in progress, oldest first (a Map keeps insertion order).
const work = new Map<number, { what: string; since: number }>();
let nextWork = 0;
const activity = (what: string) => {
  const id = ++nextWork;
  work.set(id, { what, since: Date.now() });
  return () => void work.delete(id);
};
const alive = setInterval(() => {
  const oldest = work.values().next().value;
  send({ t: 'alive', activity: oldest?.what ?? null, since: oldest?.since ?? 0 });
}, 1000);
alive.unref();

let running: Running | null = null;
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  clearInterval(alive);
  try {
    await running?.stop();
  } catch (err) {
    log.error(err, 'stopping');
  }
  process.exit(code);
};

process.on('message', (m: ParentMessage) => {
  if (m.t === 'bus') for (const event of m.events) bus?.deliver(event);
  else if (m.t === 'counter-result') counters?.settle(m);
  else if (m.t === 'stop') void stop(0);
  else if (m.t === 'reload') running?.reload(m.why, m.config);
  else if (m.t === 'metrics' && running)
    void running.metrics
      .snapshot()
      .then((metrics) => send({ t: 'metrics', id: m.id, metrics }))
      .catch((err) => log.error(err, 'metrics'));
});
// The supervisor is gone (killed): this process must not outlive it, nor hold the ports a new supervisor
// needs, so it ends at once. Nothing acknowledged is lost: mail is answered 250 only once stored, and an
// interrupted delivery is retried from the queue.
process.on('disconnect', () => {
  if (!stopping) process.exit(0);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void stop(0));
// A hangup (the terminal's, or an admin's kill -HUP) reloads; it never ends the process.
process.on('SIGHUP', () => running?.reload('SIGHUP'));

try {
  running = await startServices(config, [service], {
    logger: log,
    ...(bus ? { bus } : {}),
    ...(counters ? { counters } : {}),
    busCarriesMda: true,
    activity,
    logListening: false,
    sharePorts: shared === 'shared',
  });
  // Started as root to bind its ports: from here on, the unprivileged user (privileges.ts).
  if (isRoot()) dropPrivileges(serviceIdentity(config), running.listening);
  send({ t: 'ready', listening: running.listening });
} catch (err) {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const address = e.port ? `${e.address ?? ''}:${e.port}` : e.address;
  // The supervisor reports it (one clear line for the admin); the stack is for debugging.
  log.log('debug', 'start failed', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  // Exit once the message has left (process.exit would drop it).
  process.send!(
    {
      t: 'failed',
      message: e instanceof Error ? e.message : String(e),
      ...(e.code ? { code: e.code } : {}),
      ...(address ? { address } : {}),
    } satisfies ChildMessage,
    () => process.exit(1),
  );
}
