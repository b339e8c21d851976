/** What every service module gets from the process that runs it, and what it gives back. */
import type { AuthThrottle } from '@mailwerk/auth';
import type { Bus } from '@mailwerk/bus';
import type { Config } from '@mailwerk/config';
import type { Counters } from '@mailwerk/limits';
import type { MailStore } from '@mailwerk/store';
import type { Listenable, Listening } from '../listen.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { TlsReloader } from '../tls-reload.ts';

export interface ServiceDeps {
  config: Config;
  store: MailStore;
  /** Change events; `busCarriesMda`: the MDA's events reach this bus (same process, supervisor relay or Redis). */
  bus: Bus;
  busCarriesMda: boolean;
  /** Abuse counters, shared by every service of the host (supervisor or Redis). */
  counters: Counters;
  throttle: AuthThrottle;
  tls: { key: string; cert: string };
  /** Where a server registers how it takes a new certificate (tls-reload.ts). */
  certificates: TlsReloader;
  log: Logger;
  onError(err: unknown, context: string): void;
  metrics: Metrics;
  /** Listens (see listen.ts) as the service named `service` in the summary and the metrics. */
  listenAs(server: Listenable, service: string, where: string | number, host: string): Promise<Listening>;
  /** Records work as it starts; the returned function when it ends (the watchdog reports the oldest still running). */
  activity(what: string): () => void;
}

export interface StartedService {
  listening: Listening[];
  /** SIGHUP, `mailwerk reload`: what the service does besides taking new certificates (`config`: read anew). */
  reload?(why: string, config?: Config): void;
  stop(): Promise<void>;
}
