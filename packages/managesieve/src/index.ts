/**
 * ManageSieve (RFC 5804) on 4190: users upload, check, list, activate and remove their Sieve scripts
 * from Thunderbird's and Roundcube's Sieve editors or sieve-connect. Scripts are checked by
 * @mailwerk/sieve before they are stored (its errors, with line and column, are the NO's text); the
 * store keeps them. STARTTLS, SASL PLAIN and LOGIN, the same sign-in throttle and the same rule as IMAP:
 * no password before TLS unless the admin allows it.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import { AuthThrottle, checkLogin } from '@mailwerk/auth';
import { ConnectionLimiter } from '@mailwerk/limits';
import { compile, EXTENSIONS, MAX_SCRIPT_SIZE, SieveError, scriptNameProblem } from '@mailwerk/sieve';
import type { Account, MailStore } from '@mailwerk/store';
import { normalizeAddress } from '@mailwerk/store';
import { PacedWriter } from '@mailwerk/tls';
import { CommandError, encodeString, Framer, parseCommand, type Value } from './command.ts';

export { CommandError, encodeString, Framer, parseCommand } from './command.ts';

export interface ManageSieveOptions {
  store: MailStore;
  hostname: string;
  tls: { key: string; cert: string };
  /** Allow AUTHENTICATE before TLS (loopback tests only). */
  allowPlaintext: boolean;
  throttle?: AuthThrottle;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** The largest script (octets). */
  maxScriptSize?: number;
  /** Scripts per account. */
  maxScripts?: number;
  idleTimeoutMs?: number;
  onError?: (err: unknown, context: string) => void;
}

const MAX_LINE = 8 * 1024;
const MAX_ERRORS = 20;

export class ManageSieveService {
  private readonly opts: ManageSieveOptions;
  readonly throttle: AuthThrottle;
  tlsContext: SecureContext;
  private readonly servers = new Set<Server>();
  private readonly sessions = new Set<Session>();
  private readonly limiter: ConnectionLimiter;

  constructor(options: ManageSieveOptions) {
    this.opts = options;
    this.throttle = options.throttle ?? new AuthThrottle();
    this.limiter = new ConnectionLimiter(options.maxConnections ?? 1000, options.maxConnectionsPerIp ?? 20);
    this.tlsContext = createSecureContext({ key: options.tls.key, cert: options.tls.cert });
  }

  setTls(tls: { key: string; cert: string }): void {
    this.tlsContext = createSecureContext({ key: tls.key, cert: tls.cert });
  }

  get maxScriptSize(): number {
    return this.opts.maxScriptSize ?? MAX_SCRIPT_SIZE;
  }

  server(): Server {
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      const refused = this.limiter.admit(ip);
      if (refused) {
        socket.end('BYE (TRYLATER) "Too many connections"\r\n');
        return;
      }
      socket.once('close', () => this.limiter.release(ip));
      const session = new Session(this, this.opts, socket, ip);
      this.sessions.add(session);
      socket.once('close', () => this.sessions.delete(session));
    });
    server.on('error', (err) => this.opts.onError?.(err, 'managesieve'));
    this.servers.add(server);
    return server;
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.bye('Server shutting down');
    await Promise.all([...this.servers].map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/** A SASL answer's parts (a quoted string, or a literal) as one text. */
const joinParts = (parts: Array<string | Buffer>): string => parts.map((p) => p.toString()).join('');

type Reply = { ok: true; text?: string; code?: string } | { ok: false; text: string; code?: string };

class Session {
  private readonly service: ManageSieveService;
  private readonly opts: ManageSieveOptions;
  private socket: Socket;
  private out: PacedWriter;
  private secure = false;
  private account: Account | null = null;
  private readonly ip: string;
  private readonly id = randomBytes(9).toString('base64url');
  private readonly framer: Framer;
  private readonly queue: Array<Array<string | Buffer>> = [];
  private busy = false;
  private errors = 0;
  private closed = false;
  /** LOGOUT was answered: the connection ends once that answer is out. */
  private ending = false;
  private timer: NodeJS.Timeout | null = null;
  /** A SASL exchange waiting for the client's next string. */
  private pending: ((line: string) => void) | null = null;

  constructor(service: ManageSieveService, opts: ManageSieveOptions, socket: Socket, ip: string) {
    this.service = service;
    this.opts = opts;
    this.socket = socket;
    this.out = new PacedWriter(socket);
    this.ip = ip;
    this.framer = new Framer({ maxLine: MAX_LINE, maxLiteral: service.maxScriptSize });
    this.attach();
    this.capabilities();
    this.send('OK "Mailwerk ManageSieve ready"');
  }

  private attach(): void {
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.once('close', () => this.close());
    this.touch();
  }

  private touch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.bye('Idle for too long'), this.opts.idleTimeoutMs ?? 30 * 60_000);
    this.timer.unref();
  }

  private send(text: string): void {
    if (!this.closed) this.out.write(`${text}\r\n`);
  }

  bye(text: string): void {
    if (this.closed) return;
    this.send(`BYE ${encodeString(text)}`);
    this.closed = true;
    this.out.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.touch();
    try {
      for (const c of this.framer.push(chunk)) {
        // A SASL step waiting for the client's answer takes the next line itself.
        const answer = this.pending;
        if (answer) {
          this.pending = null;
          answer(joinParts(c.parts));
        } else this.queue.push(c.parts);
      }
    } catch (err) {
      this.bye(err instanceof CommandError ? err.message : 'Protocol error');
      return;
    }
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (!this.closed && this.queue.length) await this.run(this.queue.shift()!);
    } finally {
      this.busy = false;
    }
  }

  private reply(r: Reply): void {
    const code = r.code ? ` (${r.code})` : '';
    const text = r.text === undefined ? '' : ` ${encodeString(r.text)}`;
    this.send(`${r.ok ? 'OK' : 'NO'}${code}${text}`);
    if (!r.ok && ++this.errors > MAX_ERRORS) this.bye('Too many errors');
  }

  private capabilities(): void {
    const mechanisms = this.secure || this.opts.allowPlaintext ? 'PLAIN LOGIN' : '';
    this.send(`"IMPLEMENTATION" "Mailwerk"`);
    this.send(`"SIEVE" "${EXTENSIONS.join(' ')}"`);
    this.send(`"SASL" "${this.account ? '' : mechanisms}"`);
    if (!this.secure) this.send('"STARTTLS"');
    if (this.account) this.send(`"OWNER" ${encodeString(this.account.address)}`);
    this.send(`"MAXREDIRECTS" "4"`);
    this.send('"VERSION" "1.0"');
  }

  private async run(parts: Array<string | Buffer>): Promise<void> {
    let name: string;
    let args: Value[];
    try {
      ({ name, args } = parseCommand(parts));
    } catch (err) {
      this.reply({ ok: false, text: err instanceof CommandError ? err.message : 'Syntax error' });
      return;
    }
    try {
      this.reply(await this.command(name, args));
    } catch (err) {
      this.opts.onError?.(err, `managesieve ${name}`);
      this.reply({ ok: false, code: 'TRYLATER', text: 'Internal error, try again later' });
    }
    if (this.ending) {
      this.closed = true;
      this.out.end();
    }
  }

  private str(args: Value[], i: number): string {
    const v = args[i];
    if (typeof v !== 'string') throw new CommandError(`Argument ${i + 1} must be a string`);
    return v;
  }

  private async command(name: string, args: Value[]): Promise<Reply> {
    const { store } = this.opts;
    const arity = (n: number, m = n) => {
      if (args.length < n || args.length > m)
        throw new CommandError(`${name} takes ${n === m ? n : `${n} to ${m}`} arguments`);
    };
    try {
      switch (name) {
        case 'CAPABILITY':
          arity(0);
          this.capabilities();
          return { ok: true };
        case 'NOOP':
          arity(0, 1);
          return args.length
            ? { ok: true, code: `TAG ${encodeString(String(args[0]))}`, text: 'Done' }
            : { ok: true, text: 'Done' };
        case 'LOGOUT':
          this.ending = true;
          return { ok: true, text: 'Bye' };
        case 'STARTTLS':
          arity(0);
          if (this.secure) return { ok: false, text: 'Already using TLS' };
          await this.startTls();
          return { ok: true, text: 'TLS active' } as Reply;
        case 'AUTHENTICATE':
          arity(1, 2);
          return await this.authenticate(this.str(args, 0).toUpperCase(), args[1] as string | undefined);
        case 'UNAUTHENTICATE':
          arity(0);
          if (!this.account) return { ok: false, text: 'Not signed in' };
          this.account = null;
          return { ok: true };
      }
      if (!this.account) return { ok: false, text: `${name}: sign in first` };
      const id = this.account.id;
      switch (name) {
        case 'LISTSCRIPTS': {
          arity(0);
          for (const s of await store.listSieveScripts(id))
            this.send(`${encodeString(s.name)}${s.active ? ' ACTIVE' : ''}`);
          return { ok: true };
        }
        case 'GETSCRIPT': {
          arity(1);
          const s = await store.getSieveScript(id, this.str(args, 0));
          if (!s) return { ok: false, code: 'NONEXISTENT', text: 'There is no script of that name' };
          this.send(`{${Buffer.byteLength(s.content)}}\r\n${s.content}`);
          return { ok: true };
        }
        case 'CHECKSCRIPT':
          arity(1);
          return this.check(this.str(args, 0)) ?? { ok: true };
        case 'HAVESPACE': {
          arity(2);
          const scriptName = this.str(args, 0);
          const size = args[1];
          if (typeof size !== 'number') throw new CommandError('HAVESPACE needs a size');
          return await this.space(id, scriptName, size);
        }
        case 'PUTSCRIPT': {
          arity(2);
          const scriptName = this.checkName(this.str(args, 0));
          const content = this.str(args, 1);
          const space = await this.space(id, scriptName, Buffer.byteLength(content));
          if (!space.ok) return space;
          const bad = this.check(content);
          if (bad) return bad;
          await store.putSieveScript(id, scriptName, content);
          return { ok: true };
        }
        case 'SETACTIVE': {
          arity(1);
          const scriptName = this.str(args, 0);
          if (scriptName !== '' && !(await store.getSieveScript(id, scriptName)))
            return { ok: false, code: 'NONEXISTENT', text: 'There is no script of that name' };
          await store.setActiveSieveScript(id, scriptName === '' ? null : scriptName);
          return { ok: true };
        }
        case 'DELETESCRIPT': {
          arity(1);
          const s = await store.getSieveScript(id, this.str(args, 0));
          if (!s) return { ok: false, code: 'NONEXISTENT', text: 'There is no script of that name' };
          if (s.active) return { ok: false, code: 'ACTIVE', text: 'The active script cannot be deleted' };
          await store.deleteSieveScript(id, s.name);
          return { ok: true };
        }
        case 'RENAMESCRIPT': {
          arity(2);
          const from = await store.getSieveScript(id, this.str(args, 0));
          const to = this.checkName(this.str(args, 1));
          if (!from) return { ok: false, code: 'NONEXISTENT', text: 'There is no script of that name' };
          if (await store.getSieveScript(id, to))
            return { ok: false, code: 'ALREADYEXISTS', text: 'A script of the new name exists' };
          // Written under the new name first, so a failure half-way leaves both, never neither.
          await store.putSieveScript(id, to, from.content);
          if (from.active) await store.setActiveSieveScript(id, to);
          await store.deleteSieveScript(id, from.name);
          return { ok: true };
        }
      }
      return { ok: false, text: `Unknown command ${name}` };
    } catch (err) {
      if (err instanceof CommandError) return { ok: false, text: err.message };
      throw err;
    }
  }

  private checkName(name: string): string {
    const problem = scriptNameProblem(name);
    if (problem) throw new CommandError(`Not a usable script name: ${problem}`);
    return name;
  }

  private check(content: string): Reply | null {
    try {
      compile(content);
      return null;
    } catch (err) {
      if (err instanceof SieveError) return { ok: false, text: err.message };
      throw err;
    }
  }

  private async space(accountId: string, name: string, size: number): Promise<Reply> {
    if (size > this.service.maxScriptSize)
      return {
        ok: false,
        code: 'QUOTA/MAXSIZE',
        text: `Scripts are limited to ${this.service.maxScriptSize} octets`,
      };
    const scripts = await this.opts.store.listSieveScripts(accountId);
    if (!scripts.some((s) => s.name === name) && scripts.length >= (this.opts.maxScripts ?? 32))
      return { ok: false, code: 'QUOTA/MAXSCRIPTS', text: 'Too many scripts; delete one first' };
    return { ok: true };
  }

  private async startTls(): Promise<void> {
    this.send('OK "Begin TLS negotiation now"');
    // Whatever the client sent after STARTTLS in the clear is dropped.
    this.queue.length = 0;
    this.socket.removeAllListeners('data');
    const plain = this.socket;
    const tls = new TLSSocket(plain, { isServer: true, secureContext: this.service.tlsContext });
    tls.on('error', () => plain.destroy());
    await new Promise<void>((resolve) => {
      tls.once('secure', () => resolve());
      plain.once('close', () => resolve());
    });
    this.socket = tls;
    this.out = new PacedWriter(tls);
    this.secure = true;
    this.attach();
    // RFC 5804 §2.2: the capabilities again, unasked, once TLS is up.
    this.capabilities();
    // The OK that follows them is the reply to STARTTLS the caller sends; it belongs after the capabilities.
  }

  /** The client's next line, for a SASL step. */
  private nextString(challenge: string): Promise<string> {
    this.send(encodeString(challenge));
    const unquote = (line: string) => {
      const v = line.trim();
      return v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
    };
    // Sent already, behind the command (a client that does not wait for the challenge).
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(unquote(joinParts(queued)));
    return new Promise((resolve) => {
      this.pending = (line) => resolve(unquote(line));
    });
  }

  private async authenticate(mechanism: string, initial: string | undefined): Promise<Reply> {
    if (this.account) return { ok: false, text: 'Already signed in' };
    if (!this.secure && !this.opts.allowPlaintext)
      return { ok: false, code: 'ENCRYPT-NEEDED', text: 'Use STARTTLS before signing in' };
    let user: string;
    let password: string;
    const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');
    if (mechanism === 'PLAIN') {
      const response = initial ?? (await this.nextString(''));
      if (response === '*') return { ok: false, text: 'Authentication cancelled' };
      const fields = b64(response).split('\0');
      if (fields.length !== 3) return { ok: false, text: 'Invalid PLAIN response' };
      const [authz, authc, pass] = fields as [string, string, string];
      if (authz && authz.toLowerCase() !== authc.toLowerCase())
        return { ok: false, text: 'Signing in as another user is not allowed' };
      user = authc;
      password = pass;
    } else if (mechanism === 'LOGIN') {
      const u = initial ?? (await this.nextString(Buffer.from('Username:').toString('base64')));
      if (u === '*') return { ok: false, text: 'Authentication cancelled' };
      const p = await this.nextString(Buffer.from('Password:').toString('base64'));
      if (p === '*') return { ok: false, text: 'Authentication cancelled' };
      user = b64(u);
      password = b64(p);
    } else return { ok: false, text: `Unsupported mechanism ${mechanism}` };
    const { store } = this.opts;
    const v = await checkLogin({
      throttle: this.service.throttle,
      service: 'managesieve',
      session: this.id,
      ip: this.ip,
      user,
      password,
      find: (u) => store.getAccountByAddress(normalizeAddress(u)),
      rehash: async (a, passwordHash) => void (await store.updateAccount(a.id, { passwordHash })),
    });
    if (!v.ok)
      return v.reason === 'blocked'
        ? { ok: false, code: 'TRYLATER', text: 'Too many failed sign-ins from your address; try again later' }
        : { ok: false, text: 'Invalid user name or password' };
    this.account = v.account;
    return { ok: true, text: 'Signed in' };
  }
}
