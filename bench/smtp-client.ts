// The benchmarks' own SMTP client: one command at a time over a plain socket,
// so that the time from the end of DATA to the 250 can be measured exactly.
import { connect, type Socket } from 'node:net';

export class SmtpClient {
  private buf = '';
  private waiting: ((reply: string) => void) | null = null;
  private readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    // Without this, Nagle's algorithm and delayed ACKs add ~40 ms to every small write.
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.flush();
    });
  }

  /** Connects and reads the greeting. */
  static async open(port: number, host = '127.0.0.1'): Promise<SmtpClient> {
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('error', () => socket.destroy());
    const c = new SmtpClient(socket);
    await c.read();
    return c;
  }

  private flush(): void {
    const m = /^(?:\d{3}-[^\n]*\n)*\d{3} [^\n]*\n/.exec(this.buf);
    if (m && this.waiting) {
      this.buf = this.buf.slice(m[0].length);
      const w = this.waiting;
      this.waiting = null;
      w(m[0]);
    }
  }

  read(): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.flush();
    });
  }

  async cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  /**
   * One transaction; resolves with the milliseconds from the end of DATA to
   * the reply, and throws if the message was not accepted.
   */
  async send(from: string, to: string[], message: string): Promise<number> {
    await this.cmd(`MAIL FROM:<${from}>`);
    for (const rcpt of to) await this.cmd(`RCPT TO:<${rcpt}>`);
    await this.cmd('DATA');
    const start = performance.now();
    const reply = await this.cmd(`${message}.`);
    const ms = performance.now() - start;
    if (!reply.startsWith('250')) throw new Error(`not accepted: ${reply.trim()}`);
    return ms;
  }

  async quit(): Promise<void> {
    await this.cmd('QUIT').catch(() => undefined);
    this.socket.destroy();
  }
}

/** A message of about `size` bytes (headers included), CRLF line endings. */
export function benchMessage(size: number, to = 'bob@example.org'): string {
  const head = `Subject: benchmark\r\nFrom: load@ext.org\r\nTo: ${to}\r\n\r\n`;
  const line = `${'0123456789abcdef'.repeat(4).slice(0, 62)}\r\n`;
  const body = line.repeat(Math.max(1, Math.ceil((size - head.length) / line.length)));
  return head + body;
}

/** The p-th percentile of sorted values. */
export const percentile = (sorted: number[], p: number): number =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : Number.NaN;
