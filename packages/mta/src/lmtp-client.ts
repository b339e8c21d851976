/**
 * Hands a queued message to an LMTP server (our MDA, or Dovecot's) with
 * nodemailer's SMTP client in LMTP mode, and reads one reply per recipient.
 */
import { createConnection, type Socket } from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

/** `unix:/path/to/socket` or `host:port`. */
export type LmtpTarget = string;

export interface LmtpReply {
  address: string;
  code: number;
  text: string;
}

function parseTarget(target: LmtpTarget): { path: string } | { host: string; port: number } {
  if (target.startsWith('unix:')) return { path: target.slice(5) };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  if (!m) throw new Error(`invalid LMTP target "${target}": use unix:/path or host:port`);
  return { host: m[1]!, port: Number(m[2]) };
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

const codeOf = (line: string) => Number(/^(\d{3})/.exec(line)?.[1] ?? 451);

export interface LmtpMessage {
  sender: string;
  recipients: string[];
  data: Buffer;
  /** Passed as ENVID: the MDA uses our queue id to make redelivery idempotent. */
  envid: string;
}

type Rejected = Array<{ recipient?: string; response?: string }>;

/**
 * A pool of LMTP connections to one MDA, reused across messages: setting up a
 * session costs a round trip per command plus the server's early-talker pause
 * (100 ms in smtp-server), far more than delivering a message over an open one.
 */
export class LmtpClient {
  private readonly target: ReturnType<typeof parseTarget>;
  private readonly hostname: string;
  private readonly idle: SMTPConnection[] = [];
  private readonly idleTimers = new Map<SMTPConnection, NodeJS.Timeout>();
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

  private async open(): Promise<SMTPConnection> {
    const socket = await connectSocket(this.target, Math.min(this.timeoutMs, 15_000));
    const conn = new SMTPConnection({
      connection: socket,
      lmtp: true,
      name: this.hostname,
      ignoreTLS: true,
      greetingTimeout: 15_000,
      socketTimeout: this.timeoutMs,
      logger: false,
    });
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => {
        conn.off('error', reject);
        resolve();
      });
    });
    // An idle connection the server closes is simply dropped from the pool.
    conn.on('error', () => this.discard(conn));
    conn.once('end', () => this.discard(conn));
    return conn;
  }

  private discard(conn: SMTPConnection): void {
    clearTimeout(this.idleTimers.get(conn));
    this.idleTimers.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    conn.close();
  }

  private sendOn(conn: SMTPConnection, msg: LmtpMessage): Promise<Rejected> {
    return new Promise((resolve, reject) => {
      conn.send(
        { from: msg.sender, to: msg.recipients, dsn: { envid: msg.envid } } as SMTPConnection.Envelope,
        msg.data,
        (err, result) => {
          // Every recipient refused at RCPT still gets its own answer.
          const e = err as (Error & { rejectedErrors?: Rejected }) | null;
          if (e?.rejectedErrors?.length) return resolve(e.rejectedErrors);
          if (err) return reject(err);
          resolve((result as { rejectedErrors?: Rejected }).rejectedErrors ?? []);
        },
      );
    });
  }

  /**
   * Delivers one message; resolves with a reply for every recipient. Rejects
   * only when no recipient got an answer (connection refused, protocol error),
   * which the caller treats as a temporary failure for all of them. A pooled
   * connection that turns out dead is replaced once; should the message have
   * gone through before it died, the ENVID keeps the MDA from storing it twice.
   */
  async deliver(msg: LmtpMessage): Promise<LmtpReply[]> {
    if (this.closed) throw new Error('LMTP client closed');
    const pooled = this.idle.pop();
    if (pooled) {
      clearTimeout(this.idleTimers.get(pooled));
      this.idleTimers.delete(pooled);
    }
    let conn = pooled;
    let rejected: Rejected;
    try {
      conn ??= await this.open();
      rejected = await this.sendOn(conn, msg);
    } catch (err) {
      if (conn) this.discard(conn);
      if (!pooled) throw err;
      conn = await this.open();
      rejected = await this.sendOn(conn, msg);
    }
    this.release(conn);
    return this.replies(msg, rejected);
  }

  private replies(msg: LmtpMessage, rejected: Rejected): LmtpReply[] {
    const refused = new Map(rejected.map((e) => [e.recipient ?? '', e.response ?? '451 4.3.0 no reply']));
    return msg.recipients.map((address) => {
      const line = refused.get(address);
      return line
        ? { address, code: codeOf(line), text: line }
        : { address, code: 250, text: '250 2.0.0 delivered' };
    });
  }

  private release(conn: SMTPConnection): void {
    if (this.closed) {
      conn.quit();
      return;
    }
    this.idle.push(conn);
    const timer = setTimeout(() => {
      const i = this.idle.indexOf(conn);
      if (i !== -1) this.idle.splice(i, 1);
      this.idleTimers.delete(conn);
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
