/**
 * `mailwerk start` on one host: each service in a process of its own (the
 * MTA with its queue runner, the MDA, the access services), so that a crash
 * or a stall in one never stops another, and both cores work.
 *
 * Invariants:
 * - A child that exits is started again, after 1 s, doubling up to 30 s
 *   while it keeps failing (back to 1 s once it has run for a minute); each
 *   exit is a log line with its code or signal.
 * - A child that has not said it is alive for `watchdogMs` is killed and
 *   started again, with a log line naming its oldest running work.
 * - stop() ends every child within `stopTimeoutMs`: asked first, then
 *   killed, even one whose event loop is stuck.
 * - The supervisor relays change events between the children and keeps the
 *   abuse counters (ipc.ts); it opens no store and loads no service code.
 * - The MTA may run in mta.processes processes, each restarted on its own;
 *   they listen on the same ports (SO_REUSEPORT) and share the queue by
 *   leases, as MTA processes on several hosts do.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Config } from '@mailwerk/config';
import { InProcessCounters } from '@mailwerk/limits';
import { answerCounter, type ChildMessage, type ParentMessage } from './ipc.ts';
import type { Listening } from './listen.ts';
import type { Logger } from './log.ts';
import type { ServiceName } from './services.ts';

export interface SupervisorOptions {
  configPath: string;
  /** The configuration as read from configPath, handed to every child. */
  config: Config;
  services: readonly ServiceName[];
  log: Logger;
  /** The child entry (child.ts, or its built JavaScript) and the Node options it runs with. */
  entry: string;
  execArgv: string[];
  watchdogMs: number;
  stopTimeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

interface Child {
  name: ServiceName;
  /** 1 to mta.processes for the MTA; 1 for the others. */
  instance: number;
  proc: ChildProcess | null;
  ready: boolean;
  lastAlive: number;
  activity: string | null;
  activitySince: number;
  startedAt: number;
  backoffMs: number;
  restartTimer: NodeJS.Timeout | null;
  exited: Promise<void>;
}

export interface ServiceStatus {
  service: ServiceName;
  /** Which of the service's processes, where it runs several (mta.processes). */
  instance?: number;
  state: 'running' | 'starting' | 'restarting';
  pid: number | null;
  /** When its current process started (ISO 8601). */
  since: string | null;
  restarts: number;
  listening: Listening[];
}

export class StartError extends Error {
  readonly code: string | undefined;
  readonly address: string | undefined;
  constructor(service: string, m: { message: string; code?: string; address?: string }) {
    super(`${service}: ${m.message}`);
    this.code = m.code;
    this.address = m.address;
  }
}

/** The services that subscribe to change events. */
const LISTENERS: ReadonlySet<ServiceName> = new Set(['access']);

/** A child's key: the service name, and `name#n` for the n-th process of a service that runs several. */
const childKey = (name: ServiceName, instance: number) => (instance === 1 ? name : `${name}#${instance}`);

const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 60_000;

export class Supervisor {
  private readonly opts: SupervisorOptions;
  /** By childKey. */
  private readonly children = new Map<string, Child>();
  private readonly counters = new InProcessCounters();
  /** How many processes run the MTA (instances()). */
  private readonly mtaProcesses: number;
  private stopping = false;
  private watchdog: NodeJS.Timeout | null = null;
  /** Restarts so far, by service (for tests and the status). */
  readonly restarts = new Map<ServiceName, number>();
  /** Where each service listens, as its process last said. */
  readonly listening = new Map<ServiceName, Listening[]>();
  private readonly metricsAnswers = new Map<number, (metrics: unknown[]) => void>();
  private nextMetrics = 0;

  constructor(options: SupervisorOptions) {
    this.opts = options;
    // Decided once, at start: a reloaded configuration changes it at the next start (as for ports).
    const { mta } = options.config;
    const anyPort = [mta.smtp_port, mta.submission_port, mta.submissions_port].some((p) => Number(p) === 0);
    this.mtaProcesses = anyPort ? 1 : mta.processes;
  }

  /**
   * How many processes run a service: mta.processes for the MTA (they share its ports), one for the
   * others. A port of 0 (any free port) would give each process another one: then one.
   */
  private instances(name: ServiceName): number {
    return name === 'mta' ? this.mtaProcesses : 1;
  }

  /** Starts every service; resolves once all listen, or stops them all and rejects with the first failure. */
  async start(): Promise<Listening[]> {
    const first = this.opts.services.flatMap((name) =>
      Array.from({ length: this.instances(name) }, (_, i) => this.spawn(name, i + 1)),
    );
    try {
      await Promise.all(first);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.watchdog = setInterval(() => this.check(), 1000);
    this.watchdog.unref();
    const all = this.opts.services.flatMap((s) => this.listening.get(s) ?? []);
    for (const l of all) this.opts.log.log('info', 'listening', { service: l.service, address: l.address });
    return all;
  }

  /** The process id of a service (for tests that kill one). */
  pid(name: ServiceName): number | undefined {
    return this.children.get(name)?.proc?.pid;
  }

  private spawn(name: ServiceName, instance: number): Promise<void> {
    const key = childKey(name, instance);
    const existing = this.children.get(key);
    const child: Child = existing ?? {
      name,
      instance,
      proc: null,
      ready: false,
      lastAlive: Date.now(),
      activity: null,
      activitySince: 0,
      startedAt: Date.now(),
      backoffMs: FIRST_BACKOFF_MS,
      restartTimer: null,
      exited: Promise.resolve(),
    };
    this.children.set(key, child);
    child.ready = false;
    child.startedAt = Date.now();
    child.lastAlive = Date.now();
    const shared = this.instances(name) > 1;
    const proc = fork(this.opts.entry, [this.opts.configPath, name, ...(shared ? ['shared'] : [])], {
      execArgv: this.opts.execArgv,
      env: this.opts.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.proc = proc;
    proc.send({ t: 'config', config: this.opts.config } satisfies ParentMessage);
    child.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      proc.on('message', (m: ChildMessage) => {
        switch (m.t) {
          case 'ready':
            child.ready = true;
            this.listening.set(name, m.listening);
            if (!settled) {
              settled = true;
              resolve();
            }
            break;
          case 'failed':
            if (!settled) {
              settled = true;
              reject(new StartError(name, m));
            }
            break;
          case 'alive':
            child.lastAlive = Date.now();
            child.activity = m.activity;
            child.activitySince = m.since;
            break;
          case 'bus':
            // To the services whose sessions listen (IMAP IDLE and NOTIFY, in access): the MTA has no
            // subscriber, and reading every stored message's event cost it a read a message.
            for (const other of this.children.values())
              if (other !== child && other.ready && LISTENERS.has(other.name))
                this.tell(other, { t: 'bus', events: m.events });
            break;
          case 'counter':
            void answerCounter(this.counters, m).then((r) => this.tell(child, r));
            break;
          case 'metrics':
            this.metricsAnswers.get(m.id)?.(m.metrics);
            break;
        }
      });
      proc.once('exit', (code, signal) => {
        if (child.proc === proc) child.proc = null;
        child.ready = false;
        if (!settled) {
          settled = true;
          reject(new StartError(name, { message: `exited during start (${signal ?? `code ${code}`})` }));
          return;
        }
        if (this.stopping) return;
        this.restart(child, code, signal);
      });
    });
  }

  private tell(child: Child, m: ParentMessage): void {
    const p = child.proc;
    if (p?.connected) p.send(m, (err) => err && undefined);
  }

  private restart(child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    const ranFor = Date.now() - child.startedAt;
    if (ranFor > HEALTHY_AFTER_MS) child.backoffMs = FIRST_BACKOFF_MS;
    const wait = child.backoffMs;
    child.backoffMs = Math.min(MAX_BACKOFF_MS, child.backoffMs * 2);
    this.restarts.set(child.name, (this.restarts.get(child.name) ?? 0) + 1);
    this.opts.log.log('error', 'service exited; starting it again', {
      service: child.name,
      ...(signal ? { signal } : { code }),
      ranSeconds: Math.round(ranFor / 1000),
      restartInMs: wait,
    });
    child.restartTimer = setTimeout(() => {
      child.restartTimer = null;
      if (this.stopping) return;
      this.spawn(child.name, child.instance).catch((err) =>
        // It exits after saying why; the exit schedules the next attempt.
        this.opts.log.log('error', 'service did not start', {
          service: child.name,
          error: String(err.message ?? err),
        }),
      );
    }, wait);
  }

  /**
   * Asks every running service to read its certificate files again and, given a configuration read
   * anew, to take its reloadable settings (config-reload.ts); services restarted later start with it.
   */
  reload(why: string, config?: Config): void {
    if (config) this.opts.config = config;
    for (const c of this.children.values())
      if (c.proc && c.ready) this.tell(c, { t: 'reload', why, ...(config ? { config } : {}) });
  }

  /** Each service's state, for `mailwerk status` and /readyz: a line per process. */
  status(): ServiceStatus[] {
    return this.opts.services.flatMap((name) =>
      Array.from({ length: this.instances(name) }, (_, i) => {
        const c = this.children.get(childKey(name, i + 1));
        const up = Boolean(c?.proc && c.ready);
        return {
          service: name,
          ...(this.instances(name) > 1 ? { instance: i + 1 } : {}),
          state: up ? 'running' : c?.restartTimer ? 'restarting' : 'starting',
          pid: c?.proc?.pid ?? null,
          since: c ? new Date(c.startedAt).toISOString() : null,
          restarts: this.restarts.get(name) ?? 0,
          listening: this.listening.get(name) ?? [],
        } satisfies ServiceStatus;
      }),
    );
  }

  /**
   * Every running service's metrics (prom-client's JSON form), asked over IPC; a process that does not
   * answer within `timeoutMs` (stalled, restarting) is left out of this scrape.
   */
  async childMetrics(timeoutMs = 2000): Promise<unknown[][]> {
    const asks = [...this.children.values()]
      .filter((c) => c.proc && c.ready)
      .map(
        (c) =>
          new Promise<unknown[] | null>((resolve) => {
            const id = ++this.nextMetrics;
            const timer = setTimeout(() => {
              this.metricsAnswers.delete(id);
              resolve(null);
            }, timeoutMs);
            this.metricsAnswers.set(id, (metrics) => {
              clearTimeout(timer);
              this.metricsAnswers.delete(id);
              resolve(metrics);
            });
            this.tell(c, { t: 'metrics', id });
          }),
      );
    return (await Promise.all(asks)).filter((m): m is unknown[] => m !== null);
  }

  /** The watchdog: a child whose event loop has not turned for watchdogMs is killed (and so restarted). */
  private check(): void {
    const now = Date.now();
    for (const c of this.children.values()) {
      if (!c.proc || !c.ready || now - c.lastAlive <= this.opts.watchdogMs) continue;
      this.opts.log.log('error', 'service stalled; killing it', {
        service: c.name,
        silentSeconds: Math.round((now - c.lastAlive) / 1000),
        ...(c.activity
          ? { activity: c.activity, activitySeconds: Math.round((now - c.activitySince) / 1000) }
          : { activity: 'none reported' }),
      });
      c.ready = false;
      c.proc.kill('SIGKILL');
    }
  }

  /** Stops every child: asked, then killed after stopTimeoutMs. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    const all = [...this.children.values()];
    for (const c of all) {
      if (c.restartTimer) clearTimeout(c.restartTimer);
      if (c.proc) {
        this.tell(c, { t: 'stop' });
        c.proc.kill('SIGTERM');
      }
    }
    const deadline = setTimeout(() => {
      for (const c of all) {
        if (!c.proc) continue;
        this.opts.log.log('warn', 'service did not stop in time; killing it', { service: c.name });
        c.proc.kill('SIGKILL');
      }
    }, this.opts.stopTimeoutMs);
    await Promise.all(all.map((c) => c.exited));
    clearTimeout(deadline);
    await this.counters.close();
  }
}
