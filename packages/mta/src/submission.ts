/**
 * Submission (RFC 6409): the users' own mail, on 587 (STARTTLS) and 465
 * (implicit TLS), after SMTP AUTH. Nothing is answered 250 before it is on
 * disk in the queue.
 *
 * Invariants:
 * - AUTH (PLAIN, LOGIN) is offered only over TLS unless the admin allows
 *   plaintext; MAIL, RCPT and DATA need a signed-in user (530 otherwise).
 * - A user sends only as their own addresses: the envelope sender and every
 *   header From address must be the account's address (with or without a
 *   +tag) or an alias that delivers to it; otherwise 553 5.7.1.
 * - Wrong credentials get 535 5.7.8, slowed down per client address and per
 *   account by the shared AuthThrottle.
 * - Messages per hour per user (450 4.7.1) and recipients per message
 *   (452 4.5.3) are bounded.
 * - The message is completed as RFC 6409 §8 allows: a missing Date: or
 *   Message-ID: is added, lines over 998 octets are folded, then it is signed
 *   (DKIM, when a signer is given) and queued.
 */
import { randomBytes } from 'node:crypto';
import { AuthThrottle, checkLogin } from '@mailwerk/auth';
import { ConnectionLimiter, type Counters, InProcessCounters } from '@mailwerk/limits';
import { flatAddresses, parseAddressList, parseHeaderBlock, parseMessage } from '@mailwerk/mime';
import {
  asReply,
  foldLongLines,
  headerBlock,
  receivedHeader,
  reply,
  rfc5322Date,
  type SmtpError,
  SmtpServer,
  type SmtpSession,
} from '@mailwerk/smtp';
import {
  type Account,
  contentId,
  type MailStore,
  normalizeAddress,
  normalizeDomain,
  ownsAddress,
  type QueueEntry,
} from '@mailwerk/store';
import { checkDeliverable, checkSenderSyntax, checkUtf8 } from './addresses.ts';
import { baseServerOptions, dsnMeta, queueRecipients, smtputf8 } from './envelope.ts';
import { defaultInboundLimits, type InboundLimits } from './inbound.ts';
import { type RspamdPolicy, scan, verdictOf } from './rspamd.ts';

/** The MX's connection and size limits, plus how much one user may send. */
export type SubmissionLimits = Pick<
  InboundLimits,
  | 'maxMessageSize'
  | 'maxRecipients'
  | 'maxConnections'
  | 'maxConnectionsPerIp'
  | 'maxErrors'
  | 'idleTimeoutMs'
> & {
  /** Messages one user may submit per hour. */
  messagesPerHour: number;
};

export const defaultSubmissionLimits: SubmissionLimits = {
  maxMessageSize: defaultInboundLimits.maxMessageSize,
  maxRecipients: defaultInboundLimits.maxRecipients,
  maxConnections: defaultInboundLimits.maxConnections,
  maxConnectionsPerIp: defaultInboundLimits.maxConnectionsPerIp,
  maxErrors: defaultInboundLimits.maxErrors,
  idleTimeoutMs: defaultInboundLimits.idleTimeoutMs,
  messagesPerHour: 500,
};

export interface SubmissionServerOptions {
  store: MailStore;
  hostname: string;
  tls: { key: string; cert: string };
  /** Implicit TLS (465) instead of STARTTLS (587). */
  secure: boolean;
  allowPlaintext: boolean;
  throttle?: AuthThrottle;
  /** Shared by the 587 and 465 servers, so the hourly count is one per user. */
  sendLimiter?: SendLimiter;
  limits?: Partial<SubmissionLimits>;
  /** 'private': the Received: header names no client address or EHLO name. */
  receivedHeader?: 'private' | 'full';
  /** Signs a completed message (DKIM) for the domain of its From: address; returns the header fields to prepend, or ''. */
  sign?: (message: Buffer, fromDomain: string) => Promise<string>;
  /** Scans submitted mail (rspamd.scan_outbound): reject refuses it, soft reject and greylist defer it. */
  rspamd?: RspamdPolicy;
  onQueued?: (entry: QueueEntry) => void;
  onError?: (err: unknown, context: string) => void;
  onRefused?: (client: string, reply: string) => void;
}

/** Messages per user per hour, in the shared counters (in process, or Redis in the shared setup). */
export class SendLimiter {
  private readonly counters: Counters;
  private readonly windowMs: number;
  constructor(counters: Counters = new InProcessCounters(), windowMs = 3_600_000) {
    this.counters = counters;
    this.windowMs = windowMs;
  }
  /** The number sent in the current window. */
  count(user: string): Promise<number> {
    return this.counters.count(`send:${user}`);
  }
  async record(user: string): Promise<void> {
    await this.counters.hit(`send:${user}`, this.windowMs);
  }
}

export function createSubmissionServer(options: SubmissionServerOptions): SmtpServer {
  const limits = { ...defaultSubmissionLimits, ...options.limits };
  const { store } = options;
  const throttle = options.throttle ?? new AuthThrottle();
  const sendLimiter = options.sendLimiter ?? new SendLimiter();
  const limiter = new ConnectionLimiter(limits.maxConnections, limits.maxConnectionsPerIp);
  /** Sessions holding a place in the limiter. */
  const admitted = new Set<string>();
  /** The signed-in account of each session (the engine keeps only its id). */
  const accounts = new Map<string, Account>();

  /** A refusal, told to the log (the engine counts it toward maxErrors). */
  const refuse = (session: SmtpSession, err: SmtpError): SmtpError => {
    options.onRefused?.(session.remoteAddress, `${err.responseCode} ${err.message}`);
    return err;
  };

  const account = (session: SmtpSession): Account => {
    const a = accounts.get(session.id);
    if (!a) throw reply(530, '5.7.0', 'authentication required');
    return a;
  };

  /** Runs a hook's work: what it refuses is logged as a refusal; anything else it meets is 451, reported. */
  const guarded = async <T>(session: SmtpSession, context: string, work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      const r = asReply(err, options.onError, `submission session ${session.id}: ${context}`);
      throw r === err ? refuse(session, r) : r;
    }
  };

  const server = new SmtpServer({
    name: options.hostname,
    banner: 'Mailwerk submission',
    secure: options.secure,
    ...baseServerOptions(options.tls, limits),
    strictLineEndings: true,
    auth: { allowInsecure: options.allowPlaintext },
    onConnect(session) {
      if (limiter.admit(session.remoteAddress))
        throw reply(421, '4.7.0', `${options.hostname} too many connections from your address`);
      admitted.add(session.id);
    },
    onClose(session) {
      accounts.delete(session.id);
      if (admitted.delete(session.id)) limiter.release(session.remoteAddress);
    },
    async onAuth(username, password, session) {
      try {
        const a = await signIn(username, password, session);
        accounts.set(session.id, a);
        return a.id;
      } catch (err) {
        const r = asReply(err, options.onError, `submission session ${session.id}: AUTH`);
        throw r === err
          ? refuse(session, r)
          : reply(454, '4.7.0', 'temporary authentication failure, try again later');
      }
    },
    onMailFrom: (address, session) =>
      guarded(session, 'mail', async () => {
        const bad =
          checkUtf8(address.address, address.params.SMTPUTF8 === true) ?? checkSenderSyntax(address.address);
        if (bad) throw bad;
        await checkSender(address.address, session);
      }),
    onRcptTo: (address, session) =>
      guarded(session, 'rcpt', async () => {
        const bad = checkUtf8(address.address, smtputf8(session));
        if (bad) throw bad;
        await checkRecipient(address.address, session);
      }),
    onData: (message, session) =>
      guarded(session, 'data', async () => `2.0.0 Ok: queued as ${await accept(message, session)}`),
  });

  async function signIn(user: string, password: string, session: SmtpSession): Promise<Account> {
    const v = await checkLogin({
      throttle,
      service: 'submission',
      session: session.id,
      ip: session.remoteAddress,
      user,
      password,
      find: (u) => store.getAccountByAddress(normalizeAddress(u)),
      rehash: async (a, passwordHash) => void (await store.updateAccount(a.id, { passwordHash })),
    });
    if (v.ok) return v.account;
    if (v.reason === 'blocked')
      throw reply(454, '4.7.0', 'too many failed sign-ins from your address; try again later');
    throw reply(535, '5.7.8', 'authentication credentials invalid');
  }

  async function checkSender(sender: string, session: SmtpSession): Promise<void> {
    const a = account(session);
    if (sender === '') throw reply(553, '5.7.1', 'a signed-in user cannot send with the null sender <>');
    if (!(await ownsAddress(store, a, sender)))
      throw reply(
        553,
        '5.7.1',
        `<${sender}> is not one of your addresses; you are signed in as ${a.address}`,
      );
    if ((await sendLimiter.count(a.id)) >= limits.messagesPerHour)
      throw reply(
        450,
        '4.7.1',
        `sending limit of ${limits.messagesPerHour} messages per hour reached; try again later`,
      );
  }

  async function checkRecipient(raw: string, session: SmtpSession): Promise<void> {
    account(session);
    const at = raw.lastIndexOf('@');
    let domain: string;
    try {
      if (at <= 0 || /[\s<>]/.test(raw)) throw new Error('syntax');
      domain = normalizeDomain(raw.slice(at + 1));
    } catch {
      throw reply(501, '5.1.3', `<${raw}> bad recipient address syntax`);
    }
    // A local recipient that does not exist is refused now, not bounced later.
    if (await store.getDomain(domain)) await checkDeliverable(store, raw, domain);
  }

  async function accept(data: Buffer, session: SmtpSession): Promise<string> {
    const a = account(session);
    const envelope = parseMessage(data).root.envelope;
    // Every From: and Sender: field counts, not only the first (RFC 5322 §3.6 allows one From: field).
    const fields = parseHeaderBlock(headerBlock(data));
    const fromFields = fields.filter((f) => f.key === 'from');
    if (fromFields.length === 0) throw reply(550, '5.6.0', 'the message has no From: header');
    if (fromFields.length > 1)
      throw reply(550, '5.6.0', 'the message has more than one From: field (RFC 5322 section 3.6)');
    const from = flatAddresses(parseAddressList(fromFields[0]!.value));
    if (from.length === 0) throw reply(550, '5.6.0', 'the From: field holds no address');
    const senderField = fields
      .filter((f) => f.key === 'sender')
      .flatMap((f) => flatAddresses(parseAddressList(f.value)));
    for (const [field, list] of [
      ['From', from],
      ['Sender', senderField],
    ] as const) {
      for (const f of list) {
        if (!(await ownsAddress(store, a, f)))
          throw reply(
            553,
            '5.7.1',
            `${field}: <${f}> is not one of your addresses; you are signed in as ${a.address}`,
          );
      }
    }
    const env = session.envelope;
    const sender = env.mailFrom?.address ?? '';
    // DKIM signs for the header From's domain: that is what DMARC aligns with.
    const fromDomain = from[0]!.slice(from[0]!.lastIndexOf('@') + 1).toLowerCase();
    const traceId = `${session.id}${randomBytes(2).toString('hex')}`;
    const added: string[] = [];
    if ((envelope?.date ?? null) === null) added.push(`Date: ${rfc5322Date(new Date())}\r\n`);
    if ((envelope?.messageId ?? null) === null)
      added.push(`Message-ID: <${randomBytes(12).toString('hex')}@${options.hostname}>\r\n`);
    const { tls } = session;
    const full = options.receivedHeader === 'full';
    const received = receivedHeader({
      helo: full ? session.helo : null,
      clientAddress: full ? session.remoteAddress : null,
      by: options.hostname,
      protocol: session.secure ? 'ESMTPSA' : 'ESMTPA',
      id: traceId,
      tls,
      ...(env.rcptTo.length === 1 ? { recipient: env.rcptTo[0]!.address } : {}),
    });
    if (options.rspamd) {
      // Outbound: only rspamd's reject and deferrals count; its header advice is for mail coming in.
      const answer = await scan(
        options.rspamd,
        data,
        {
          ip: session.remoteAddress,
          helo: session.helo,
          sender,
          recipients: env.rcptTo.map((r) => r.address),
          user: a.address,
          queueId: traceId,
        },
        options.onError,
      );
      const v = answer ? verdictOf(answer, '') : null;
      if (v?.kind === 'reject') throw reply(v.code, v.enhanced, v.text);
    }
    const completed = foldLongLines(Buffer.concat([Buffer.from(added.join(''), 'latin1'), data]));
    const signature = options.sign ? await options.sign(completed, fromDomain) : '';
    const message = Buffer.concat([Buffer.from(received + signature, 'latin1'), completed]);
    const entry = await store.enqueue({
      sender: normalizeAddress(sender),
      recipients: queueRecipients(env),
      blobId: contentId(message),
      data: message,
      size: message.length,
      meta: {
        authUser: a.address,
        client: session.remoteAddress,
        trace: traceId,
        ...dsnMeta(env),
      },
    });
    await sendLimiter.record(a.id);
    options.onQueued?.(entry);
    return entry.id;
  }

  return server;
}
