/** Mailbox access: IMAP (143, 993), POP3 (110, 995) and, when switched on, autoconfig/autodiscover over HTTP(S). */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as NetServer } from 'node:net';
import { autoconfigHandler } from '@mailwerk/autoconfig';
import { ImapService } from '@mailwerk/imap';
import { Pop3Service } from '@mailwerk/pop3';
import { closeServer, type Listening, listen } from '../listen.ts';
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
  });
  const pop3 = new Pop3Service({
    ...common,
    counters: d.counters,
    onEvent: (event, fields) => log.log('info', event, fields),
  });
  const stop = async () => {
    await Promise.all([imap.close(), pop3.close(), ...webServers.map(closeServer)]);
  };
  try {
    const { listen: host, imap_port, imaps_port, pop3_port, pop3s_port } = config.access;
    listening.push({
      service: 'IMAP (STARTTLS)',
      address: await listen(imap.server(false), imap_port, host),
    });
    listening.push({ service: 'IMAP (TLS)', address: await listen(imap.server(true), imaps_port, host) });
    listening.push({ service: 'POP3 (STLS)', address: await listen(pop3.server(false), pop3_port, host) });
    listening.push({ service: 'POP3 (TLS)', address: await listen(pop3.server(true), pop3s_port, host) });
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
      const secure = createHttpsServer({ key: d.tls.key, cert: d.tls.cert }, serve);
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
    return { listening, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
