/**
 * Hands a queued message to an LMTP server (RFC 2033: our MDA, or Dovecot's)
 * and reads one reply per recipient. Our own client rather than nodemailer's
 * SMTP client in LMTP mode, because that one rewrites the message (every
 * line ending becomes CRLF, so `\r\r\n` is not kept), hides the server's
 * success replies, and sends a non-ASCII envelope to a server that did not
 * offer SMTPUTF8.
 *
 * - The message goes byte for byte: only a dot that starts a line gets a
 *   second one (RFC 5321 §4.5.2), and a last line without CRLF gets one.
 * - A non-ASCII sender or recipient toward a server without SMTPUTF8 is
 *   answered here 553 5.6.7 (RFC 6531 §3.4: no downgrade), as outbound does;
 *   the server would otherwise store `Return-Path: <>` or worse.
 * - ENVID (RFC 3461 §4.4, as xtext) and BODY=8BITMIME only when offered.
 * - Replies are the server's own lines, so the queue log shows what it said.
 * - Every read has a deadline; a reply is bounded (lines and length), so a
 *   broken peer costs a timeout, never memory.
 */
import { isAscii } from 'node:buffer';
import { createConnection, type Socket } from 'node:net';
import { dotStuff } from '@mailwerk/mime';

/** `unix:/path/to/socket` or `host:port`. */
export type LmtpTarget = string;

export interface LmtpReply {
  address: string;
  code: number;
  /** The server's reply, lines joined by a space (`250 2.0.0 <x@y> saved`). */
  text: string;
}

export interface LmtpMessage {
  sender: string;
  recipients: string[];
  data: Buffer;
  /** Passed as ENVID when the server offers DSN: our MDA takes it as the delivery key. */
  envid: string;
}

interface Reply {
  code: number;
  text: string;
}

function parseTarget(target: LmtpTarget): { path: string } | { host: string; port: number } {
  if (target.startsWith('unix:')) return { path: target.slice(5) };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  if (!m) throw new Error(`invalid LMTP target "${target}": use unix:/path or host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

const MAX_REPLY_LINE = 4096;
const MAX_REPLY_LINES = 64;
const nonAscii = (s: string) => /[^\x00-\x7f]/.test(s);

/** RFC 3461 §4: xtext, for ENVID. */
export function xtext(s: string): string {
  return Buffer.from(s, 'utf8').reduce(
    (out, b) =>
      out +
      (b >= 33 && b <= 126 && b !== 0x2b && b !== 0x3d
        ? String.fromCharCode(b)
        : `+${b.toString(16).toUpperCase().padStart(2, '0')}`),
    '',
  );
}

/**
 * The recipients the server took, given the replies to MAIL and to each RCPT in order; the others get
 * their refusal (or MAIL's) in `out`.
 */
function acceptedOf(sendTo: string[], replies: Reply[], out: Map<string, Reply>): string[] {
  const mail = replies[0]!;
  const accepted: string[] = [];
  sendTo.forEach((address, i) => {
    const r = replies[i + 1]!;
    if (mail.code !== 250) out.set(address, mail);
    else if (r.code !== 250) out.set(address, r);
    else accepted.push(address);
  });
  return accepted;
}

/** One LMTP session: a line reader with deadlines over a socket. */
class Connection {
  private buffer = '';
  private readonly replies: Reply[] = [];
  private lines: string[] = [];
  private waiter: ((r: Reply | Error) => void) | null = null;
  private failure: Error | null = null;
  capabilities = new Set<string>();

  readonly socket: Socket;
  private readonly timeoutMs: number;

  constructor(socket: Socket, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('LMTP server closed the connection')));
  }

  get dead(): boolean {
    return this.failure !== null;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.destroy();
    const w = this.waiter;
    this.waiter = null;
    w?.(err);
  }

  private onData(d: string): void {
    this.buffer += d;
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl === -1) break;
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
      if (!m || line.length > MAX_REPLY_LINE || this.lines.length >= MAX_REPLY_LINES) {
        this.fail(new Error(`LMTP server sent a malformed reply: ${JSON.stringify(line.slice(0, 200))}`));
        return;
      }
      this.lines.push(line);
      if (m[2] === '-') continue;
      const reply = { code: Number(m[1]), text: this.lines.join(' ') };
      this.lines = [];
      this.replies.push(reply);
    }
    if (this.buffer.length > MAX_REPLY_LINE) {
      this.fail(new Error('LMTP server sent an overlong reply line'));
      return;
    }
    if (this.waiter && this.replies.length) {
      const w = this.waiter;
      this.waiter = null;
      w(this.replies.shift()!);
    }
  }

  /** The next reply; rejects on a dead connection or past the deadline. */
  read(): Promise<Reply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new Error(`LMTP server did not reply within ${this.timeoutMs / 1000} s`)),
        this.timeoutMs,
      );
      this.waiter = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
    });
  }

  write(data: string | Buffer): void {
    if (this.failure) return;
    this.socket.write(data);
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  quit(): void {
    if (this.failure) return;
    this.write('QUIT\r\n');
    this.socket.end();
    this.failure = new Error('closed');
  }
}

function connectSocket(
  target: { path: string } | { host: string; port: number },
  timeoutMs: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      'path' in target ? createConnection(target.path) : createConnection(target.port, target.host);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('LMTP connect timeout'));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      // Small commands with replies in between: Nagle plus delayed ACKs would add ~40 ms to each.
      if (!('path' in target)) socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * A pool of LMTP connections to one server, reused across messages: setting
 * up a session costs a round trip per command, far more than delivering a
 * message over an open one.
 */
export class LmtpClient {
  private readonly target: ReturnType<typeof parseTarget>;
  private readonly hostname: string;
  private readonly idle: Connection[] = [];
  private readonly idleTimers = new Map<Connection, NodeJS.Timeout>();
  /** How long an unused connection is kept (Postfix keeps its cached ones 2 s). */
  private readonly idleMs: number;
  private readonly timeoutMs: number;
  private closed = false;

  constructor(target: LmtpTarget, options: { hostname: string; timeoutMs?: number; idleMs?: number }) {
    this.target = parseTarget(target);
    this.idleMs = options.idleMs ?? 2000;
    this.hostname = options.hostname;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  private async open(): Promise<Connection> {
    const socket = await connectSocket(this.target, Math.min(this.timeoutMs, 15_000));
    const conn = new Connection(socket, Math.min(this.timeoutMs, 15_000));
    const greeting = await conn.read();
    if (greeting.code !== 220) throw new Error(`LMTP server refused the session: ${greeting.text}`);
    const lhlo = await conn.command(`LHLO ${this.hostname}`);
    if (lhlo.code !== 250) throw new Error(`LMTP server refused LHLO: ${lhlo.text}`);
    // "250-name 250-PIPELINING 250 DSN" joined: every word after a code is a keyword (or its argument).
    for (const m of lhlo.text.matchAll(/250[ -]([A-Z0-9][A-Z0-9-]*)/gi))
      conn.capabilities.add(m[1]!.toUpperCase());
    socket.on('close', () => this.drop(conn));
    return conn;
  }

  private drop(conn: Connection): void {
    clearTimeout(this.idleTimers.get(conn));
    this.idleTimers.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** One transaction on an open session. */
  private async transact(conn: Connection, msg: LmtpMessage): Promise<LmtpReply[]> {
    const caps = conn.capabilities;
    const out = new Map<string, Reply>();
    const utf8 = caps.has('SMTPUTF8');
    if (!utf8 && nonAscii(msg.sender)) {
      const refusal = {
        code: 553,
        text: `553 5.6.7 the LMTP server does not offer SMTPUTF8, needed for the sender <${msg.sender}> (RFC 6531 §3.4)`,
      };
      return msg.recipients.map((address) => ({ address, ...refusal }));
    }
    const sendTo = msg.recipients.filter((address) => {
      if (utf8 || !nonAscii(address)) return true;
      out.set(address, {
        code: 553,
        text: `553 5.6.7 the LMTP server does not offer SMTPUTF8, needed for <${address}> (RFC 6531 §3.4)`,
      });
      return false;
    });
    if (sendTo.length > 0) {
      const params = [
        ...(caps.has('8BITMIME') && !isAscii(msg.data) ? ['BODY=8BITMIME'] : []),
        ...(utf8 && [msg.sender, ...sendTo].some(nonAscii) ? ['SMTPUTF8'] : []),
        ...(caps.has('DSN') && msg.envid ? [`ENVID=${xtext(msg.envid)}`] : []),
      ];
      const pipelining = caps.has('PIPELINING');
      const mail = `MAIL FROM:<${msg.sender}>${params.map((p) => ` ${p}`).join('')}`;
      if (pipelining && caps.has('CHUNKING')) return this.chunked(conn, msg, mail, sendTo, out);
      // RFC 2920 §3.1: with PIPELINING the whole group goes at once, DATA last in it (one round trip
      // fewer a message); without, one command per reply, and DATA only for accepted recipients.
      const commands = [mail, ...sendTo.map((a) => `RCPT TO:<${a}>`), ...(pipelining ? ['DATA'] : [])];
      if (pipelining) conn.write(commands.map((c) => `${c}\r\n`).join(''));
      const replies: Reply[] = [];
      for (const c of commands) replies.push(pipelining ? await conn.read() : await conn.command(c));
      const accepted = acceptedOf(sendTo, replies, out);
      const pipelinedData = pipelining ? replies.at(-1)! : null;
      if (accepted.length === 0) {
        // A server that took DATA anyway gets an empty message, which it has nobody to deliver to
        // (RFC 2920 §3.1), and the session ends there (what it answers to it is not worth guessing);
        // else the transaction is reset for the next message.
        if (pipelinedData?.code === 354) {
          conn.write('.\r\n');
          conn.quit();
        } else await conn.command('RSET');
      } else {
        const data = pipelinedData ?? (await conn.command('DATA'));
        if (data.code !== 354) {
          for (const a of accepted) out.set(a, data);
        } else {
          conn.write(dotStuff(msg.data, 'crlf'));
          // RFC 2033 §4.2: one reply per accepted recipient, in order.
          for (const a of accepted) out.set(a, await conn.read());
        }
      }
    }
    return msg.recipients.map((address) => ({ address, ...out.get(address)! }));
  }

  /**
   * RFC 3030 with PIPELINING: MAIL, RCPT and `BDAT <size> LAST` with the message, undotted, in one
   * write; the server reads the chunk whatever it answered before it, then answers once per accepted
   * recipient (RFC 2033 §4.2), or once when there is none (then RSET ends the transaction).
   */
  private async chunked(
    conn: Connection,
    msg: LmtpMessage,
    mail: string,
    sendTo: string[],
    out: Map<string, Reply>,
  ): Promise<LmtpReply[]> {
    const head = [mail, ...sendTo.map((a) => `RCPT TO:<${a}>`), `BDAT ${msg.data.length} LAST`];
    // Commands in UTF-8, as conn.write sends them on the DATA path (SMTPUTF8 addresses, RFC 6531).
    conn.write(Buffer.concat([Buffer.from(head.map((c) => `${c}\r\n`).join(''), 'utf8'), msg.data]));
    const replies: Reply[] = [];
    for (let i = 0; i < sendTo.length + 1; i++) replies.push(await conn.read());
    const accepted = acceptedOf(sendTo, replies, out);
    if (accepted.length === 0) {
      // BDAT refused (no recipient); the transaction MAIL opened is still open there.
      await conn.read();
      await conn.command('RSET');
    }
    for (const a of accepted) out.set(a, await conn.read());
    return msg.recipients.map((address) => ({ address, ...out.get(address)! }));
  }

  /**
   * Delivers one message; resolves with a reply for every recipient. Rejects
   * only when no recipient got an answer (connection refused, protocol error),
   * which the caller treats as a temporary failure for all of them. A pooled
   * connection that turns out dead is replaced once; should the message have
   * gone through before it died, the ENVID keeps our MDA from storing it twice.
   */
  async deliver(msg: LmtpMessage): Promise<LmtpReply[]> {
    if (this.closed) throw new Error('LMTP client closed');
    let pooled = this.idle.pop();
    while (pooled?.dead) pooled = this.idle.pop();
    if (pooled) {
      clearTimeout(this.idleTimers.get(pooled));
      this.idleTimers.delete(pooled);
    }
    let conn = pooled;
    let replies: LmtpReply[];
    try {
      conn ??= await this.open();
      replies = await this.transact(conn, msg);
    } catch (err) {
      conn?.socket.destroy();
      if (!pooled) throw err;
      conn = await this.open();
      replies = await this.transact(conn, msg);
    }
    this.release(conn);
    return replies;
  }

  /**
   * Whether the server answers a session now (greeting and LHLO); the session is kept in the pool for
   * the next message. Never rejects.
   */
  async reachable(): Promise<boolean> {
    if (this.closed) return false;
    try {
      this.release(await this.open());
      return true;
    } catch {
      return false;
    }
  }

  private release(conn: Connection): void {
    if (this.closed || conn.dead) {
      conn.quit();
      return;
    }
    this.idle.push(conn);
    const timer = setTimeout(() => {
      this.drop(conn);
      conn.quit();
    }, this.idleMs);
    timer.unref();
    this.idleTimers.set(conn, timer);
  }

  close(): void {
    this.closed = true;
    for (const conn of this.idle.splice(0)) {
      clearTimeout(this.idleTimers.get(conn));
      conn.quit();
    }
    this.idleTimers.clear();
  }
}

/** One message over a connection of its own (tests, one-off deliveries). */
export async function deliverOverLmtp(
  target: LmtpTarget,
  msg: LmtpMessage & { hostname: string },
): Promise<LmtpReply[]> {
  const client = new LmtpClient(target, { hostname: msg.hostname });
  try {
    return await client.deliver(msg);
  } finally {
    client.close();
  }
}
