/**
 * rspamd over its HTTP protocol (`POST /checkv2`), sending what
 * haraka-plugin-rspamd sends: the client's IP, HELO and host name, the
 * envelope, the signed-in user, the queue id and the TLS details as request
 * headers, the message as the body. The answer's action is turned into what
 * the MTA does with the message:
 *
 * | rspamd action     | MTA                                                   |
 * | ----------------- | ----------------------------------------------------- |
 * | reject            | 550 5.7.1                                             |
 * | soft reject       | 451 4.7.1                                             |
 * | greylist          | 451 4.7.1                                             |
 * | rewrite subject   | Subject rewritten, X-Spam headers, filed into Junk    |
 * | add header        | X-Spam headers, filed into Junk                       |
 * | no action         | X-Spam-Status: No                                     |
 *
 * rspamd's milter header changes (add_headers, remove_headers) are applied.
 * When rspamd cannot be asked (down, timeout, an unreadable answer) the
 * configured policy decides: accept the message marked unscanned, or
 * answer 451 so the sender tries again. No mail is lost either way.
 */
import { request } from 'node:http';
import { reply } from '@mailwerk/smtp';

export interface ScanContext {
  ip: string;
  helo?: string;
  /** The client's host name (reverse DNS), when known. */
  hostname?: string;
  sender: string;
  recipients: string[];
  user?: string;
  queueId?: string;
  tls?: { cipher: string; version: string } | null;
}

export interface RspamdAnswer {
  action: string;
  score: number;
  requiredScore: number;
  symbols: string[];
  subject?: string;
  smtpMessage?: string;
  milter?: {
    add_headers?: Record<string, unknown>;
    remove_headers?: Record<string, unknown>;
  };
}

export class RspamdUnavailable extends Error {}

export interface RspamdClientOptions {
  /** e.g. http://127.0.0.1:11333 */
  url: string;
  timeoutMs?: number;
}

export class RspamdClient {
  private readonly url: URL;
  private readonly timeoutMs: number;

  constructor(options: RspamdClientOptions) {
    this.url = new URL('/checkv2', options.url);
    this.timeoutMs = options.timeoutMs ?? 15_000;
  }

  check(message: Buffer, ctx: ScanContext): Promise<RspamdAnswer> {
    const headers: Record<string, string | string[]> = {
      'Content-Length': String(message.length),
      IP: ctx.ip,
      From: ctx.sender,
      Rcpt: ctx.recipients,
    };
    if (ctx.recipients.length === 1) headers['Deliver-To'] = ctx.recipients[0]!;
    if (ctx.helo) headers.Helo = ctx.helo;
    if (ctx.hostname) headers.Hostname = ctx.hostname;
    if (ctx.user) headers.User = ctx.user;
    if (ctx.queueId) headers['Queue-Id'] = ctx.queueId;
    if (ctx.tls) {
      headers['TLS-Cipher'] = ctx.tls.cipher;
      headers['TLS-Version'] = ctx.tls.version;
    }
    return new Promise((resolve, reject) => {
      const req = request(this.url, { method: 'POST', headers, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new RspamdUnavailable(err.message)));
        res.on('end', () => {
          try {
            const data = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
            if (res.statusCode !== 200 || typeof data.action !== 'string')
              throw new Error(String(data.error ?? `HTTP ${res.statusCode}`));
            const messages = (data.messages ?? {}) as Record<string, unknown>;
            resolve({
              action: data.action,
              score: Number(data.score ?? 0),
              requiredScore: Number(data.required_score ?? 0),
              symbols: Object.keys((data.symbols ?? {}) as object),
              ...(typeof data.subject === 'string' ? { subject: data.subject } : {}),
              ...(typeof messages.smtp_message === 'string' ? { smtpMessage: messages.smtp_message } : {}),
              ...(data.milter && typeof data.milter === 'object'
                ? { milter: data.milter as RspamdAnswer['milter'] }
                : {}),
            });
          } catch (err) {
            reject(new RspamdUnavailable(`rspamd answered something unreadable: ${(err as Error).message}`));
          }
        });
      });
      req.on('timeout', () =>
        req.destroy(new RspamdUnavailable(`rspamd did not answer within ${this.timeoutMs} ms`)),
      );
      req.on('error', (err) =>
        reject(err instanceof RspamdUnavailable ? err : new RspamdUnavailable(err.message)),
      );
      req.end(message);
    });
  }
}

/** What the MTA does with a message after the scan. */
export type ScanVerdict =
  | { kind: 'reject'; code: number; enhanced: string; text: string }
  | {
      kind: 'accept';
      junk: boolean;
      /** Header fields to add (complete lines). */
      add: string[];
      /** Lower-cased names of header fields to remove. */
      remove: string[];
      /** A new Subject: value, for `rewrite subject`. */
      subject?: string;
    };

const clean = (s: string) => s.replace(/[\r\n]+/g, ' ').slice(0, 300);

export function verdictOf(a: RspamdAnswer, originalSubject: string): ScanVerdict {
  if (a.action === 'reject')
    return {
      kind: 'reject',
      code: 550,
      enhanced: '5.7.1',
      text: clean(a.smtpMessage ?? 'message rejected as spam'),
    };
  if (a.action === 'soft reject' || a.action === 'greylist')
    return {
      kind: 'reject',
      code: 451,
      enhanced: '4.7.1',
      text: clean(
        a.smtpMessage ?? (a.action === 'greylist' ? 'greylisted, try again later' : 'try again later'),
      ),
    };
  const spam = a.action === 'add header' || a.action === 'rewrite subject';
  const add = [
    `X-Spam: ${spam ? 'Yes' : 'No'}\r\n`,
    `X-Spam-Status: ${spam ? 'Yes' : 'No'}, score=${a.score.toFixed(2)} required=${a.requiredScore.toFixed(2)}\r\n`,
    `X-Spam-Action: ${a.action}\r\n`,
    ...(a.symbols.length ? [`X-Spam-Symbols: ${clean(a.symbols.join(', '))}\r\n`] : []),
  ];
  const remove: string[] = [];
  for (const name of Object.keys(a.milter?.remove_headers ?? {})) remove.push(name.toLowerCase());
  for (const [name, value] of Object.entries(a.milter?.add_headers ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      const text =
        v && typeof v === 'object' && 'value' in v ? String((v as { value: unknown }).value) : String(v);
      if (/^[!-9;-~]+$/.test(name)) add.push(`${name}: ${clean(text)}\r\n`);
    }
  }
  return {
    kind: 'accept',
    junk: spam,
    add,
    remove,
    ...(a.action === 'rewrite subject'
      ? { subject: (a.subject ?? '*** SPAM *** %s').replace('%s', originalSubject) }
      : {}),
  };
}

/** rspamd and what to do when it cannot answer (the `rspamd` config section). */
export interface RspamdPolicy {
  client: RspamdClient;
  onFailure: 'accept' | 'tempfail';
  /** Told rspamd's action for each scan, or `failure` when it did not answer (for the metrics). */
  onVerdict?: (action: string) => void;
}

/**
 * Asks rspamd under the policy: its answer; null when it could not answer and
 * the policy accepts the message unscanned; a thrown 451 4.7.1 reply when the
 * policy defers it. Nothing is lost either way.
 */
export async function scan(
  policy: RspamdPolicy,
  message: Buffer,
  ctx: ScanContext,
  onError?: (err: unknown, context: string) => void,
): Promise<RspamdAnswer | null> {
  try {
    const answer = await policy.client.check(message, ctx);
    policy.onVerdict?.(answer.action);
    return answer;
  } catch (err) {
    if (!(err instanceof RspamdUnavailable)) throw err;
    policy.onVerdict?.('failure');
    onError?.(err, 'rspamd');
    if (policy.onFailure === 'tempfail')
      throw reply(451, '4.7.1', 'the message could not be scanned for spam just now; try again later');
    return null;
  }
}
