/**
 * The IMAP service: listeners for 143 (STARTTLS) and 993 (implicit TLS),
 * the connection limits, and what every session shares (store, bus,
 * notifier, throttle, TLS context). Protocol code lives in session.ts and
 * commands/; storage only through the MailStore.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import { AuthThrottle } from '@mailwerk/auth';
import type { Bus, MailEvent } from '@mailwerk/bus';
import { ConnectionLimiter } from '@mailwerk/limits';
import type { MailStore } from '@mailwerk/store';
import { BlobMemo, TextCache } from './cache.ts';
import { capabilityLine } from './commands/capability.ts';
import { MetaCache } from './meta-cache.ts';
import { Notifier } from './notifier.ts';
import type { WordsMemo } from './search.ts';
import { Session } from './session.ts';
import type { ContentFacts } from './sort.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ImapOptions {
  store: MailStore;
  bus: Bus;
  hostname: string;
  tls: { key: string; cert: string };
  /** Allow LOGIN and AUTHENTICATE before TLS (loopback tests only). */
  allowPlaintext: boolean;
  /** APPENDLIMIT: the largest message APPEND takes. */
  maxMessageSize: number;
  throttle?: AuthThrottle;
  /**
   * How often every session reads its journal regardless of bus events: the
   * safety net for events lost on the way (default 10 s; 0: never).
   */
  pollMs?: number;
  /** Inactivity before a signed-in session ends (RFC 3501 §5.4: at least 30 minutes; default 30 minutes). */
  idleTimeoutMs?: number;
  /** Inactivity before sign-in (default 3 minutes). */
  loginTimeoutMs?: number;
  /** How long a client may leave a response unread before it is disconnected (default 5 minutes). */
  writeTimeoutMs?: number;
  /** Memory for ENVELOPE and BODYSTRUCTURE text kept between FETCHes (default 16 MiB, about 20,000 messages; 0: none). */
  fetchCacheBytes?: number;
  /** Rows (flags, UIDs, sizes) of mailboxes kept in memory for all sessions (default 200,000; 0: none). */
  metaCacheRows?: number;
  /** Messages whose envelope words SEARCH keeps (default 30,000; 0: none). */
  searchCacheMessages?: number;
  /** Most simultaneous connections, and from one client address (defaults 1000 and 20). */
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** Our own failures (a bug, a broken store): logged with the stack. */
  onError?: (err: unknown, context: string) => void;
  /** Events worth a log line: sign-ins, failed sign-ins, clients' protocol errors. */
  log?: (level: LogLevel, message: string, fields: Record<string, unknown>) => void;
  /** Told what each command is when it starts; the function it returns when it ends (for a watchdog's report). */
  activity?: (what: string) => () => void;
  /** Told of each command answered: its name (`UID FETCH`; `unknown` for one not in the table), time and outcome. */
  onCommand?: (name: string, seconds: number, outcome: 'OK' | 'NO' | 'BAD') => void;
}

/** What every session of the service shares. */
export interface ServiceContext {
  store: MailStore;
  bus: Bus;
  notifier: Notifier;
  hostname: string;
  secureContext: SecureContext;
  allowPlaintext: boolean;
  maxMessageSize: number;
  throttle: AuthThrottle;
  textCache: TextCache;
  metaCache: MetaCache;
  /** SEARCH's envelope words by blob (about 30,000 messages' worth by default). */
  searchWords: WordsMemo;
  /** What SORT and THREAD read of a message, by blob (as many messages as searchWords). */
  sortFacts: BlobMemo<ContentFacts>;
  idleTimeoutMs: number;
  loginTimeoutMs: number;
  writeTimeoutMs: number;
  log(level: LogLevel, message: string, fields: Record<string, unknown>): void;
  onError(err: unknown, context: string): void;
  activity(what: string): () => void;
  onCommand(name: string, seconds: number, outcome: 'OK' | 'NO' | 'BAD'): void;
  /** Publishes a change after it has been written (a failure to publish only delays other sessions). */
  publish(event: MailEvent): void;
}

export class ImapService {
  readonly context: ServiceContext;
  readonly sessions = new Set<Session>();
  private readonly servers = new Set<Server>();
  private readonly limiter: ConnectionLimiter;

  constructor(options: ImapOptions) {
    const onError = options.onError ?? (() => undefined);
    this.limiter = new ConnectionLimiter(options.maxConnections ?? 1000, options.maxConnectionsPerIp ?? 20);
    this.context = {
      store: options.store,
      bus: options.bus,
      notifier: new Notifier(options.bus, options.pollMs ?? 10_000),
      hostname: options.hostname,
      secureContext: createSecureContext({ key: options.tls.key, cert: options.tls.cert }),
      allowPlaintext: options.allowPlaintext,
      maxMessageSize: options.maxMessageSize,
      throttle: options.throttle ?? new AuthThrottle(),
      textCache: new TextCache(options.fetchCacheBytes ?? 16 * 1024 * 1024),
      metaCache: new MetaCache(options.store, { maxRows: options.metaCacheRows ?? 200_000 }),
      searchWords: new BlobMemo(options.searchCacheMessages ?? 30_000),
      sortFacts: new BlobMemo(options.searchCacheMessages ?? 30_000),
      idleTimeoutMs: options.idleTimeoutMs ?? 30 * 60_000,
      loginTimeoutMs: options.loginTimeoutMs ?? 3 * 60_000,
      writeTimeoutMs: options.writeTimeoutMs ?? 5 * 60_000,
      log: options.log ?? (() => undefined),
      onError,
      activity: options.activity ?? (() => () => undefined),
      onCommand: options.onCommand ?? (() => undefined),
      publish: (event) => {
        options.bus.publish(event).catch((err) => onError(err, 'imap: publishing a change'));
      },
    };
  }

  /** A server for one port: `secure` for implicit TLS (993), otherwise STARTTLS (143). It is not listening yet. */
  /** A new certificate for connections from now on (open ones keep theirs): the reload of `mailwerk reload`. */
  setTls(tls: { key: string; cert: string }): void {
    this.context.secureContext = createSecureContext({ key: tls.key, cert: tls.cert });
  }

  server(secure: boolean): Server {
    const server = createServer((socket) => this.accept(socket, secure));
    server.on('error', (err) => this.context.onError(err, 'imap listener'));
    this.servers.add(server);
    return server;
  }

  private accept(socket: Socket, secure: boolean): void {
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    // The place is taken at accept, before the TLS handshake, and given back when the socket closes.
    const refused = this.limiter.admit(ip);
    if (!refused) socket.once('close', () => this.limiter.release(ip));
    const start = (s: Socket) => {
      if (refused) {
        s.end(
          `* BYE ${refused === 'total' ? 'Too many connections; try again later' : 'Too many connections from your address; close some and try again'}\r\n`,
        );
        return;
      }
      const session = new Session(this.context, s, secure, ip, () => this.sessions.delete(session));
      this.sessions.add(session);
      session
        .run(`OK [CAPABILITY ${capabilityLine(session)}] ${this.context.hostname} Mailwerk IMAP ready`)
        .catch((err) => {
          this.context.onError(err, `imap session ${session.id}`);
          session.destroy();
        });
    };
    if (!secure) {
      start(socket);
      return;
    }
    // Implicit TLS (RFC 8314): every name the client asks for (SNI) gets the one certificate.
    const tls = new TLSSocket(socket, { isServer: true, secureContext: this.context.secureContext });
    tls.on('error', () => socket.destroy());
    tls.once('secure', () => start(tls));
  }

  async close(): Promise<void> {
    this.context.notifier.close();
    for (const s of this.sessions) s.bye('Server shutting down');
    await Promise.all(
      [...this.servers].map(
        (s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())),
      ),
    );
    for (const s of this.sessions) s.destroy();
  }
}
