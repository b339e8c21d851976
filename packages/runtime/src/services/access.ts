/** Mailbox access: IMAP (143, 993), POP3 (110, 995) and, when switched on, autoconfig/autodiscover over HTTP(S). */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createSecureContext, TLSSocket } from 'node:tls';
import { autoconfigHandler } from '@mailwerk/autoconfig';
import { ImapService } from '@mailwerk/imap';
import { ManageSieveService } from '@mailwerk/managesieve';
import { Pop3Service } from '@mailwerk/pop3';
import type { MailStore } from '@mailwerk/store';
import { MAX_CLIENT_HELLO, readClientHello } from '@mailwerk/tls';
import { AcmeManager, alpnItem, http01Item, loadAcmeClient } from '../acme.ts';
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
  const sieve = new ManageSieveService(common);
  d.certificates.use((t) => {
    imap.setTls(t);
    pop3.setTls(t);
    sieve.setTls(t);
  });
  let acme: AcmeManager | null = null;
  const stop = async () => {
    acme?.stop();
    await Promise.all([imap.close(), pop3.close(), sieve.close(), ...webServers.map(closeServer)]);
  };
  try {
    const { listen: host, imap_port, imaps_port, pop3_port, pop3s_port } = config.access;
    listening.push(await d.listenAs(imap.server(false), 'IMAP (STARTTLS)', imap_port, host));
    listening.push(await d.listenAs(imap.server(true), 'IMAP (TLS)', imaps_port, host));
    listening.push(await d.listenAs(pop3.server(false), 'POP3 (STLS)', pop3_port, host));
    listening.push(await d.listenAs(pop3.server(true), 'POP3 (TLS)', pop3s_port, host));
    listening.push(await d.listenAs(sieve.server(), 'ManageSieve', config.access.managesieve_port, host));
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
      const serve = (req: IncomingMessage, res: ServerResponse) => {
        // ACME HTTP-01 (RFC 8555 §8.3): the key authorization for the token, while an order is validated.
        const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/.exec(req.url ?? '')?.[1];
        if (token && config.tls.acme.enabled) void answerHttp01(store, token, res);
        else void handler(req, res);
      };
      const plain = createHttpServer(serve);
      const secure = createHttpsServer({ key: d.tls.key, cert: d.tls.cert }, serve);
      d.certificates.use((t) => secure.setSecureContext({ key: t.key, cert: t.cert }));
      // In front of the HTTPS server: a connection whose ClientHello offers acme-tls/1 is an ACME
      // TLS-ALPN-01 validation (RFC 8737) and gets the challenge's certificate; every other one goes on.
      const front = createNetServer((socket) => frontDoor(socket, store, secure));
      webServers.push(plain, front);
      const httpPort = config.access.autoconfig_http_port;
      const http = await d
        .listenAs(plain, 'Autoconfig (HTTP)', httpPort, host)
        .catch((err: NodeJS.ErrnoException) => {
          // Port 80 often belongs to a web server already. With ACME on and not bound to HTTP-01, that is no
          // reason to stay down: certificates come through TLS-ALPN-01 on the HTTPS port (RFC 8737 §1).
          const taken = err.code === 'EADDRINUSE' || err.code === 'EACCES';
          if (!taken || !config.tls.acme.enabled || config.tls.acme.challenge === 'http-01') throw err;
          log.log(
            'warn',
            'the set-up HTTP port is not free: ACME validates through TLS-ALPN-01 on the HTTPS port',
            {
              port: httpPort,
              error: err.code,
            },
          );
          return null;
        });
      if (http) listening.push(http);
      listening.push(
        await d.listenAs(front, 'Autoconfig (HTTPS)', config.access.autoconfig_https_port, host),
      );
      if (config.tls.acme.enabled) {
        await loadAcmeClient();
        acme = new AcmeManager({
          config,
          store,
          log,
          onCertificate: () => void d.certificates.refresh('a new certificate was issued'),
          httpListening: http !== null,
        });
        acme.start();
      }
    }
    return {
      listening,
      reload: (why) => void acme?.check(why),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function answerHttp01(store: MailStore, token: string, res: ServerResponse): Promise<void> {
  const item = await store.getTlsItem(http01Item(token)).catch(() => null);
  if (!item) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no such challenge\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(item.cert);
}

/** Reads the first record of a connection to the HTTPS port and sends it the right way (see above). */
function frontDoor(socket: Socket, store: MailStore, https: NetServer): void {
  const chunks: Buffer[] = [];
  let size = 0;
  socket.setTimeout(10_000, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    const data = Buffer.concat(chunks, size);
    // A handshake record not all here yet: wait for the rest of it (at most one record).
    const want = data.length >= 5 && data[0] === 22 ? 5 + data.readUInt16BE(3) : 0;
    if (size < want && size < MAX_CLIENT_HELLO) return;
    socket.off('data', onData);
    socket.pause();
    socket.setTimeout(0);
    socket.unshift(data);
    const hello = readClientHello(data);
    if (hello?.serverName && hello.alpn.includes('acme-tls/1'))
      void answerTlsAlpn01(socket, store, hello.serverName);
    else https.emit('connection', socket);
  };
  socket.on('data', onData);
}

async function answerTlsAlpn01(socket: Socket, store: MailStore, name: string): Promise<void> {
  const item = await store.getTlsItem(alpnItem(name)).catch(() => null);
  if (!item) {
    socket.destroy();
    return;
  }
  const tls = new TLSSocket(socket, {
    isServer: true,
    secureContext: createSecureContext({ key: item.key, cert: item.cert }),
    ALPNProtocols: ['acme-tls/1'],
  });
  tls.on('error', () => socket.destroy());
  tls.once('secure', () => tls.end());
}
