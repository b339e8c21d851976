/**
 * Starts the services a process runs: every one of them in `mailwerk start`
 * (the embedded default), or one per process in the shared setup. The MTA
 * always reaches the MDA over LMTP, even inside one process, so either side
 * can be replaced by another product.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type Server as NetServer } from 'node:net';
import { AuthThrottle } from '@mailwerk/auth';
import { autoconfigHandler } from '@mailwerk/autoconfig';
import { type Bus, InProcessBus, RedisBus } from '@mailwerk/bus';
import type { Config } from '@mailwerk/config';
import { ImapService } from '@mailwerk/imap';
import { Greylist, openCounters } from '@mailwerk/limits';
import { createLmtpServer } from '@mailwerk/mda';
import {
  createDkimSigner,
  createInboundServer,
  createSubmissionServer,
  OutboundDelivery,
  QueueRunner,
  RspamdClient,
  remoteRetryPolicy,
  SendLimiter,
} from '@mailwerk/mta';
import { Pop3Service } from '@mailwerk/pop3';
import type { MailStore, QueueEntry } from '@mailwerk/store';
import { ensureCertificate } from '@mailwerk/tls';
import type { SMTPServer } from 'smtp-server';
import { createLogger, type Logger } from './log.ts';
import { openStore } from './store.ts';

/** Journal entries kept per mailbox behind its newest change (a session further behind re-selects). */
const JOURNAL_KEEP = 100_000;

export type ServiceName = 'mta' | 'mda' | 'access';
export const SERVICES: readonly ServiceName[] = ['mta', 'mda', 'access'];

export interface Listening {
  service: string;
  address: string;
}

export interface Running {
  listening: Listening[];
  store: MailStore;
  stop(): Promise<void>;
}

/** A socket file left by a process that died is in the way; one that still answers belongs to a running MDA. */
function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      // Reported like a taken port: the admin sees "cannot listen on unix:…: in use by another program".
      reject(
        Object.assign(new Error(`${path} is in use by a running process`), {
          code: 'EADDRINUSE',
          address: `unix:${path}`,
        }),
      );
    });
    probe.once('error', () => {
      unlinkSync(path);
      resolve();
    });
  });
}

/** What can listen: smtp-server and a plain net/http server both have this shape. */
interface Listenable {
  listen(...args: unknown[]): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
  address?(): ReturnType<NetServer['address']>;
  server?: { address(): ReturnType<NetServer['address']> };
}

/** Listens on "unix:/path", "host:port" or a port (on `host`); resolves with the address taken. */
async function listen(server: Listenable, where: string | number, host: string): Promise<string> {
  const spec = String(where);
  if (spec.startsWith('unix:')) await removeStaleSocket(spec.slice(5));
  return new Promise((resolve, reject) => {
    // The servers re-emit their socket's errors; unhandled, an 'error' event ends the process.
    server.once('error', reject);
    const done = (address: string) => {
      server.removeListener('error', reject);
      resolve(address);
    };
    if (spec.startsWith('unix:')) {
      const path = spec.slice(5);
      server.listen(path, () => done(`unix:${path}`));
      return;
    }
    const m = /^(?:\[?([^\]]*)\]?:)?(\d+)$/.exec(spec);
    if (!m) return reject(new Error(`cannot listen on "${spec}"`));
    server.listen(Number(m[2]), m[1] || host, () => {
      const a = server.server ? server.server.address() : server.address?.();
      done(typeof a === 'object' && a ? `${a.address}:${a.port}` : String(a));
    });
  });
}

export async function startServices(
  config: Config,
  services: readonly ServiceName[] = SERVICES,
  logger?: Logger,
): Promise<Running> {
  const log = logger ?? createLogger(config.log_level, 'mailwerk');
  const store = openStore(config);
  // Change events: Redis pub/sub when several processes share the store, else in this process.
  const bus: Bus = config.redis.url ? new RedisBus(config.redis.url) : new InProcessBus();
  const tls = await ensureCertificate({
    certPath: config.tls.cert,
    keyPath: config.tls.key,
    hostname: config.hostname,
  });
  const servers: SMTPServer[] = [];
  const listening: Listening[] = [];
  let runner: QueueRunner | null = null;
  let maintenance: NodeJS.Timeout | null = null;
  let imap: ImapService | null = null;
  let pop3: Pop3Service | null = null;
  const webServers: NetServer[] = [];
  /** Stops what has been started, on a failed start as on stop(). */
  const shutdown = async () => {
    // The runner first: it closes its pooled LMTP connections, which the MDA would otherwise wait for.
    if (maintenance) clearInterval(maintenance);
    await runner?.stop();
    await Promise.all([
      ...[...servers, ...webServers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      imap?.close(),
      pop3?.close(),
    ]);
    await bus.close();
    await counters.close();
    await store.close();
  };
  const onError = (err: unknown, context: string) => log.error(err, context);
  // Abuse counters, in this process or in Redis so that several processes share them; one count of failed
  // sign-ins for submission, IMAP and POP3, so a guesser cannot switch protocols to start over.
  const counters = openCounters(config.redis.url);
  const throttle = new AuthThrottle({ counters });
  try {
    if (services.includes('mda')) {
      const lmtp = createLmtpServer({
        store,
        bus,
        hostname: config.hostname,
        maxMessageSize: config.limits.message_size,
        onError,
      });
      servers.push(lmtp);
      // The change journal serves live updates; entries far behind every mailbox's present are dropped hourly.
      maintenance = setInterval(() => {
        store
          .pruneJournal(JOURNAL_KEEP)
          .then((n) => n && log.log('info', 'journal pruned', { entries: n }))
          .catch((err) => onError(err, 'journal pruning'));
      }, 3_600_000);
      maintenance.unref();
      listening.push({ service: 'LMTP (MDA)', address: await listen(lmtp, config.mda.lmtp, '127.0.0.1') });
    }
    if (services.includes('mta')) {
      const isLocalDomain = async (d: string) => (await store.getDomain(d)) !== null;
      runner = new QueueRunner({
        store,
        hostname: config.hostname,
        outbound: new OutboundDelivery({ hostname: config.hostname }),
        remoteRetry: remoteRetryPolicy(
          config.mta.retry_first_seconds * 1000,
          config.mta.retry_max_seconds * 1000,
          config.mta.give_up_after_days * 86_400_000,
        ),
        delayWarningMs: config.mta.delay_warning_hours * 3_600_000,
        lmtp: config.mda.lmtp,
        isLocalDomain,
        onError,
        // One line per recipient and attempt, as admins know from Postfix's status=sent/deferred/bounced.
        onAttempt: (entry, results) => {
          for (const r of results) {
            const status = r.state === 'delivered' ? 'sent' : r.state === 'pending' ? 'deferred' : 'bounced';
            log.log(r.state === 'delivered' ? 'info' : 'warn', 'delivery', {
              id: entry.id,
              from: entry.sender,
              to: r.address,
              status,
              attempt: entry.attempts + 1,
              reply: r.reply,
            });
          }
        },
      });
      const queue = runner;
      const onQueued = (entry: QueueEntry) => {
        log.log('info', 'queued', {
          id: entry.id,
          from: entry.sender,
          to: entry.recipients.map((r) => r.address),
          size: entry.size,
          ...(entry.meta.authUser ? { user: entry.meta.authUser } : {}),
        });
        queue.wake();
      };
      const onRefused = (client: string, reply: string) => log.log('info', 'refused', { client, reply });
      const rspamd = config.rspamd.url
        ? {
            client: new RspamdClient({
              url: config.rspamd.url,
              timeoutMs: config.rspamd.timeout_seconds * 1000,
            }),
            onFailure: config.rspamd.on_failure,
          }
        : undefined;
      const smtpLimits = {
        maxMessageSize: config.limits.message_size,
        maxRecipients: config.limits.max_recipients,
        maxConnections: config.limits.max_connections,
        maxConnectionsPerIp: config.limits.max_connections_per_ip,
      };
      const mx = createInboundServer({
        store,
        hostname: config.hostname,
        tls,
        ...(config.checks.authentication
          ? { authentication: { hostname: config.hostname, dmarcReject: config.checks.dmarc_reject } }
          : {}),
        ...(rspamd ? { rspamd } : {}),
        counters,
        ...(config.mta.greylisting
          ? { greylist: new Greylist(counters, { delayMs: config.mta.greylist_delay_seconds * 1000 }) }
          : {}),
        limits: {
          ...smtpLimits,
          connectionsPerMinute: config.limits.connections_per_minute,
          failedRecipientsPerIp: config.limits.failed_recipients_per_ip,
          commandTimeoutMs: config.limits.command_timeout_seconds * 1000,
          minDataRate: config.limits.min_data_rate,
          greetingDelayMs: config.mta.greeting_delay_ms,
        },
        onQueued,
        onError,
        onRefused,
      });
      servers.push(mx);
      listening.push({
        service: 'SMTP (MX)',
        address: await listen(mx, String(config.mta.smtp_port), config.mta.listen),
      });
      const sendLimiter = new SendLimiter(counters);
      for (const [secure, port, service] of [
        [false, config.mta.submission_port, 'Submission (STARTTLS)'],
        [true, config.mta.submissions_port, 'Submission (TLS)'],
      ] as const) {
        const submission = createSubmissionServer({
          store,
          hostname: config.hostname,
          tls,
          secure,
          allowPlaintext: config.tls.allow_plaintext_auth,
          throttle,
          sendLimiter,
          receivedHeader: config.mta.received_header,
          sign: createDkimSigner(store),
          ...(rspamd && config.rspamd.scan_outbound ? { rspamd } : {}),
          limits: { ...smtpLimits, messagesPerHour: config.mta.send_limit_per_hour },
          onQueued,
          onError,
          onRefused,
        });
        servers.push(submission);
        listening.push({ service, address: await listen(submission, String(port), config.mta.listen) });
      }
      runner.start();
    }
    if (services.includes('access')) {
      const common = {
        store,
        bus,
        hostname: config.hostname,
        tls,
        allowPlaintext: config.tls.allow_plaintext_auth,
        throttle,
        maxConnections: config.limits.max_connections,
        maxConnectionsPerIp: config.limits.max_connections_per_ip,
        onError,
      };
      imap = new ImapService({
        ...common,
        maxMessageSize: config.limits.message_size,
        // The journal is read on this interval too, whatever the bus says: without a bus shared with the
        // MDA it is how new mail is found; with one, the safety net for an event lost on the way.
        pollMs: config.redis.url || services.includes('mda') ? 10_000 : 2000,
        log: (level, message, fields) => log.log(level, message, fields),
      });
      const { listen: host, imap_port, imaps_port } = config.access;
      listening.push({
        service: 'IMAP (STARTTLS)',
        address: await listen(imap.server(false), imap_port, host),
      });
      listening.push({
        service: 'IMAP (TLS)',
        address: await listen(imap.server(true), imaps_port, host),
      });
      pop3 = new Pop3Service({
        ...common,
        counters,
        onEvent: (event, fields) => log.log('info', event, fields),
      });
      const { pop3_port, pop3s_port } = config.access;
      listening.push({
        service: 'POP3 (STLS)',
        address: await listen(pop3.server(false), pop3_port, host),
      });
      listening.push({
        service: 'POP3 (TLS)',
        address: await listen(pop3.server(true), pop3s_port, host),
      });
      if (config.access.autoconfig) {
        const handler = autoconfigHandler(store, {
          hostname: config.hostname,
          imaps: config.access.imaps_port,
          imap: config.access.imap_port,
          pop3s: config.access.pop3s_port,
          pop3: config.access.pop3_port,
          submissions: config.mta.submissions_port,
          submission: config.mta.submission_port,
        });
        const serve = (req: IncomingMessage, res: ServerResponse) => void handler(req, res);
        const plain = createHttpServer(serve);
        const secure = createHttpsServer({ key: tls.key, cert: tls.cert }, serve);
        webServers.push(plain, secure);
        listening.push({
          service: 'Autoconfig (HTTP)',
          address: await listen(plain, config.access.autoconfig_http_port, host),
        });
        listening.push({
          service: 'Autoconfig (HTTPS)',
          address: await listen(secure, config.access.autoconfig_https_port, host),
        });
      }
    }
  } catch (err) {
    await shutdown();
    throw err;
  }
  for (const s of servers) s.on('error', (err) => log.error(err, 'server'));
  for (const l of listening) log.log('info', 'listening', { service: l.service, address: l.address });
  return {
    listening,
    store,
    stop: shutdown,
  };
}
