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
  hostname: string;
  timeoutMs?: number;
}

/**
 * Delivers one message; resolves with a reply for every recipient. Rejects
 * only when no recipient got an answer (connection refused, protocol error),
 * which the caller treats as a temporary failure for all of them.
 */
export async function deliverOverLmtp(target: LmtpTarget, msg: LmtpMessage): Promise<LmtpReply[]> {
  const timeout = msg.timeoutMs ?? 60_000;
  const socket = await connectSocket(parseTarget(target), Math.min(timeout, 15_000));
  const conn = new SMTPConnection({
    connection: socket,
    lmtp: true,
    name: msg.hostname,
    ignoreTLS: true,
    greetingTimeout: 15_000,
    socketTimeout: timeout,
    logger: false,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    const info = await new Promise<{ rejectedErrors?: Array<{ recipient?: string; response?: string }> }>(
      (resolve, reject) => {
        conn.send(
          { from: msg.sender, to: msg.recipients, dsn: { envid: msg.envid } } as SMTPConnection.Envelope,
          msg.data,
          (err, result) => {
            // All recipients refused at RCPT: still one answer each.
            const e = err as
              | (Error & { rejectedErrors?: Array<{ recipient?: string; response?: string }> })
              | null;
            if (e?.rejectedErrors?.length) return resolve({ rejectedErrors: e.rejectedErrors });
            if (err) return reject(err);
            resolve(result as never);
          },
        );
      },
    );
    const refused = new Map(
      (info.rejectedErrors ?? []).map((e) => [e.recipient ?? '', e.response ?? '451 4.3.0 no reply']),
    );
    return msg.recipients.map((address) => {
      const line = refused.get(address);
      return line
        ? { address, code: codeOf(line), text: line }
        : { address, code: 250, text: '250 2.0.0 delivered' };
    });
  } finally {
    conn.quit();
    conn.close();
  }
}
