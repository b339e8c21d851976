/**
 * A small POP3 client (RFC 1939, STLS from RFC 2595, UIDL) for fetching: USER/PASS, UIDL, RETR, DELE,
 * QUIT. Our own: the maintained npm POP3 clients are callback-era wrappers without STLS or bounds.
 *
 * Bounded: a reply line is at most 8 KiB, a message at most `maxBytes` (the connection is dropped past
 * it, nothing is returned half), and every reply must come within `timeoutMs`. Multi-line replies are
 * dot-unstuffed (RFC 1939 §3). DELE only marks: the server removes the messages at QUIT, so a
 * connection that breaks first deletes nothing.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';

export interface Pop3Options {
  host: string;
  port: number;
  tls: 'tls' | 'starttls' | 'none';
  insecure?: boolean;
  timeoutMs?: number;
  maxBytes?: number;
}

export class Pop3Error extends Error {
  /** The server refused the sign-in (a -ERR to USER or PASS). */
  readonly authenticationFailed: boolean;
  constructor(message: string, authenticationFailed = false) {
    super(message);
    this.authenticationFailed = authenticationFailed;
  }
}

const MAX_LINE = 8192;

export class Pop3Client {
  private socket: Socket | TLSSocket | null = null;
  private buffer: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private closed: Error | null = null;
  private readonly o: Required<Pop3Options>;

  constructor(options: Pop3Options) {
    this.o = { insecure: false, timeoutMs: 30_000, maxBytes: 64 * 1024 * 1024, ...options };
  }

  async connect(user: string, password: string): Promise<void> {
    const { host, port, tls, insecure } = this.o;
    const socket =
      tls === 'tls'
        ? tlsConnect({ host, port, servername: host, rejectUnauthorized: !insecure })
        : netConnect({ host, port });
    this.attach(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once(tls === 'tls' ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    await this.ok(await this.line(), 'greeting');
    if (tls === 'starttls') {
      await this.ok(await this.command('STLS'), 'STLS');
      const plain = this.socket!;
      plain.removeAllListeners('data');
      const secure = tlsConnect({ socket: plain, servername: host, rejectUnauthorized: !insecure });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', () => resolve());
        secure.once('error', reject);
      });
      this.buffer = Buffer.alloc(0);
      this.attach(secure);
    }
    const u = await this.command(`USER ${user}`);
    if (!u.startsWith('+OK')) throw new Pop3Error(`USER refused: ${u}`, true);
    const p = await this.command(`PASS ${password}`);
    if (!p.startsWith('+OK')) throw new Pop3Error(`sign-in refused: ${p}`, true);
  }

  /** UIDL (RFC 1939 §7): message number and unique id of every message. */
  async uidl(): Promise<Array<{ n: number; uid: string }>> {
    await this.ok(await this.command('UIDL'), 'UIDL');
    const out: Array<{ n: number; uid: string }> = [];
    for (const line of (await this.multiline()).toString('latin1').split('\r\n')) {
      const m = /^(\d+) (\S+)$/.exec(line);
      if (m) out.push({ n: Number(m[1]), uid: m[2]! });
    }
    return out;
  }

  async retr(n: number): Promise<Buffer> {
    await this.ok(await this.command(`RETR ${n}`), 'RETR');
    return this.multiline();
  }

  async dele(n: number): Promise<void> {
    await this.ok(await this.command(`DELE ${n}`), 'DELE');
  }

  /** QUIT: the server removes what DELE marked (RFC 1939 §6). */
  async quit(): Promise<void> {
    try {
      await this.ok(await this.command('QUIT'), 'QUIT');
    } finally {
      this.close();
    }
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  private attach(socket: Socket | TLSSocket): void {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, d]) : d;
      if (this.buffer.length > this.o.maxBytes + MAX_LINE) {
        this.closed = new Pop3Error(`more than ${this.o.maxBytes} bytes in one reply`);
        socket.destroy();
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed ??= new Pop3Error('the server closed the connection');
      this.wake();
    });
    socket.on('error', (err) => {
      this.closed = err;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Waits for more data, or fails when the connection is gone or the server is silent too long. */
  private more(): Promise<void> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        this.close();
        reject(new Pop3Error(`no answer within ${this.o.timeoutMs} ms`));
      }, this.o.timeoutMs);
      this.waiter = () => {
        clearTimeout(timer);
        if (this.closed && this.buffer.length === 0) reject(this.closed);
        else resolve();
      };
    });
  }

  private async line(): Promise<string> {
    for (;;) {
      const end = this.buffer.indexOf('\r\n');
      if (end >= 0) {
        const line = this.buffer.toString('latin1', 0, end);
        this.buffer = this.buffer.subarray(end + 2);
        return line;
      }
      if (this.buffer.length > MAX_LINE) throw new Pop3Error('a reply line over 8 KiB');
      await this.more();
    }
  }

  /** The lines of a multi-line reply up to "." alone, dot-unstuffed, with CRLF line ends. */
  private async multiline(): Promise<Buffer> {
    // Where the terminator search goes on from: what was searched already is not searched again.
    let from = 0;
    for (;;) {
      const start = this.buffer.subarray(0, 3).toString('latin1') === '.\r\n' ? 0 : -1;
      const end = start === 0 ? 0 : this.buffer.indexOf('\r\n.\r\n', from);
      from = Math.max(0, this.buffer.length - 4);
      if ((end >= 0 ? end : this.buffer.length) > this.o.maxBytes) {
        this.close();
        throw new Pop3Error(`more than ${this.o.maxBytes} bytes in one reply`);
      }
      if (end >= 0) {
        const body = start === 0 ? '' : this.buffer.toString('latin1', 0, end + 2);
        this.buffer = this.buffer.subarray(start === 0 ? 3 : end + 5);
        return Buffer.from(body.replace(/^\./gm, ''), 'latin1');
      }
      await this.more();
    }
  }

  private async command(text: string): Promise<string> {
    if (!this.socket) throw new Pop3Error('not connected');
    this.socket.write(`${text}\r\n`);
    return this.line();
  }

  private async ok(reply: string, what: string): Promise<void> {
    if (!reply.startsWith('+OK')) throw new Pop3Error(`${what}: ${reply}`);
  }
}
