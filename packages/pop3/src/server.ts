/**
 * POP3 (RFC 1939) with CAPA and response codes (RFC 2449, RFC 3206), STLS
 * (RFC 2595) and SASL PLAIN (RFC 5034), over the MailStore's INBOX.
 *
 * Our own, rather than WildDuck's POP3 server: that one renumbers messages
 * in LIST/UIDL after DELE (RFC 1939 keeps the numbers), cannot answer
 * `-ERR [IN-USE]`, has a fixed CAPA without EXPIRE, and hands the message to
 * nodemailer's data stream, which rewrites line endings; the protocol is small
 * enough that owning it costs less than patching around those.
 *
 * - A session works on a snapshot of INBOX taken at sign-in; DELE only marks,
 *   and the marked messages are expunged at QUIT (the UPDATE state). A
 *   connection that drops, times out or fails deletes nothing.
 * - One POP3 session per mailbox: a second gets `-ERR [IN-USE]`.
 * - UIDL is `%08X%08X` of the IMAP UID and the mailbox's UIDVALIDITY (Dovecot's
 *   default format), so a client switching between IMAP and POP3 sees the
 *   same identities.
 * - RETR sends the stored bytes, dot-stuffed, and marks the message \Seen.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import { AuthThrottle, checkLogin } from '@mailwerk/auth';
import type { Bus, MailEvent } from '@mailwerk/bus';
import { ConnectionLimiter, type Counters, InProcessCounters } from '@mailwerk/limits';
import { dotStuff } from '@mailwerk/mime';
import type { Account, Mailbox, MailStore } from '@mailwerk/store';
import { normalizeAddress } from '@mailwerk/store';
import { PacedWriter } from '@mailwerk/tls';

export interface Pop3Options {
  store: MailStore;
  bus: Bus;
  hostname: string;
  tls: { key: string; cert: string };
  /** Allow USER/PASS and AUTH before TLS (loopback tests only). */
  allowPlaintext: boolean;
  throttle?: AuthThrottle;
  /** Where the IN-USE locks live: in process by default, Redis so that several access processes agree. */
  counters?: Counters;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** Inactivity before the server closes the connection (RFC 1939: at least 10 minutes). */
  idleTimeoutMs?: number;
  onError?: (err: unknown, context: string) => void;
  /** One line per session outcome (sign-in, QUIT with deletions), for the log. */
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
  /** Told of each command answered: its verb (`unknown` for one not in RFC 1939/2449/5034), time and outcome. */
  onCommand?: (verb: string, seconds: number, outcome: 'OK' | 'NO') => void;
}

/** The verbs counted by name (a client chooses anything else). */
const VERBS = new Set([
  'USER',
  'PASS',
  'APOP',
  'AUTH',
  'STLS',
  'CAPA',
  'STAT',
  'LIST',
  'RETR',
  'DELE',
  'NOOP',
  'RSET',
  'QUIT',
  'TOP',
  'UIDL',
  'UTF8',
]);

/** RFC 2449 §4: a command line is at most 255 octets; we allow some slack for long SASL responses. */
const MAX_LINE = 1024;
const MAX_ERRORS = 10;

interface Entry {
  uid: number;
  size: number;
  blobId: string;
  deleted: boolean;
}

/** The header and the first `lines` lines of the body (TOP, RFC 1939 §7). */
export function topOf(data: Buffer, lines: number): Buffer {
  let end = -1;
  for (let i = 0; i < data.length; ) {
    const nl = data.indexOf(0x0a, i);
    if (nl === -1) break;
    const blank = nl === i || (nl === i + 1 && data[i] === 0x0d);
    i = nl + 1;
    if (blank) {
      end = i;
      break;
    }
  }
  if (end === -1) return data;
  let pos = end;
  for (let n = 0; n < lines && pos < data.length; n++) {
    const nl = data.indexOf(0x0a, pos);
    pos = nl === -1 ? data.length : nl + 1;
  }
  return data.subarray(0, pos);
}

export const uidl = (uid: number, uidValidity: number): string =>
  uid.toString(16).toUpperCase().padStart(8, '0') + uidValidity.toString(16).toUpperCase().padStart(8, '0');

export class Pop3Service {
  private readonly opts: Pop3Options;
  private readonly throttle: AuthThrottle;
  /** The certificate of new connections and of STLS (replaced by setTls). */
  tlsContext: SecureContext;
  private readonly servers = new Set<Server>();
  readonly sessions = new Set<Pop3Session>();
  /** The mailbox locks (`pop3:lock:<mailbox id>` → session id), shared by every process when in Redis. */
  readonly locks: Counters;
  private readonly limiter: ConnectionLimiter;

  constructor(options: Pop3Options) {
    this.opts = options;
    this.throttle = options.throttle ?? new AuthThrottle();
    this.locks = options.counters ?? new InProcessCounters();
    this.limiter = new ConnectionLimiter(options.maxConnections ?? 1000, options.maxConnectionsPerIp ?? 20);
    this.tlsContext = createSecureContext({ key: options.tls.key, cert: options.tls.cert });
  }

  /** A new certificate for connections and STLS from now on (open TLS sessions keep theirs). */
  setTls(tls: { key: string; cert: string }): void {
    this.tlsContext = createSecureContext({ key: tls.key, cert: tls.cert });
  }

  /** A server for one port: `secure` for implicit TLS (995), otherwise STLS (110). */
  server(secure: boolean): Server {
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      // The place is taken at accept, before the TLS handshake, and given back when the socket closes.
      const refused = this.limiter.admit(ip);
      if (!refused) socket.once('close', () => this.limiter.release(ip));
      const start = (s: Socket) => {
        if (refused) {
          s.end(
            `-ERR [SYS/TEMP] ${refused === 'total' ? 'Too many connections; try again later' : 'Too many connections from your address'}\r\n`,
          );
          return;
        }
        const session = new Pop3Session(this, this.opts, this.throttle, s, secure, ip);
        this.sessions.add(session);
        s.once('close', () => {
          this.sessions.delete(session);
          session.release();
        });
      };
      if (!secure) return start(socket);
      const tls = new TLSSocket(socket, { isServer: true, secureContext: this.tlsContext });
      tls.on('error', () => socket.destroy());
      tls.once('secure', () => start(tls));
    });
    server.on('error', (err) => this.opts.onError?.(err, 'pop3'));
    this.servers.add(server);
    return server;
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.close('-ERR [SYS/TEMP] Server shutting down');
    await Promise.all([...this.servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

type State = 'AUTHORIZATION' | 'TRANSACTION' | 'UPDATE' | 'CLOSED';

class Pop3Session {
  private state: State = 'AUTHORIZATION';
  readonly id = randomBytes(9).toString('base64url');
  /** Longer than the idle timeout, so a live session never loses its lock; a crashed process's lock ends by itself. */
  private get lockTtlMs(): number {
    return (this.opts.idleTimeoutMs ?? 10 * 60_000) + 60_000;
  }
  private lockKey: string | null = null;
  private buffer = '';
  private readonly queue: string[] = [];
  private busy = false;
  /** Whether the last command was answered +OK (for onCommand). */
  private lastOk = true;
  private errors = 0;
  private userName: string | null = null;
  /** Set while an AUTH PLAIN waits for its response line. */
  private saslPending = false;
  private account: Account | null = null;
  private inbox: Mailbox | null = null;
  private entries: Entry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private socket: Socket;
  /** What is sent goes through this, a TLS record's worth at a time (PacedWriter says why). */
  private out: PacedWriter;
  private secure: boolean;
  private readonly service: Pop3Service;
  private readonly opts: Pop3Options;
  private readonly throttle: AuthThrottle;
  private readonly ip: string;

  constructor(
    service: Pop3Service,
    opts: Pop3Options,
    throttle: AuthThrottle,
    socket: Socket,
    secure: boolean,
    ip: string,
  ) {
    this.service = service;
    this.opts = opts;
    this.throttle = throttle;
    this.socket = socket;
    this.out = new PacedWriter(socket);
    this.secure = secure;
    this.ip = ip;
    this.attach();
    this.send(`+OK ${opts.hostname} Mailwerk POP3 ready`);
  }

  private attach(): void {
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => this.onData(chunk));
    this.touch();
  }

  private touch(): void {
    // The lock outlives the idle timeout a little, and each command renews it.
    if (this.lockKey) this.service.locks.put(this.lockKey, this.id, this.lockTtlMs).catch(() => undefined);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => this.close('-ERR Autologout: idle too long'),
      this.opts.idleTimeoutMs ?? 10 * 60_000,
    );
    this.timer.unref();
  }

  private onData(chunk: string): void {
    // A closed session reads nothing more (a client may go on sending; its bytes are not kept).
    if (this.state === 'CLOSED') return;
    this.buffer += chunk;
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl === -1) break;
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      if (line.length > MAX_LINE) {
        this.close('-ERR Line too long');
        return;
      }
      this.queue.push(line);
    }
    if (this.buffer.length > MAX_LINE) {
      this.close('-ERR Line too long');
      return;
    }
    void this.drain();
  }

  /** Commands run one at a time, in order (PIPELINING). */
  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length && this.state !== 'CLOSED') {
        this.touch();
        const line = this.queue.shift()!;
        const started = performance.now();
        const verb = line.slice(0, 4).toUpperCase().trimEnd();
        this.lastOk = true;
        try {
          await this.command(line);
          this.opts.onCommand?.(
            VERBS.has(verb) ? verb : 'unknown',
            (performance.now() - started) / 1000,
            this.lastOk ? 'OK' : 'NO',
          );
        } catch (err) {
          // One command's failure ends in its reply; the session (and every other) goes on.
          this.opts.onError?.(
            err,
            `pop3 session ${this.id}: ${line.split(' ')[0]!.slice(0, 16).toUpperCase()}`,
          );
          this.send('-ERR [SYS/TEMP] Internal error, try again later');
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private send(line: string): void {
    if (line.startsWith('-ERR')) this.lastOk = false;
    if (this.state !== 'CLOSED' && !this.socket.destroyed) this.out.write(`${line}\r\n`, 'latin1');
  }

  private async sendData(data: Buffer): Promise<void> {
    if (this.socket.destroyed) return;
    const out = this.out;
    if (!out.write(data)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          out.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        out.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  close(line?: string): void {
    if (line) this.send(line);
    this.state = 'CLOSED';
    this.buffer = '';
    this.queue.length = 0;
    if (this.timer) clearTimeout(this.timer);
    // Stop reading, say goodbye, and do not wait long for a client that will not close its side.
    this.socket.pause();
    this.out.end();
    const socket = this.socket;
    setTimeout(() => socket.destroy(), 2000).unref();
    this.release();
  }

  release(): void {
    const key = this.lockKey;
    if (!key) return;
    this.lockKey = null;
    const locks = this.service.locks;
    locks
      .get(key)
      .then((holder) => (holder === this.id ? locks.reset(key) : undefined))
      .catch(() => undefined);
  }

  private bad(text: string): void {
    this.send(`-ERR ${text}`);
    if (++this.errors >= MAX_ERRORS) this.close('-ERR Too many errors');
  }

  private get canAuth(): boolean {
    return this.secure || this.opts.allowPlaintext;
  }

  private async command(line: string): Promise<void> {
    if (this.saslPending) {
      this.saslPending = false;
      if (line === '*') return this.bad('AUTH cancelled');
      return this.saslPlain(line);
    }
    const sp = line.indexOf(' ');
    const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1);
    if (verb === 'CAPA') return this.capa();
    if (verb === 'NOOP' && this.state === 'TRANSACTION') return this.send('+OK');
    if (verb === 'QUIT') return this.quit();
    if (this.state === 'AUTHORIZATION') {
      switch (verb) {
        case 'STLS':
          return this.stls();
        case 'USER':
          if (!this.canAuth) return this.bad('[AUTH] Sign-in requires TLS: use STLS first');
          if (!arg) return this.bad('USER who?');
          this.userName = arg;
          return this.send('+OK Send PASS');
        case 'PASS': {
          if (!this.canAuth) return this.bad('[AUTH] Sign-in requires TLS: use STLS first');
          const user = this.userName;
          this.userName = null;
          if (!user) return this.bad('USER first');
          return this.login(user, arg);
        }
        case 'AUTH': {
          const [mech, initial] = arg.split(' ');
          if (!mech) return this.send('+OK\r\nPLAIN\r\n.');
          if (!this.canAuth) return this.bad('[AUTH] Sign-in requires TLS: use STLS first');
          if (mech.toUpperCase() !== 'PLAIN') return this.bad('Unsupported mechanism; use PLAIN');
          if (initial === undefined) {
            this.saslPending = true;
            return this.send('+ ');
          }
          return this.saslPlain(initial === '=' ? '' : initial);
        }
        case 'APOP':
          return this.bad('APOP is not supported; use USER/PASS or AUTH PLAIN over TLS');
      }
      return this.bad('Command not valid in this state');
    }
    if (this.state !== 'TRANSACTION') return this.bad('Command not valid in this state');
    switch (verb) {
      case 'STAT': {
        const live = this.entries.filter((e) => !e.deleted);
        return this.send(`+OK ${live.length} ${live.reduce((n, e) => n + e.size, 0)}`);
      }
      case 'LIST':
      case 'UIDL': {
        const show = (e: Entry, n: number) =>
          `${n} ${verb === 'LIST' ? e.size : uidl(e.uid, this.inbox!.uidValidity)}`;
        if (arg) {
          const found = this.entry(arg);
          if (typeof found === 'string') return this.bad(found);
          return this.send(`+OK ${show(found, Number(arg))}`);
        }
        const lines = this.entries.flatMap((e, i) => (e.deleted ? [] : [show(e, i + 1)]));
        return this.send(['+OK', ...lines, '.'].join('\r\n'));
      }
      case 'RETR':
      case 'TOP': {
        const [n, k] = arg.split(' ');
        const found = this.entry(n ?? '');
        if (typeof found === 'string') return this.bad(found);
        if (verb === 'TOP' && !/^\d{1,9}$/.test(k ?? ''))
          return this.bad('TOP needs a message number and a line count');
        let data: Buffer;
        try {
          data = await this.opts.store.blobs.get(found.blobId);
        } catch {
          return this.bad('[SYS/TEMP] That message is no longer available');
        }
        const body = verb === 'TOP' ? topOf(data, Number(k)) : data;
        this.send(verb === 'TOP' ? '+OK Top of message follows' : `+OK ${found.size} octets`);
        await this.sendData(dotStuff(body, 'lf'));
        if (verb === 'RETR') await this.markSeen(found);
        return;
      }
      case 'DELE': {
        const found = this.entry(arg);
        if (typeof found === 'string') return this.bad(found);
        found.deleted = true;
        return this.send(`+OK Message ${arg} deleted`);
      }
      case 'RSET': {
        for (const e of this.entries) e.deleted = false;
        return this.send(`+OK Maildrop has ${this.entries.length} messages`);
      }
    }
    return this.bad('Unknown command');
  }

  /** The entry for a message number, or the reason it cannot be used. */
  private entry(arg: string): Entry | string {
    if (!/^\d{1,9}$/.test(arg)) return 'Invalid message number';
    const e = this.entries[Number(arg) - 1];
    if (!e) return 'No such message';
    if (e.deleted) return 'Message already deleted';
    return e;
  }

  private capa(): void {
    const lines = [
      '+OK Capability list follows',
      'TOP',
      'UIDL',
      'RESP-CODES',
      'AUTH-RESP-CODE',
      'PIPELINING',
      'EXPIRE NEVER',
      ...(this.state === 'AUTHORIZATION' && this.canAuth ? ['USER', 'SASL PLAIN'] : []),
      ...(this.state === 'AUTHORIZATION' && !this.secure ? ['STLS'] : []),
      'IMPLEMENTATION Mailwerk',
      '.',
    ];
    this.send(lines.join('\r\n'));
  }

  private stls(): void {
    if (this.secure) {
      this.bad('Already using TLS');
      return;
    }
    this.send('+OK Begin TLS negotiation');
    // Anything the client sent after STLS in the clear is dropped (command injection, RFC 2595 §4).
    this.buffer = '';
    this.queue.length = 0;
    this.socket.removeAllListeners('data');
    const plain = this.socket;
    const tls = new TLSSocket(plain, { isServer: true, secureContext: this.service.tlsContext });
    tls.on('error', () => plain.destroy());
    tls.once('secure', () => {
      this.socket = tls;
      this.out = new PacedWriter(tls);
      this.secure = true;
      this.userName = null;
      this.attach();
    });
  }

  private async saslPlain(b64: string): Promise<void> {
    const decoded = Buffer.from(b64, 'base64').toString('utf8').split('\0');
    if (decoded.length !== 3) return this.bad('[AUTH] Invalid PLAIN response');
    const [authzid, authcid, password] = decoded as [string, string, string];
    if (authzid && authzid.toLowerCase() !== authcid.toLowerCase())
      return this.bad('[AUTH] Signing in as another user is not allowed');
    return this.login(authcid, password);
  }

  private async login(user: string, password: string): Promise<void> {
    const { store } = this.opts;
    const v = await checkLogin({
      throttle: this.throttle,
      service: 'pop3',
      session: this.id,
      ip: this.ip,
      user,
      password,
      find: (u) => store.getAccountByAddress(normalizeAddress(u)),
      rehash: async (a, passwordHash) => void (await store.updateAccount(a.id, { passwordHash })),
    });
    if (!v.ok)
      return this.bad(
        v.reason === 'blocked'
          ? '[SYS/TEMP] Too many failed sign-ins from your address; try again later'
          : '[AUTH] Invalid user name or password',
      );
    const usable = v.account;
    const inbox = await store.getMailbox(usable.id, 'INBOX');
    if (!inbox) return this.bad('[SYS/PERM] This account has no INBOX');
    const key = `pop3:lock:${inbox.id}`;
    const holder = await this.service.locks.put(key, this.id, this.lockTtlMs, true);
    if (holder !== this.id) return this.bad('[IN-USE] Another POP3 session is using this mailbox');
    this.lockKey = key;
    this.account = usable;
    this.inbox = inbox;
    this.entries = (await store.listMessages(inbox.id)).map((m) => ({
      uid: m.uid,
      size: m.size,
      blobId: m.blobId,
      deleted: false,
    }));
    this.state = 'TRANSACTION';
    const size = this.entries.reduce((n, e) => n + e.size, 0);
    this.opts.onEvent?.('pop3 login', {
      user: usable.address,
      client: this.ip,
      messages: this.entries.length,
    });
    this.send(`+OK Maildrop has ${this.entries.length} messages (${size} octets)`);
  }

  private async markSeen(e: Entry): Promise<void> {
    const r = await this.opts.store.updateFlags(this.inbox!.id, [e.uid], { op: 'add', flags: ['\\Seen'] });
    const m = r.updated[0];
    if (m)
      await this.publish({
        type: 'message.flags',
        accountId: this.account!.id,
        mailboxId: this.inbox!.id,
        uids: [m.uid],
        modseq: m.modseq,
      });
  }

  private async publish(event: MailEvent): Promise<void> {
    await this.opts.bus.publish(event).catch((err) => this.opts.onError?.(err, 'bus'));
  }

  private async quit(): Promise<void> {
    if (this.state !== 'TRANSACTION')
      return this.close(`+OK ${this.opts.hostname} Mailwerk POP3 signing off`);
    this.state = 'UPDATE';
    const doomed = this.entries.filter((e) => e.deleted).map((e) => e.uid);
    try {
      const removed = doomed.length ? await this.opts.store.expungeMessages(this.inbox!.id, doomed) : [];
      if (removed.length)
        await this.publish({
          type: 'message.expunge',
          accountId: this.account!.id,
          mailboxId: this.inbox!.id,
          uids: removed,
          modseq: 0,
        });
      this.opts.onEvent?.('pop3 quit', {
        user: this.account!.address,
        client: this.ip,
        deleted: removed.length,
      });
      this.state = 'TRANSACTION';
      this.close(`+OK Signing off (${removed.length} messages deleted)`);
    } catch (err) {
      this.opts.onError?.(err, `pop3 session ${this.id}: UPDATE`);
      this.state = 'TRANSACTION';
      this.close('-ERR [SYS/TEMP] Could not delete the messages; nothing was deleted');
    }
  }
}
