// A bare IMAP client over TLS for the benchmarks: one command at a time, as a mail client does; resolves
// with the bytes up to the command's tagged reply. No parsing beyond finding that line.
import { once } from 'node:events';
import { connect, type TLSSocket } from 'node:tls';

export class RawImap {
  private chunks: Buffer[] = [];
  private size = 0;
  private wait: { tag: string; resolve: (b: Buffer) => void } | null = null;
  private n = 0;
  readonly socket: TLSSocket;

  constructor(port: number) {
    this.socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    this.socket.setNoDelay(true);
    this.socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.size += d.length;
      if (!this.wait) return;
      // Only the tail can hold the tagged reply.
      const tail = Buffer.concat(this.chunks.slice(-2)).toString('latin1');
      if (new RegExp(`(^|\\n)${this.wait.tag} (OK|NO|BAD)`).test(tail)) {
        const all = Buffer.concat(this.chunks, this.size);
        this.chunks = [];
        this.size = 0;
        const w = this.wait;
        this.wait = null;
        w.resolve(all);
      }
    });
  }

  async greeting(): Promise<void> {
    await once(this.socket, 'data');
    this.chunks = [];
    this.size = 0;
  }

  cmd(command: string): Promise<Buffer> {
    const tag = `b${++this.n}`;
    return new Promise((resolve) => {
      this.wait = { tag, resolve };
      this.socket.write(`${tag} ${command}\r\n`);
    });
  }

  /** APPEND with a synchronising literal: waits for the continuation, then sends the message. */
  async append(mailbox: string, message: Buffer, flags = ''): Promise<Buffer> {
    const tag = `b${++this.n}`;
    const reply = new Promise<Buffer>((resolve) => {
      this.wait = { tag, resolve };
    });
    this.socket.write(`${tag} APPEND ${mailbox}${flags ? ` (${flags})` : ''} {${message.length}}\r\n`);
    await this.until('+ ');
    this.socket.write(Buffer.concat([message, Buffer.from('\r\n')]));
    return reply;
  }

  private async until(text: string): Promise<void> {
    while (!Buffer.concat(this.chunks).toString('latin1').includes(text)) await once(this.socket, 'data');
    this.chunks = [];
    this.size = 0;
  }

  /** Enters IDLE and returns once the server said `+`. */
  async idle(): Promise<void> {
    this.socket.write(`b${++this.n} IDLE\r\n`);
    await this.until('+ ');
  }

  /** Ends IDLE; resolves with the tagged OK. */
  done(): Promise<Buffer> {
    const tag = `b${this.n}`;
    return new Promise((resolve) => {
      this.wait = { tag, resolve };
      this.socket.write('DONE\r\n');
    });
  }
}
