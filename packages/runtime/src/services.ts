/**
 * Starts services in this process: every one of them, one per process in the
 * shared setup, or the one a supervised child runs (see supervisor.ts). The
 * MTA always reaches the MDA over LMTP, even inside one process, so either
 * side can be replaced by another product. Each service's code is loaded
 * only when the service runs here.
 */
import { AuthThrottle } from '@mailwerk/auth';
import { type Bus, InProcessBus } from '@mailwerk/bus';
import type { Config } from '@mailwerk/config';
import { type Counters, InProcessCounters } from '@mailwerk/limits';
import type { MailStore } from '@mailwerk/store';
import { ensureCertificate } from '@mailwerk/tls';
import { ACME_CERTIFICATE } from './acme.ts';
import { type Listenable, type Listening, listen } from './listen.ts';
import { createLogger, type Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import type { ServiceDeps, StartedService } from './services/types.ts';
import { openStore } from './store.ts';
import { TlsReloader } from './tls-reload.ts';

export type ServiceName = 'mta' | 'mda' | 'access';
export const SERVICES: readonly ServiceName[] = ['mta', 'mda', 'access'];
export type { Listening };

export interface Running {
  listening: Listening[];
  store: MailStore;
  metrics: Metrics;
  /**
   * Reads the certificate files again and gives them to every server (SIGHUP, `mailwerk reload`); with
   * a configuration read anew, every service takes its reloadable settings (config-reload.ts).
   */
  reload(why: string, config?: Config): boolean;
  stop(): Promise<void>;
}

export interface RunOptions {
  logger?: Logger;
  /** The bus and counters to use instead of this process's own (a supervised child's, over IPC). */
  bus?: Bus;
  counters?: Counters;
  /** The given bus carries the MDA's events although the MDA runs elsewhere. */
  busCarriesMda?: boolean;
  activity?: (what: string) => () => void;
  /** Log a line per listening address (default); a supervised child leaves that to its supervisor. */
  logListening?: boolean;
  /** Other processes listen on the same TCP ports (mta.processes): SO_REUSEPORT. Default: from mta.processes. */
  sharePorts?: boolean;
}

const MODULES: Record<ServiceName, () => Promise<{ start(d: ServiceDeps): Promise<StartedService> }>> = {
  mta: () => import('./services/mta.ts'),
  mda: () => import('./services/mda.ts'),
  access: () => import('./services/access.ts'),
};

export async function startServices(
  config: Config,
  services: readonly ServiceName[] = SERVICES,
  options: RunOptions = {},
): Promise<Running> {
  const log = options.logger ?? createLogger(config.log_level, 'mailwerk');
  // A process of the MDA alone syncs its deliveries on its event loop (it has nothing else to do meanwhile).
  // The process that runs the MDA checkpoints the WAL in a thread (store-sqlite's checkpointer.ts).
  const store = openStore(config, {
    syncOnLoop: services.length === 1 && services[0] === 'mda',
    ...(services.includes('mda')
      ? { checkpointer: { onError: (err: Error) => log.error(err, 'checkpointing the WAL') } }
      : {}),
  });
  // Change events and abuse counters: Redis when several processes share the store, else this process's
  // own (or the supervisor's, handed in).
  const bus: Bus =
    options.bus ??
    (config.redis.url
      ? new (await import('@mailwerk/bus/redis')).RedisBus(config.redis.url)
      : new InProcessBus());
  const counters: Counters =
    options.counters ??
    (config.redis.url
      ? new (await import('@mailwerk/limits/redis')).RedisCounters(config.redis.url)
      : new InProcessCounters());
  const started: StartedService[] = [];
  const metrics = new Metrics();
  // mta.processes above 1: this MTA is one of several on the same ports (the supervisor's, or processes an
  // admin runs with `--service mta`), so it listens with SO_REUSEPORT.
  const sharePorts =
    options.sharePorts ?? (config.mta.processes > 1 && services.length === 1 && services[0] === 'mta');
  let certificates: TlsReloader | null = null;
  const shutdown = async () => {
    certificates?.stop();
    // In reverse order: the MTA (and its pooled LMTP connections) before the MDA it talks to.
    for (const s of started.reverse()) await s.stop().catch((err) => log.error(err, 'stopping a service'));
    await bus.close();
    await counters.close();
    await store.close();
  };
  try {
    const tls = await ensureCertificate({
      certPath: config.tls.cert,
      keyPath: config.tls.key,
      hostname: config.hostname,
    });
    // With ACME on, the certificate in the store outranks the files (which keep the self-signed one
    // used until the first order has been filled).
    const stored = async () => {
      const item = await store.getTlsItem(ACME_CERTIFICATE);
      return item?.cert && item.key ? { cert: item.cert, key: item.key } : null;
    };
    certificates = new TlsReloader(
      { cert: config.tls.cert, key: config.tls.key },
      tls,
      log,
      config.tls.acme.enabled ? { initial: await stored(), read: stored } : null,
    );
    certificates.watch(config.tls.reload_check_seconds * 1000);
    const deps: ServiceDeps = {
      config,
      store,
      bus,
      busCarriesMda: Boolean(config.redis.url) || services.includes('mda') || Boolean(options.busCarriesMda),
      counters,
      // One count of failed sign-ins for submission, IMAP and POP3, so a guesser cannot switch protocols.
      // Every refused sign-in is one line in a fixed format, the one infra/fail2ban/ matches.
      throttle: new AuthThrottle({
        counters,
        onFailure: (failure) => {
          metrics.authFailures.inc({ service: failure.service, reason: failure.reason });
          log.log('warn', 'authentication failed', { ...failure });
        },
      }),
      tls: certificates.tls,
      certificates,
      log,
      metrics,
      listenAs: async (server: Listenable, service: string, where: string | number, host: string) => ({
        service,
        address: await listen(server, where, host, () => metrics.connections.inc({ service }), sharePorts),
      }),
      onError: (err, context) => {
        metrics.errors.inc({ service: services.join('+') });
        log.error(err, context);
      },
      activity: options.activity ?? (() => () => undefined),
    };
    // The MDA first: the MTA's queue runner delivers to it as soon as it starts.
    for (const name of ['mda', 'mta', 'access'] as const) {
      if (!services.includes(name)) continue;
      started.push(await (await MODULES[name]()).start(deps));
    }
  } catch (err) {
    await shutdown();
    throw err;
  }
  const listening = started.flatMap((s) => s.listening);
  if (options.logListening !== false)
    for (const l of listening) log.log('info', 'listening', { service: l.service, address: l.address });
  const reloader = certificates!;
  const reload = (why: string, next?: Config) => {
    if (next) {
      log.setLevel?.(next.log_level);
      log.log('debug', 'reloaded settings taken', { services: services.join('+') });
    }
    for (const s of started) s.reload?.(why, next);
    return reloader.reload(why);
  };
  return { listening, store, metrics, reload, stop: shutdown };
}
