/**
 * Our SMTP and LMTP server engine (RFC 5321, RFC 2033), under the MX,
 * submission and the MDA's LMTP.
 *
 * Our own rather than smtp-server, which carried them until December 2026:
 * measured under the MX alone, smtp-server and the Node stream machinery
 * under its DATA (a Writable parser, a PassThrough per message, our reader on
 * top) were about a fifth of the MX's CPU a message, and every protocol rule
 * we needed (replies with their own enhanced codes, the greeting without its
 * fixed 100 ms pause, early talkers, bare line endings, SMTP smuggling, the
 * dot rule of §4.5.2, paced timeouts, AUTH only after TLS, quoted relay
 * tricks) was a patch into its internals, pinned to one version. Here they
 * are the engine's own rules (docs/decisions.md).
 *
 * - Input is read into one buffer and worked a line at a time; a command is
 *   worked only when the one before it is answered, so hooks see commands in
 *   order. Replies are gathered and written once the input at hand is worked
 *   (one write for a pipelined group, RFC 2920 §3.2; one per command for a
 *   client that waits for each).
 * - The message is read by the DataReader (dots.ts) into memory, at most the
 *   size limit (past it, only counted), and handed to `onData` whole.
 * - Every reply carries an enhanced status code (RFC 2034) but the greeting,
 *   the EHLO/LHLO list, 354 and 334.
 * - Lines are at most 12,288 octets (RFC 4954 §4, which also covers RFC 5321
 *   §4.5.3.1.4's commands with extension parameters); a longer one ends the
 *   session with 421.
 * - A hook refuses by throwing an SmtpError (that reply); anything else
 *   thrown is reported to `onError` and answered 451 4.3.0. A 421 reply, from
 *   a hook or the engine, ends the session (RFC 5321 §3.8).
 * - Refusals count: past `maxErrors` in a session the reply is 421 and the
 *   session ends.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import { parsePath, type SmtpAddress } from './command.ts';
import { DataReader } from './dots.ts';
import { asReply, reply, SmtpError } from './reply.ts';

export type { SmtpAddress } from './command.ts';

export interface SmtpEnvelope {
  mailFrom: SmtpAddress | null;
  rcptTo: SmtpAddress[];
}

export interface SmtpSession {
  readonly id: string;
  /** The client's IP address (an IPv4-mapped IPv6 address as plain IPv4). */
  readonly remoteAddress: string;
  /** The name the client gave in EHLO, HELO or LHLO ('' before). */
  helo: string;
  secure: boolean;
  tls: { protocol: string; cipher: string } | null;
  /** Who signed in with AUTH, as `onAuth` named them. */
  user: string | null;
  envelope: SmtpEnvelope;
}

export interface SmtpServerOptions {
  /** This host, in the greeting and replies. */
  name: string;
  /** The product word in the greeting (`220 <name> ESMTP <banner>`). */
  banner: string;
  /** LMTP (RFC 2033): LHLO instead of EHLO/HELO, one reply per recipient after DATA. */
  lmtp?: boolean;
  /** Certificate for STARTTLS (offered when given and the connection is not already TLS) and implicit TLS. */
  tls?: { key: string; cert: string };
  /** Implicit TLS (465): the handshake comes first. */
  secure?: boolean;
  /** CHUNKING (RFC 3030): BDAT, the message in counted chunks with no dot rule; offered when true. */
  chunking?: boolean;
  /** SMTP AUTH PLAIN and LOGIN (RFC 4954), checked by `onAuth`; MAIL needs it. */
  auth?: { allowInsecure: boolean };
  /** Largest message, in bytes (SIZE, RFC 1870): announced, checked at MAIL and after DATA. */
  size: number;
  maxRecipients?: number;
  maxClients?: number;
  /** Refusals in one session before it is closed with 421. */
  maxErrors?: number;
  /** No byte either way for this long: 421 and close (RFC 5321 §4.5.3.2 asks for minutes). */
  idleTimeoutMs?: number;
  /** The longest a session may last, whatever it does. */
  sessionTimeoutMs?: number;
  /** Pause before the greeting (a client that talks during it is refused when `strictProtocol`). */
  greetingDelayMs?: number;
  /**
   * For the internet: a client that talks before the greeting, or sends message data before the 354
   * (RFC 2920 §3.1: DATA ends a pipelined group), gets 554 5.5.0 and is closed; web requests get 221.
   */
  strictProtocol?: boolean;
  /** RFC 5321 §2.3.8: a command ending in a bare LF, or holding a bare CR, gets 521 5.5.2 and a close. */
  strictLineEndings?: boolean;
  /** The longest time for one command, however it trickles in. */
  commandTimeoutMs?: number;
  /** Slowest message transfer in bytes per second, after `dataGraceMs`. */
  minDataRate?: number;
  dataGraceMs?: number;
  /** A new connection; throw an SmtpError to turn it away with that reply. */
  onConnect?(session: SmtpSession): Promise<void> | void;
  onClose?(session: SmtpSession): void;
  /** Checks a sign-in; returns who it is (kept as `session.user`), or throws the reply. */
  onAuth?(username: string, password: string, session: SmtpSession): Promise<string>;
  onMailFrom?(address: SmtpAddress, session: SmtpSession): Promise<void> | void;
  onRcptTo?(address: SmtpAddress, session: SmtpSession): Promise<void> | void;
  /**
   * The message, unstuffed, within the size limit (the engine answers an oversized one, or one with a
   * smuggling dot line, itself). Returns the text of the 250 (after its enhanced code) or, for LMTP,
   * one reply per recipient in order: a text for 250, an SmtpError for a refusal.
   */
  onData(message: Buffer, session: SmtpSession): Promise<string | Array<string | SmtpError>>;
  onError?(err: unknown, context: string): void;
}

const CR = 0x0d;
const LF = 0x0a;
const EMPTY = Buffer.alloc(0);
const MAX_LINE = 12_288;
/** Input kept waiting behind a command before the socket is paused. */
const HIGH_WATER = 64 * 1024;
const WEB = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|TRACE|PATCH|CONNECT)\s+\S+(\s+HTTP\/\d(\.\d)?)?\s*$/i;
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

let sessionCount = 0;
const sessionPrefix = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

export class SmtpServer extends EventEmitter {
  readonly options: SmtpServerOptions;
  readonly server: Server;
  readonly connections = new Set<SmtpConnection>();
  tlsContext: SecureContext | null;
  private tick: NodeJS.Timeout | null = null;
  private closing: (() => void) | null = null;

  constructor(options: SmtpServerOptions) {
    super();
    this.options = options;
    this.tlsContext = options.tls ? createSecureContext(options.tls) : null;
    this.server = createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => this.emit('error', err));
    const { commandTimeoutMs, minDataRate, sessionTimeoutMs } = options;
    if (commandTimeoutMs || minDataRate || sessionTimeoutMs) {
      // One timer for every connection's pace, a quarter of the shortest limit apart (0.1–1 s).
      const shortest = Math.min(commandTimeoutMs ?? 4000, sessionTimeoutMs ?? 4000, 4000);
      this.tick = setInterval(
        () => {
          const now = Date.now();
          for (const c of this.connections) c.checkPace(now);
        },
        Math.max(100, shortest / 4),
      );
      this.tick.unref();
    }
  }

  listen(...args: unknown[]): this {
    (this.server.listen as (...a: unknown[]) => unknown)(...args);
    return this;
  }

  address(): ReturnType<Server['address']> {
    return this.server.address();
  }

  /** A new certificate for connections and STARTTLS from now on (open sessions keep theirs). */
  updateSecureContext(tls: { key: string; cert: string }): void {
    this.tlsContext = createSecureContext(tls);
  }

  /**
   * Stops listening; idle sessions are told 421 and closed, a session in the middle of a command is
   * closed once it is answered. `done` runs when the last connection is gone.
   */
  close(done?: () => void): void {
    if (this.tick) clearInterval(this.tick);
    this.server.close();
    const finished = () => done?.();
    if (!this.connections.size) {
      finished();
      return;
    }
    this.closing = finished;
    for (const c of this.connections) c.shutdown();
    // A client that does not go when told (or a message that never ends) is cut off.
    setTimeout(() => {
      for (const c of this.connections) c.destroy();
    }, 10_000).unref();
  }

  /** A client's TLS failure, for whoever listens (the service logs it); nobody listening is fine. */
  report(err: Error): void {
    if (this.listenerCount('error')) this.emit('error', err);
  }

  /** @internal */
  forget(c: SmtpConnection): void {
    this.connections.delete(c);
    if (this.closing && !this.connections.size) {
      const fn = this.closing;
      this.closing = null;
      fn();
    }
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    if (!this.options.secure) return void new SmtpConnection(this, socket, false);
    if (!this.tlsContext) return void socket.destroy();
    const tls = new TLSSocket(socket, { isServer: true, secureContext: this.tlsContext });
    tls.on('error', (err) => {
      this.report(err);
      socket.destroy();
    });
    tls.once('secure', () => new SmtpConnection(this, tls, true));
  }
}

type Step = Promise<void> | undefined;

export class SmtpConnection {
  readonly session: SmtpSession;
  private readonly server: SmtpServer;
  private readonly o: SmtpServerOptions;
  private socket: Socket;
  private buf: Buffer = EMPTY;
  private out: string[] = [];
  /** A command is being worked on (a hook, the wait before 354, the TLS handshake). */
  private busy = false;
  /** The greeting went out. */
  private ready = false;
  private closed = false;
  /** The server is shutting down: close once the command at hand is answered. */
  private stopping = false;
  /** The message being received: by DATA (`dots`) or in BDAT chunks. */
  private data: DataReader | null = null;
  /** DATA's dot-ended data is being read. */
  private dots = false;
  /** The BDAT chunk being read: octets left, whether it is the last, and the refusal if it is refused. */
  private chunk: { left: number; size: number; last: boolean; refused: SmtpError | null } | null = null;
  /** The next line belongs to an AUTH exchange. */
  private sasl: ((line: string) => Step) | null = null;
  private errors = 0;
  /** The transaction's recipients by lower-cased address: their place in `envelope.rcptTo`. */
  private readonly rcptIndex = new Map<string, number>();
  private readonly startedAt = Date.now();
  private lastCommandAt = Date.now();
  private dataStartedAt = 0;
  private endTimer: NodeJS.Timeout | null = null;
  private readonly onBytes = (chunk: Buffer) => this.received(chunk);

  constructor(server: SmtpServer, socket: Socket, secure: boolean) {
    this.server = server;
    this.o = server.options;
    this.socket = socket;
    this.session = {
      id: `${sessionPrefix}${(++sessionCount).toString(36)}`,
      remoteAddress: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      helo: '',
      secure,
      tls: secure ? tlsOf(socket) : null,
      user: null,
      envelope: { mailFrom: null, rcptTo: [] },
    };
    server.connections.add(this);
    // Replies are small writes; with Nagle's algorithm each waits for the client's delayed ACK.
    socket.setNoDelay(true);
    socket.on('data', this.onBytes);
    socket.once('close', () => this.gone());
    if (this.o.idleTimeoutMs) {
      socket.setTimeout(this.o.idleTimeoutMs);
      socket.on('timeout', () => this.idle());
    }
    if (this.o.maxClients && server.connections.size > this.o.maxClients) {
      this.say(421, '4.7.0', `${this.o.name} too many connected clients, try again in a moment`);
      return;
    }
    this.busy = true;
    let open: Promise<void> | void;
    try {
      open = this.o.onConnect?.(this.session);
    } catch (err) {
      this.refuseConnection(err);
      return;
    }
    if (open)
      open.then(
        () => this.greet(),
        (err: unknown) => this.refuseConnection(err),
      );
    else this.greet();
  }

  private refuseConnection(err: unknown): void {
    const r = asReply(err, this.o.onError, `smtp session ${this.session.id}: connect`);
    // A refused connection is closed whatever the code (RFC 5321 §3.1 allows 554 in place of the greeting).
    this.send(r.responseCode === 554 ? 554 : 421, r.message);
    this.end();
  }

  private greet(): void {
    if (this.closed) return;
    const go = () => {
      if (this.closed) return;
      this.ready = true;
      this.busy = false;
      this.lastCommandAt = Date.now();
      this.out.push(`220 ${this.o.name} ${this.o.lmtp ? 'LMTP' : 'ESMTP'} ${this.o.banner}\r\n`);
      this.pump();
    };
    const delay = this.o.greetingDelayMs ?? 0;
    if (delay > 0) setTimeout(go, delay).unref();
    else go();
  }

  private received(chunk: Buffer): void {
    if (this.closed) return;
    if (!this.ready && this.o.strictProtocol) {
      this.say(554, '5.5.0', 'protocol violation: the client spoke before the greeting');
      this.end();
      return;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.busy) this.pump();
    // While a command waits (a hook, the wait before 354), what the client sends behind it waits in the
    // buffer; past a bound the socket is paused until the buffer is worked down (pump).
    if (this.buf.length > HIGH_WATER && !this.socket.isPaused()) this.socket.pause();
  }

  /** Works what is in the buffer, a command (or the message) at a time, until it needs more or waits. */
  private pump(): void {
    while (!this.busy && !this.closed) {
      if (this.chunk) {
        const c = this.chunk;
        if (c.left > 0) {
          if (!this.buf.length) break;
          const take = Math.min(c.left, this.buf.length);
          if (!c.refused) this.data?.take(this.buf.subarray(0, take));
          this.buf = this.buf.subarray(take);
          c.left -= take;
          if (c.left > 0) break;
        }
        this.chunk = null;
        this.run(this.endOfChunk(c));
        continue;
      }
      if (this.dots) {
        if (!this.buf.length) break;
        const chunk = this.buf;
        this.buf = EMPTY;
        const rest = this.data!.feed(chunk);
        if (rest === null) break;
        this.buf = rest;
        this.run(this.endOfData());
        continue;
      }
      const nl = this.buf.indexOf(LF);
      if (nl === -1 ? this.buf.length > MAX_LINE : nl > MAX_LINE) {
        this.say(
          421,
          '4.7.0',
          `${this.o.name} command line too long (over ${MAX_LINE} octets), closing connection`,
        );
        break;
      }
      if (nl === -1) break;
      const end = nl > 0 && this.buf[nl - 1] === CR ? nl - 1 : nl;
      const line = this.buf.subarray(0, end);
      this.buf = this.buf.subarray(nl + 1);
      if (this.o.strictLineEndings && (end === nl || line.includes(CR))) {
        this.say(
          521,
          '5.5.2',
          'bare CR or LF in a command: SMTP lines end with CRLF (RFC 5321 section 2.3.8)',
        );
        this.end();
        break;
      }
      this.lastCommandAt = Date.now();
      this.run(this.command(line.toString('utf8')));
    }
    if (!this.busy || this.closed) this.flush();
    if (this.buf.length <= HIGH_WATER && this.socket.isPaused()) this.socket.resume();
  }

  /** Waits for a command that went asynchronous, then goes on with the input. */
  private run(step: Step): void {
    if (!step) return;
    this.busy = true;
    step
      .catch((err: unknown) => this.refuse(asReply(err, this.o.onError, `smtp session ${this.session.id}`)))
      .finally(() => {
        this.busy = false;
        if (this.stopping && !this.closed && !this.data) this.shutdown();
        this.pump();
      });
  }

  private command(line: string): Step {
    if (this.sasl) {
      const next = this.sasl;
      this.sasl = null;
      return next(line);
    }
    const sp = line.indexOf(' ');
    const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1).trim();
    switch (verb) {
      case 'EHLO':
      case 'HELO':
      case 'LHLO':
        return this.hello(verb, arg);
      case 'MAIL':
        return this.mail(line.slice(sp + 1));
      case 'RCPT':
        return this.rcpt(line.slice(sp + 1));
      case 'DATA':
        return this.startData(arg);
      case 'BDAT':
        return this.bdat(arg);
      case 'RSET':
        this.reset();
        return this.say(250, '2.0.0', 'Ok');
      case 'NOOP':
        return this.say(250, '2.0.0', 'Ok');
      case 'QUIT':
        this.say(221, '2.0.0', `${this.o.name} closing connection`);
        return this.quit();
      case 'VRFY':
        // RFC 5321 §3.5.3: no answer about who exists, but no refusal either.
        return this.say(252, '2.5.0', 'cannot VRFY the user, but will take mail for it and try');
      case 'HELP':
        return this.say(214, '2.0.0', 'see RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY');
      case 'STARTTLS':
        return this.startTls(arg);
      case 'AUTH':
        return this.auth(arg);
      default:
        if (this.o.strictProtocol && WEB.test(line)) {
          this.say(221, '2.7.0', 'this is a mail server, not a web server or proxy; goodbye');
          return this.end();
        }
        if (['EXPN', 'ETRN', 'TURN'].includes(verb)) return this.say(502, '5.5.1', `${verb} not implemented`);
        return this.say(500, '5.5.2', 'command not recognized');
    }
  }

  private hello(verb: string, arg: string): Step {
    if (Boolean(this.o.lmtp) !== (verb === 'LHLO'))
      return this.say(500, '5.5.1', this.o.lmtp ? 'this is LMTP: say LHLO' : 'LHLO is for LMTP: say EHLO');
    const name = arg.split(' ')[0] ?? '';
    if (!name) return this.say(501, '5.5.4', `${verb} needs your domain name or address literal`);
    this.session.helo = name;
    this.reset();
    if (verb === 'HELO') return void this.out.push(`250 ${this.o.name}\r\n`);
    const canTls = Boolean(this.server.tlsContext) && !this.session.secure && !this.o.lmtp;
    const canAuth =
      Boolean(this.o.auth) && !this.session.user && (this.session.secure || this.o.auth!.allowInsecure);
    const lines = [
      // The client's name echoed as printable ASCII, and not all of a 12 KB one.
      `${this.o.name} greets ${name.slice(0, 255).replace(/[^\x21-\x7e]/g, '?')}`,
      'PIPELINING',
      '8BITMIME',
      'SMTPUTF8',
      'ENHANCEDSTATUSCODES',
      'DSN',
      `SIZE ${this.o.size}`,
      ...(this.o.chunking ? ['CHUNKING'] : []),
      ...(canTls ? ['STARTTLS'] : []),
      ...(canAuth ? ['AUTH PLAIN LOGIN'] : []),
    ];
    for (const [i, l] of lines.entries()) this.out.push(`250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`);
    return undefined;
  }

  private mail(arg: string): Step {
    if (!this.session.helo) return this.say(503, '5.5.1', `send ${this.o.lmtp ? 'LHLO' : 'EHLO'} first`);
    if (this.o.auth && !this.session.user) return this.say(530, '5.7.0', 'authentication required');
    if (this.session.envelope.mailFrom) return this.say(503, '5.5.1', 'nested MAIL command');
    const parsed = parsePath('MAIL', arg);
    if (parsed instanceof SmtpError) return this.refuse(parsed);
    const size = typeof parsed.params.SIZE === 'string' ? Number(parsed.params.SIZE) : 0;
    if (size > this.o.size)
      return this.say(552, '5.3.4', `message size exceeds the limit of ${this.o.size} bytes`);
    return this.hook(
      () => this.o.onMailFrom?.(parsed, this.session),
      () => {
        this.session.envelope.mailFrom = parsed;
        this.say(250, '2.1.0', 'Ok');
      },
    );
  }

  private rcpt(arg: string): Step {
    const env = this.session.envelope;
    if (!env.mailFrom) return this.say(503, '5.5.1', 'need MAIL command');
    const parsed = parsePath('RCPT', arg);
    if (parsed instanceof SmtpError) return this.refuse(parsed);
    // A recipient named twice is one recipient (the later parameters count); found by a map, so a long
    // list (LMTP has no recipient limit) costs linear time, not a scan per RCPT.
    const key = parsed.address.toLowerCase();
    const index = this.rcptIndex.get(key);
    if (index === undefined && this.o.maxRecipients && env.rcptTo.length >= this.o.maxRecipients)
      return this.say(452, '4.5.3', `too many recipients: at most ${this.o.maxRecipients} per message`);
    return this.hook(
      () => this.o.onRcptTo?.(parsed, this.session),
      () => {
        if (index === undefined) this.rcptIndex.set(key, env.rcptTo.push(parsed) - 1);
        else env.rcptTo[index] = parsed;
        this.say(250, '2.1.5', 'Ok');
      },
    );
  }

  private startData(arg: string): Step {
    const env = this.session.envelope;
    if (!env.mailFrom) return this.say(503, '5.5.1', 'need MAIL command');
    if (!env.rcptTo.length) return this.say(503, '5.5.1', 'need RCPT command');
    if (this.data)
      return this.say(503, '5.5.1', 'DATA after BDAT: send the rest with BDAT (RFC 3030 section 2)');
    if (arg) return this.say(501, '5.5.4', 'DATA takes no argument');
    const go = () => {
      this.out.push('354 End data with <CR><LF>.<CR><LF>\r\n');
      this.data = new DataReader(this.o.size);
      this.dots = true;
      this.dataStartedAt = Date.now();
    };
    if (!this.o.strictProtocol) return void go();
    // A full turn of the event loop (through one poll for input) before the 354: what the client sent
    // behind DATA without waiting for it has been read by then.
    return new Promise<void>((resolve) =>
      setImmediate(() =>
        setImmediate(() => {
          if (this.buf.length) {
            this.say(554, '5.5.0', 'protocol violation: message data was sent before the 354 reply');
            this.end();
          } else go();
          resolve();
        }),
      ),
    );
  }

  /**
   * BDAT <size> [LAST] (RFC 3030 §2): the next `size` octets are the chunk, read whatever the answer
   * to it (a refused chunk is read and dropped, so the session stays in step).
   */
  private bdat(arg: string): Step {
    if (!this.o.chunking) return this.say(502, '5.5.1', 'BDAT not implemented: use DATA');
    const m = /^(\d{1,15})(?: +(LAST))? *$/i.exec(arg);
    if (!m) {
      // Without a size the octets that follow cannot be told from commands: the session ends.
      this.say(501, '5.5.4', 'syntax: BDAT <size> [LAST]; closing');
      return this.end();
    }
    const env = this.session.envelope;
    const refused = !env.mailFrom
      ? reply(503, '5.5.1', 'need MAIL command')
      : !env.rcptTo.length
        ? reply(503, '5.5.1', 'need RCPT command')
        : null;
    if (!refused && !this.data) {
      this.data = new DataReader(this.o.size);
      this.dataStartedAt = Date.now();
    }
    const size = Number(m[1]);
    this.chunk = { left: size, size, last: Boolean(m[2]), refused };
    return undefined;
  }

  private endOfChunk(c: { size: number; last: boolean; refused: SmtpError | null }): Step {
    if (c.refused) return this.refuse(c.refused);
    if (!c.last) return this.say(250, '2.0.0', `${c.size} octets received`);
    return this.endOfData();
  }

  private async endOfData(): Promise<void> {
    const reader = this.data!;
    this.data = null;
    this.dots = false;
    const rcpts = this.session.envelope.rcptTo.length;
    const each = (code: number, message: string) => {
      for (let i = 0; i < (this.o.lmtp ? rcpts : 1); i++) this.send(code, message);
    };
    try {
      const message = reader.message();
      if (!message) return each(552, `5.3.4 message exceeds the size limit of ${this.o.size} bytes`);
      if (reader.smuggling)
        return each(
          554,
          '5.6.0 message refused: a "." line with a bare CR or LF (SMTP smuggling); send CRLF line endings',
        );
      let result: string | Array<string | SmtpError>;
      try {
        result = await this.o.onData(message, this.session);
      } catch (err) {
        const r = asReply(err, this.o.onError, `smtp session ${this.session.id}: DATA`);
        return each(r.responseCode, r.message);
      }
      if (typeof result === 'string') return each(250, result);
      for (const r of result) {
        if (r instanceof SmtpError) this.send(r.responseCode, r.message, false);
        else this.send(250, r);
      }
    } finally {
      this.reset();
    }
  }

  private startTls(arg: string): Step {
    if (this.o.lmtp || !this.server.tlsContext) return this.say(502, '5.5.1', 'STARTTLS not offered here');
    if (this.session.secure) return this.say(503, '5.5.1', 'already in TLS');
    if (arg) return this.say(501, '5.5.4', 'STARTTLS takes no argument');
    this.say(220, '2.0.0', 'Ready to start TLS');
    this.flush();
    // RFC 3207 §4.2: what the client sent behind STARTTLS in the clear is discarded, never worked as
    // commands of the protected session (CVE-2011-0411).
    this.buf = EMPTY;
    const plain = this.socket;
    plain.removeListener('data', this.onBytes);
    return new Promise<void>((resolve) => {
      const tls = new TLSSocket(plain, { isServer: true, secureContext: this.server.tlsContext! });
      tls.on('error', (err) => {
        this.server.report(err);
        plain.destroy();
        resolve();
      });
      tls.once('secure', () => {
        this.socket = tls;
        tls.setNoDelay(true);
        tls.on('data', this.onBytes);
        // A new session: the client starts over with EHLO (RFC 3207 §4.2).
        this.session.secure = true;
        this.session.tls = tlsOf(tls);
        this.session.helo = '';
        this.session.user = null;
        this.reset();
        resolve();
      });
    });
  }

  /** AUTH PLAIN and LOGIN (RFC 4954, RFC 4616); a client cancels an exchange with `*`. */
  private auth(arg: string): Step {
    const a = this.o.auth;
    if (!a || !this.o.onAuth) return this.say(502, '5.5.1', 'AUTH not offered here');
    if (!this.session.helo) return this.say(503, '5.5.1', 'send EHLO first');
    if (this.session.user) return this.say(503, '5.5.1', 'already signed in');
    if (this.session.envelope.mailFrom) return this.say(503, '5.5.1', 'no AUTH during a mail transaction');
    // RFC 4954 §6: 538 5.7.11, encryption required for the mechanism (both send the password).
    if (!this.session.secure && !a.allowInsecure)
      return this.say(538, '5.7.11', 'encryption required for authentication: use STARTTLS first');
    const [mech = '', initial] = arg.split(' ');
    const decode = (line: string): string | null => {
      if (line === '=') return '';
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line) || line.length % 4) return null;
      return Buffer.from(line, 'base64').toString('utf8');
    };
    const check = (user: string, password: string): Step =>
      this.o.onAuth!(user, password, this.session).then(
        (who) => {
          this.session.user = who;
          this.say(235, '2.7.0', 'authentication successful');
        },
        (err: unknown) =>
          void this.refuse(asReply(err, this.o.onError, `smtp session ${this.session.id}: AUTH`)),
      );
    const answer = (line: string, then: (text: string) => Step): Step => {
      if (line === '*') return this.refuse(reply(501, '5.7.0', 'authentication cancelled'));
      const text = decode(line);
      if (text === null) return this.refuse(reply(501, '5.5.2', 'cannot decode the response (base64)'));
      return then(text);
    };
    const plain = (text: string): Step => {
      const parts = text.split('\0');
      if (parts.length !== 3)
        return this.refuse(reply(501, '5.5.2', 'PLAIN wants authzid NUL authcid NUL password'));
      return check(parts[1]!, parts[2]!);
    };
    switch (mech.toUpperCase()) {
      case 'PLAIN':
        if (initial !== undefined) return answer(initial, plain);
        this.sasl = (line) => answer(line, plain);
        this.out.push('334 \r\n');
        return undefined;
      case 'LOGIN': {
        const password = (user: string): Step => {
          this.sasl = (line) => answer(line, (pass) => check(user, pass));
          this.out.push('334 UGFzc3dvcmQ6\r\n');
          return undefined;
        };
        if (initial !== undefined) return answer(initial, password);
        this.sasl = (line) => answer(line, password);
        this.out.push('334 VXNlcm5hbWU6\r\n');
        return undefined;
      }
      default:
        return this.refuse(reply(504, '5.5.4', 'unknown mechanism: use PLAIN or LOGIN'));
    }
  }

  /** Runs a hook (synchronous or not): on success `then`, else its reply. */
  private hook(call: () => Promise<void> | void, then: () => void): Step {
    const failed = (err: unknown) =>
      void this.refuse(asReply(err, this.o.onError, `smtp session ${this.session.id}`));
    let result: Promise<void> | void;
    try {
      result = call();
    } catch (err) {
      return failed(err);
    }
    if (!result) return void then();
    return result.then(then, failed);
  }

  private refuse(err: SmtpError): undefined {
    this.send(err.responseCode, err.message);
    return undefined;
  }

  /** A reply: code, enhanced status code, text. */
  private say(code: number, enhanced: string, text: string): undefined {
    this.send(code, `${enhanced} ${text}`);
    return undefined;
  }

  /**
   * A reply from its code and a text that starts with its enhanced code (an SmtpError's message); a
   * text without one gets its class's x.0.0. Refusals count toward `maxErrors` unless `count` is false.
   */
  private send(code: number, message: string, count = true): void {
    if (this.closed) return;
    let text = message.replace(/[\r\n]+/g, ' ');
    if (!ENHANCED.test(text)) text = `${Math.floor(code / 100)}.0.0 ${text}`;
    if (
      count &&
      code >= 400 &&
      code !== 421 &&
      this.o.maxErrors !== undefined &&
      ++this.errors > this.o.maxErrors
    ) {
      code = 421;
      text = `4.7.0 ${this.o.name} too many errors, closing connection`;
    }
    this.out.push(`${code} ${text}\r\n`);
    if (code === 421) this.end();
  }

  private flush(): void {
    if (!this.out.length) return;
    const text = this.out.length === 1 ? this.out[0]! : this.out.join('');
    this.out = [];
    if (!this.socket.destroyed) this.socket.write(text);
  }

  /** A new transaction (RSET, EHLO, after the message): the envelope and any BDAT chunks so far go. */
  private reset(): void {
    this.session.envelope = { mailFrom: null, rcptTo: [] };
    this.rcptIndex.clear();
    this.data = null;
  }

  /** Closes after what was said is written. */
  private end(): undefined {
    if (this.closed) return undefined;
    this.flush();
    this.closed = true;
    this.socket.end();
    // A client that never reads does not hold the socket open.
    this.endTimer = setTimeout(() => this.socket.destroy(), 5000);
    this.endTimer.unref();
    return undefined;
  }

  /**
   * After the 221 to QUIT (RFC 5321 §4.1.1.10: the channel is closed once QUIT is answered). Over plain
   * TCP with the reply handed to the kernel whole, the socket is closed at once: the kernel still sends
   * the 221 and then the FIN. Many clients close without reading the 221 (Postfix's smtp client by
   * default, smtp_skip_quit_response), so the 221 meets a closed socket and the client's RST comes
   * back; half-closed (end), this session then read that RST as an error, which Node builds with a
   * stack trace, and waited for it or for the 5 s timer: the engine alone spent about 40 % more CPU a
   * connection so (bench/README.md, "A session closed at its QUIT"). Over TLS the close_notify is sent
   * first (end).
   */
  private quit(): undefined {
    this.flush();
    const socket = this.socket;
    // Input behind the QUIT may still be unread in the kernel too, where a close would send RST at once.
    if (socket instanceof TLSSocket || socket.writableLength > 0 || this.buf.length > 0) return this.end();
    this.closed = true;
    socket.destroy();
    return undefined;
  }

  /** @internal */
  destroy(): void {
    this.socket.destroy();
  }

  private idle(): void {
    if (this.busy && !this.data) return; // our own work (a hook) is slow, not the client
    this.say(421, '4.4.2', `${this.o.name} idle too long, closing connection`);
  }

  /** Input received and not yet worked (bounded by pausing the socket). */
  get pendingInput(): number {
    return this.buf.length;
  }

  /** @internal Called by the server's timer. A 421 closes the session (see send). */
  checkPace(now: number): void {
    if (this.closed) return;
    const o = this.o;
    if (o.sessionTimeoutMs && now - this.startedAt > o.sessionTimeoutMs) {
      this.say(421, '4.4.2', `${o.name} session time limit reached, closing connection`);
    } else if (this.data) {
      const elapsed = now - this.dataStartedAt;
      const rate = (this.data.wireBytes * 1000) / elapsed;
      if (o.minDataRate && elapsed > (o.dataGraceMs ?? 30_000) && rate < o.minDataRate)
        this.say(421, '4.4.2', `message data arrives too slowly (${Math.round(rate)} bytes/s); closing`);
    } else if (
      o.commandTimeoutMs &&
      this.ready &&
      !this.busy &&
      now - this.lastCommandAt > o.commandTimeoutMs
    ) {
      this.say(421, '4.4.2', 'too slow: no complete command in time; closing');
    }
  }

  /** @internal The server is closing. */
  shutdown(): void {
    this.stopping = true;
    if (this.closed || this.busy || this.data) return;
    this.say(421, '4.3.2', `${this.o.name} shutting down, try again later`);
  }

  private gone(): void {
    if (this.endTimer) clearTimeout(this.endTimer);
    this.closed = true;
    this.data = null;
    this.server.forget(this);
    try {
      this.o.onClose?.(this.session);
    } catch (err) {
      this.o.onError?.(err, `smtp session ${this.session.id}: close`);
    }
  }
}

/** The TLS protocol and cipher of a socket, for the Received: field and rspamd. */
function tlsOf(socket: Socket): { protocol: string; cipher: string } | null {
  const t = socket as TLSSocket;
  if (typeof t.getCipher !== 'function') return null;
  return { protocol: t.getProtocol() ?? 'TLS', cipher: t.getCipher()?.name ?? 'unknown' };
}
