/** Mailbox access: IMAP (143, 993), POP3 (110, 995) and, when switched on, autoconfig/autodiscover over HTTP(S). */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as NetServer } from 'node:net';
import { autoconfigHandler } from '@mailwerk/autoconfig';
import { ImapService } from '@mailwerk/imap';
import { Pop3Service } from '@mailwerk/pop3';
import { closeServer, type Listening } from '../listen.ts';
import type { ServiceDeps, StartedService } from './types.ts';

export async function start(d: ServiceDeps): Promise<StartedService> {
  const { config, store, log } = d;
  const listening: Listening[] = [];
  const webServers: NetServer[] = [];
  const common = {
    store,
    bus: d.bus,
    hostname: config.hostname,
    tls: d.tls,
    allowPlaintext: config.tls.allow_plaintext_auth,
    throttle: d.throttle,
    maxConnections: config.limits.max_connections,
    maxConnectionsPerIp: config.limits.max_connections_per_ip,
    onError: d.onError,
  };
  const imap = new ImapService({
    ...common,
    maxMessageSize: config.limits.message_size,
    // The journal is read on this interval too, whatever the bus says: where the bus does not carry the
    // MDA's events it is how new mail is found; where it does, the safety net for an event lost on the way.
    pollMs: d.busCarriesMda ? 10_000 : 2000,
    log: (level, message, fields) => log.log(level, message, fields),
    activity: d.activity,
    onCommand: (command, seconds, outcome) =>
      d.metrics.commandSeconds.observe({ protocol: 'imap', command, outcome }, seconds),
  });
  const pop3 = new Pop3Service({
    ...common,
    counters: d.counters,
    onEvent: (event, fields) => log.log('info', event, fields),
    onCommand: (command, seconds, outcome) =>
      d.metrics.commandSeconds.observe({ protocol: 'pop3', command, outcome }, seconds),
  });
  d.certificates.use((t) => {
    imap.setTls(t);
    pop3.setTls(t);
  });
  const stop = async () => {
    await Promise.all([imap.close(), pop3.close(), ...webServers.map(closeServer)]);
  };
  try {
    const { listen: host, imap_port, imaps_port, pop3_port, pop3s_port } = config.access;
    listening.push(await d.listenAs(imap.server(false), 'IMAP (STARTTLS)', imap_port, host));
    listening.push(await d.listenAs(imap.server(true), 'IMAP (TLS)', imaps_port, host));
    listening.push(await d.listenAs(pop3.server(false), 'POP3 (STLS)', pop3_port, host));
    listening.push(await d.listenAs(pop3.server(true), 'POP3 (TLS)', pop3s_port, host));
    if (config.access.autoconfig) {
      const handler = autoconfigHandler(store, {
        hostname: config.hostname,
        imaps: config.access.imaps_port,
        imap: config.access.imap_port,
        pop3s: config.access.pop3s_port,
        pop3: config.access.pop3_port,
        submissions: config.mta.submissions_port,
        submission: config.mta.submission_port,
        mtaStsMode: config.mta.mta_sts_mode,
      });
      const serve = (req: IncomingMessage, res: ServerResponse) => void handler(req, res);
      const plain = createHttpServer(serve);
      const secure = createHttpsServer({ key: d.tls.key, cert: d.tls.cert }, serve);
      d.certificates.use((t) => secure.setSecureContext({ key: t.key, cert: t.cert }));
      webServers.push(plain, secure);
      listening.push(await d.listenAs(plain, 'Autoconfig (HTTP)', config.access.autoconfig_http_port, host));
      listening.push(
        await d.listenAs(secure, 'Autoconfig (HTTPS)', config.access.autoconfig_https_port, host),
      );
    }
    return { listening, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
