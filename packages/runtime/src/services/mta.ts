/**
 * The MTA: the MX (25), submission (587 STARTTLS, 465 TLS) and the queue
 * runner that delivers to the MDA over LMTP and to other domains' MX hosts.
 */

import { readFileSync, statSync } from 'node:fs';
import type { Config } from '@mailwerk/config';
import { Greylist, InProcessCounters } from '@mailwerk/limits';
import {
  type CachedPolicy,
  createArcSealer,
  createDkimSigner,
  createInboundServer,
  createSubmissionServer,
  memoryPolicyCache,
  OutboundDelivery,
  type PolicyCache,
  QueueRunner,
  type RelayHost,
  RspamdClient,
  remoteRetryPolicy,
  SendLimiter,
} from '@mailwerk/mta';
import type { SmtpServer } from '@mailwerk/smtp';
import { type Expansion, formatReply, type MailStore, type QueueEntry } from '@mailwerk/store';
import { closeServer, type Listening } from '../listen.ts';
import type { ServiceDeps, StartedService } from './types.ts';

/**
 * Other domains' MTA-STS policies, kept in the store too (RFC 8461 §5.1 asks that a cached policy
 * outlive a restart, or an attacker who blocks the fetch after one downgrades the next delivery).
 */
export function storePolicyCache(store: MailStore): PolicyCache {
  const memory = memoryPolicyCache();
  const name = (domain: string) => `mta-sts-policy:${domain}`;
  return {
    async get(domain) {
      const hit = await memory.get(domain);
      if (hit) return hit;
      const item = await store.getTlsItem(name(domain));
      if (!item) return null;
      const entry = JSON.parse(item.cert) as CachedPolicy;
      await memory.put(domain, entry);
      return entry;
    },
    async put(domain, entry) {
      await memory.put(domain, entry);
      await store.putTlsItem({
        name: name(domain),
        cert: JSON.stringify(entry),
        key: '',
        notAfter: new Date(entry.expiresAt),
      });
    },
  };
}

/**
 * The relay host of the configuration, its AUTH password read from its file: owner-only (mode 0600), as
 * every secret here; never sent without TLS.
 */
export function relayHost(r: Config['mta']['relay_host']): RelayHost {
  let auth: RelayHost['auth'];
  if (r.user) {
    if (r.tls === 'none')
      throw new Error(
        'mta.relay_host: AUTH over an unencrypted connection is refused; use tls = "starttls" or "tls"',
      );
    if (!r.password_file) throw new Error('mta.relay_host: user is set, password_file is not');
    const mode = statSync(r.password_file).mode;
    if (mode & 0o077)
      throw new Error(
        `mta.relay_host.password_file ${r.password_file} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
      );
    auth = { user: r.user, pass: readFileSync(r.password_file, 'utf8').split('\n')[0]!.trimEnd() };
  }
  return {
    host: r.host,
    port: r.port,
    tls: r.tls,
    verifyCertificate: r.verify_certificate,
    domains: r.domains.map((d) => d.toLowerCase()),
    ...(auth ? { auth } : {}),
  };
}

export async function start(d: ServiceDeps): Promise<StartedService> {
  const { config, store, log, counters } = d;
  const servers: SmtpServer[] = [];
  const listening: Listening[] = [];
  const isLocalDomain = async (name: string) => (await store.getDomain(name)) !== null;
  const sign = createDkimSigner(store);
  const routesOf = (c: Config) =>
    Object.fromEntries(Object.entries(c.mta.routes).map(([k, v]) => [k.toLowerCase(), v]));
  const outbound = new OutboundDelivery({
    hostname: config.hostname,
    routes: routesOf(config),
    ...(config.mta.relay_host.host ? { relay: relayHost(config.mta.relay_host) } : {}),
    mtaSts: { cache: storePolicyCache(d.store) },
    ...(config.mta.dane_resolver ? { daneResolver: config.mta.dane_resolver } : {}),
  });
  const runner = new QueueRunner({
    store,
    hostname: config.hostname,
    sign,
    ...(config.checks.arc_seal ? { seal: createArcSealer(store, config.hostname) } : {}),
    outbound,
    remoteRetry: remoteRetryPolicy(
      config.mta.retry_first_seconds * 1000,
      config.mta.retry_max_seconds * 1000,
      config.mta.give_up_after_days * 86_400_000,
    ),
    delayWarningMs: config.mta.delay_warning_hours * 3_600_000,
    lmtp: config.mda.lmtp,
    isLocalDomain,
    onError: d.onError,
    // One line per recipient and attempt, as admins know from Postfix's status=sent/deferred/bounced.
    onAttempt: (entry, results) => {
      for (const r of results) {
        const status = r.state === 'delivered' ? 'sent' : r.state === 'pending' ? 'deferred' : 'bounced';
        d.metrics.messages.inc({ event: status === 'sent' ? 'delivered' : status });
        if (r.state === 'delivered')
          d.metrics.deliverySeconds.observe((Date.now() - entry.createdAt.getTime()) / 1000);
        log.log(r.state === 'delivered' ? 'info' : 'warn', 'delivery', {
          id: entry.id,
          from: entry.sender,
          to: r.address,
          status,
          attempt: entry.attempts + 1,
          reply: r.reply ? formatReply(r.reply) : undefined,
        });
      }
    },
  });
  const stop = async () => {
    // The runner first: it closes its pooled LMTP connections, which the MDA would otherwise wait for.
    await runner.stop();
    await Promise.all(servers.map(closeServer));
  };
  try {
    const received = (entry: QueueEntry, how: 'queued' | 'delivered') => {
      d.metrics.messages.inc({ event: 'received' });
      log.log('info', how, {
        id: entry.id,
        from: entry.sender,
        to: entry.recipients.map((r) => r.address),
        size: entry.size,
        ...(entry.meta.authUser ? { user: entry.meta.authUser } : {}),
      });
    };
    const onQueued = (entry: QueueEntry) => {
      received(entry, 'queued');
      // Leased to this runner when queued (the MX's handoff): worked at once; else the runner looks.
      runner.queued(entry);
    };
    // The MX's local mail into the mailboxes before its reply to DATA, the queue only when that cannot be.
    const deliverNow = async (entry: QueueEntry, data: Buffer, expanded: ReadonlyMap<string, Expansion>) => {
      const delivered = await runner.deliverNow(entry, data, expanded);
      if (delivered) received(entry, 'delivered');
      return delivered;
    };
    const onRefused = (client: string, reply: string) => {
      d.metrics.refused.inc();
      log.log('info', 'refused', { client, reply });
    };
    // The queue's size and its oldest entry, read when the metrics are asked for.
    d.metrics.onScrape(async () => {
      const queue = await store.listQueue();
      d.metrics.queueSize.set(queue.length);
      const oldest = Math.min(...queue.map((e) => e.createdAt.getTime()));
      d.metrics.queueOldest.set(queue.length ? (Date.now() - oldest) / 1000 : 0);
    });
    const rspamd = config.rspamd.url
      ? {
          client: new RspamdClient({
            url: config.rspamd.url,
            timeoutMs: config.rspamd.timeout_seconds * 1000,
          }),
          onFailure: config.rspamd.on_failure,
          onVerdict: (action: string) => d.metrics.rspamd.inc({ action }),
        }
      : undefined;
    const smtpLimits = {
      maxMessageSize: config.limits.message_size,
      maxRecipients: config.limits.max_recipients,
      maxConnections: config.limits.max_connections,
      maxConnectionsPerIp: config.limits.max_connections_per_ip,
    };
    // The MX's counts per client address (connections a minute, refused recipients): in this process when
    // it is the host's only MTA process and there is no Redis; else where every MTA process sees them (the
    // supervisor's or Redis). Asking the supervisor cost a message each way over IPC at every connection,
    // the supervisor's main work under load (with the relay of change events, 555 ms of its CPU for 2,000
    // messages before, 346 after); what a restart of the MTA process forgets is a minute of connection
    // counts and a quarter of an hour of refused recipients.
    const mxCounters = config.mta.processes === 1 && !config.redis.url ? new InProcessCounters() : counters;
    const mx = createInboundServer({
      store,
      hostname: config.hostname,
      tls: d.tls,
      ...(config.checks.authentication
        ? { authentication: { hostname: config.hostname, dmarcReject: config.checks.dmarc_reject } }
        : {}),
      ...(rspamd ? { rspamd } : {}),
      counters: mxCounters,
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
      deliverNow,
      handoff: runner,
      onError: d.onError,
      onRefused,
    });
    servers.push(mx);
    listening.push(await d.listenAs(mx, 'SMTP (MX)', String(config.mta.smtp_port), config.mta.listen));
    d.certificates.use((t) => mx.updateSecureContext({ key: t.key, cert: t.cert }));
    const sendLimiter = new SendLimiter(counters);
    for (const [secure, port, service] of [
      [false, config.mta.submission_port, 'Submission (STARTTLS)'],
      [true, config.mta.submissions_port, 'Submission (TLS)'],
    ] as const) {
      const submission = createSubmissionServer({
        store,
        hostname: config.hostname,
        tls: d.tls,
        secure,
        allowPlaintext: config.tls.allow_plaintext_auth,
        throttle: d.throttle,
        sendLimiter,
        receivedHeader: config.mta.received_header,
        sign,
        ...(rspamd && config.rspamd.scan_outbound ? { rspamd } : {}),
        limits: { ...smtpLimits, messagesPerHour: config.mta.send_limit_per_hour },
        onQueued,
        onError: d.onError,
        onRefused,
      });
      servers.push(submission);
      d.certificates.use((t) => submission.updateSecureContext({ key: t.key, cert: t.cert }));
      listening.push(await d.listenAs(submission, service, String(port), config.mta.listen));
    }
    // A client that resets its connection or turns our certificate down (a TLS alert) is its own
    // business: one info line, not an error with a stack.
    const clientTrouble = (err: NodeJS.ErrnoException & { library?: string }) =>
      ['ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(err.code ?? '') ||
      err.library === 'SSL routines' ||
      String(err.code ?? '').startsWith('ERR_SSL_');
    for (const s of servers)
      s.on('error', (err: NodeJS.ErrnoException) =>
        clientTrouble(err)
          ? log.log('info', 'smtp client connection failed', { error: err.message.trim() })
          : log.error(err, 'smtp server'),
      );
    runner.start();
    return {
      listening,
      reload(_why, next) {
        if (!next) return;
        // mta.routes and mta.relay_host (config-reload.ts); a relay whose password file cannot be read
        // now (it must be readable by the services' user) leaves the routing as it was.
        try {
          const relay = next.mta.relay_host.host ? relayHost(next.mta.relay_host) : undefined;
          outbound.reroute(routesOf(next), relay);
        } catch (err) {
          log.log('error', 'mta.routes and mta.relay_host not reloaded; the ones in use stay', {
            error: (err as Error).message,
          });
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
