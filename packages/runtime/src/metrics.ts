/**
 * What the services count, for Prometheus (prom-client). Each service
 * process keeps its own registry; the supervisor asks every process for its
 * metrics over IPC and serves them added together on the admin port
 * (admin.ts), with its own (restarts, which service is up).
 *
 * The protocol packages know nothing of this: the runtime feeds it from the
 * hooks they already have (connections on every listening server, onQueued,
 * onAttempt, onRefused, the throttle's onFailure, onCommand, onError).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds: from a millisecond to a day (a delivery retried for hours lands in the last buckets). */
const DELIVERY_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21_600, 86_400];
const COMMAND_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

export class Metrics {
  readonly registry = new Registry();
  readonly connections = new Counter({
    name: 'mailwerk_connections_total',
    help: 'Connections accepted, by service (as listed by mailwerk start).',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });
  readonly messages = new Counter({
    name: 'mailwerk_messages_total',
    help: 'Messages by event: received (queued, per message), delivered, deferred, bounced (per recipient and attempt).',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: 'mailwerk_smtp_refused_total',
    help: 'SMTP commands refused by the MX and submission (any 4xx/5xx reply given to a client).',
    registers: [this.registry],
  });
  readonly deliverySeconds = new Histogram({
    name: 'mailwerk_delivery_seconds',
    help: 'Time from a message being queued to its delivery to one recipient (local or remote).',
    buckets: DELIVERY_BUCKETS,
    registers: [this.registry],
  });
  readonly commandSeconds = new Histogram({
    name: 'mailwerk_command_seconds',
    help: 'IMAP and POP3 commands by protocol, command name and outcome (OK, NO, BAD), with their time.',
    labelNames: ['protocol', 'command', 'outcome'] as const,
    buckets: COMMAND_BUCKETS,
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'mailwerk_auth_failures_total',
    help: 'Refused sign-ins by service and reason (invalid, blocked).',
    labelNames: ['service', 'reason'] as const,
    registers: [this.registry],
  });
  readonly rspamd = new Counter({
    name: 'mailwerk_rspamd_verdicts_total',
    help: "rspamd's actions on scanned mail (no action, add header, reject, …; failure when it did not answer).",
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'mailwerk_errors_total',
    help: 'Errors a service logged as its own fault (store errors among them), by service.',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });
  readonly queueSize = new Gauge({
    name: 'mailwerk_queue_messages',
    help: 'Messages in the queue (waiting for delivery or a retry).',
    registers: [this.registry],
  });
  readonly queueOldest = new Gauge({
    name: 'mailwerk_queue_oldest_seconds',
    help: 'Age of the oldest message in the queue (0 when empty).',
    registers: [this.registry],
  });

  /** Metrics gathered right before a scrape (the queue's size, read from the store). */
  private readonly collectors: Array<() => Promise<void>> = [];

  onScrape(collect: () => Promise<void>): void {
    this.collectors.push(collect);
  }

  /** This process's metrics, as prom-client's aggregator takes them. */
  async snapshot(): Promise<unknown[]> {
    await Promise.all(this.collectors.map((c) => c().catch(() => undefined)));
    return this.registry.getMetricsAsJSON();
  }
}
