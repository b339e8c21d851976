/**
 * The MX: SMTP from the internet for local domains only (RFC 5321), on our
 * engine (@mailwerk/smtp). Nothing is answered 250 before it is on disk, in
 * the mailboxes or the queue.
 *
 * Invariants:
 * - Relay is refused at RCPT (554 5.7.1) for any recipient whose domain is not
 *   local, and for local-looking addresses that carry routing (`%`, `!`,
 *   quoted `@`, source routes), so no trick turns the MX into an open relay.
 * - An unknown local recipient is refused at RCPT (550 5.1.1), never accepted
 *   and bounced later (no backscatter).
 * - The 250 after DATA is sent only once the message is committed, synced: in
 *   the recipients' mailboxes when the MDA took it for all of them before the
 *   reply (deliverNow), else with its queue entry; on any failure to store the
 *   reply is 451 4.3.0.
 */
import { ConnectionLimiter, type Counters, type Greylist, InProcessCounters } from '@mailwerk/limits';
import {
  asReply,
  countHeaderFields,
  editHeader,
  headerBlock,
  isSrsAddress,
  receivedHeader,
  reply,
  type SmtpAddress,
  type SmtpError,
  SmtpServer,
  type SmtpSession,
  SrsError,
  srsReverse,
} from '@mailwerk/smtp';
import {
  accountExpansion,
  contentId,
  type Expansion,
  type MailStore,
  type NewQueueEntry,
  newQueueEntry,
  newQueueId,
  normalizeAddress,
  normalizeDomain,
  type QueueEntry,
} from '@mailwerk/store';
import { checkDeliverable, checkSenderSyntax, checkUtf8 } from './addresses.ts';
import { baseServerOptions, dsnMeta, queueRecipients, smtputf8 } from './envelope.ts';
import { type RspamdPolicy, scan, verdictOf } from './rspamd.ts';
import { type AuthenticationOptions, checkAuthentication, claimsOurAuthservId } from './trust.ts';

export interface InboundLimits {
  maxMessageSize: number;
  maxRecipients: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** Refused commands in one session before it is closed with 421. */
  maxErrors: number;
  /** Idle time before a client is disconnected (RFC 5321 §4.5.3.2 asks for minutes). */
  idleTimeoutMs: number;
  /** The longest a session may last, whatever it does. */
  sessionTimeoutMs: number;
  /** Most Received: headers before a message is taken for a loop (RFC 5321 §6.3). */
  maxHops: number;
  /** Pause before the greeting, in ms (0: greet at once; a pause is paid by every connection); a client that talks during it is refused. */
  greetingDelayMs: number;
  /** New connections from one client address per minute. */
  connectionsPerMinute: number;
  /** Refused recipients (unknown users, relay attempts) from one address in 15 minutes before it is turned away. */
  failedRecipientsPerIp: number;
  /** Longest time for one command, however it trickles in (RFC 5321 §4.5.3.2: 5 minutes). */
  commandTimeoutMs: number;
  /** Slowest message transfer, in bytes per second, after `dataGraceMs`. */
  minDataRate: number;
  dataGraceMs: number;
}

export const defaultInboundLimits: InboundLimits = {
  maxMessageSize: 50 * 1024 * 1024,
  maxRecipients: 100,
  maxConnections: 1000,
  maxConnectionsPerIp: 20,
  maxErrors: 10,
  idleTimeoutMs: 300_000,
  sessionTimeoutMs: 1_800_000,
  maxHops: 50,
  greetingDelayMs: 0,
  connectionsPerMinute: 120,
  failedRecipientsPerIp: 30,
  commandTimeoutMs: 300_000,
  minDataRate: 256,
  dataGraceMs: 60_000,
};

export interface InboundServerOptions {
  store: MailStore;
  hostname: string;
  tls: { key: string; cert: string };
  limits?: Partial<InboundLimits>;
  /** Where abuse counts live (in process unless given: Redis shares them between processes). */
  counters?: Counters;
  /** Greylisting of new (network, sender, recipient) triplets; absent: off. */
  greylist?: Greylist;
  /** SPF/DKIM/DMARC/ARC checks (absent: none). */
  authentication?: AuthenticationOptions;
  /** rspamd scanning (absent: none); `onFailure` decides when rspamd cannot answer. */
  rspamd?: RspamdPolicy;
  /**
   * Local delivery before the reply to DATA (QueueRunner.deliverNow): given the entry as it would be
   * queued, nothing stored yet; true when every recipient has the message, which is then not queued
   * (answered `delivered as <id>`); false to queue it, under the same id, as without it. `expanded`:
   * what the recipients checked at RCPT expand to.
   */
  deliverNow?: (
    entry: QueueEntry,
    data: Buffer,
    expanded: ReadonlyMap<string, Expansion>,
  ) => Promise<boolean>;
  /** Called after a message is queued (to wake the queue runner, or hand it the entry it leased). */
  onQueued?: (entry: QueueEntry) => void;
  /**
   * The queue runner of this process (QueueRunner's claim/unclaim): an entry is queued already leased
   * to it when it has a free place, and onQueued hands it over (QueueRunner.queued); else queued unleased.
   */
  handoff?: { claim(): { owner: string; until: Date } | null; unclaim(): void };
  onError?: (err: unknown, context: string) => void;
  /** Called for every refused command (for the log), with the client's address. */
  onRefused?: (client: string, reply: string) => void;
}

/** Characters that route mail on old MTAs or hide a second address: never in a local part we accept. */
const ROUTING = /[%!@":\\]/;

export function createInboundServer(options: InboundServerOptions): SmtpServer {
  const limits = { ...defaultInboundLimits, ...options.limits };
  const { store } = options;
  const limiter = new ConnectionLimiter(limits.maxConnections, limits.maxConnectionsPerIp);
  /**
   * The local recipients of each session's transaction as checked at RCPT, by canonical address: what
   * they expand to is not looked up again for the delivery before the reply to DATA.
   */
  const expansions = new Map<string, Map<string, Expansion>>();
  const counters = options.counters ?? new InProcessCounters();
  const FAILED_RCPT_WINDOW_MS = 15 * 60_000;

  /** A refusal, told to the log (the engine counts it toward maxErrors). */
  const refuse = (session: SmtpSession, err: SmtpError): SmtpError => {
    options.onRefused?.(session.remoteAddress, `${err.responseCode} ${err.message}`);
    return err;
  };

  const server = new SmtpServer({
    name: options.hostname,
    banner: 'Mailwerk',
    ...baseServerOptions(options.tls, limits),
    greetingDelayMs: limits.greetingDelayMs,
    strictProtocol: true,
    strictLineEndings: true,
    commandTimeoutMs: limits.commandTimeoutMs,
    minDataRate: limits.minDataRate,
    dataGraceMs: limits.dataGraceMs,
    sessionTimeoutMs: limits.sessionTimeoutMs,
    async onConnect(session) {
      const refusal = await admit(session.remoteAddress);
      if (refusal) {
        options.onRefused?.(session.remoteAddress, `${refusal.responseCode} ${refusal.message}`);
        throw refusal;
      }
      expansions.set(session.id, new Map());
    },
    onClose(session) {
      // A session has its map only once admitted (onConnect): only then does it hold a place to give back.
      if (expansions.delete(session.id)) limiter.release(session.remoteAddress);
    },
    onMailFrom(address, session) {
      // Senders from the internet may use any RFC 5321 local part (quoted ones too);
      // only the domain has to make sense, so that a bounce could reach it.
      const a = address.address;
      const at = a.lastIndexOf('@');
      let ok = a === '';
      if (at > 0 && !/[\s\u0000-\u001f\u007f<>]/.test(a)) {
        try {
          normalizeDomain(a.slice(at + 1));
          ok = true;
        } catch {
          ok = false;
        }
      }
      // A new transaction: the recipients checked in an earlier one are not its own.
      expansions.get(session.id)?.clear();
      if (!ok) throw refuse(session, reply(553, '5.1.7', `<${a}> bad sender address syntax`));
      const bad = checkUtf8(a, address.params.SMTPUTF8 === true) ?? checkSenderSyntax(a);
      if (bad) throw refuse(session, bad);
    },
    async onRcptTo(address, session) {
      const bad = checkUtf8(address.address, smtputf8(session));
      if (bad) throw refuse(session, bad);
      try {
        await checkRecipient(address, session);
        await greylisted(address.address, session);
      } catch (err) {
        const r = asReply(err, options.onError, `smtp session ${session.id}: RCPT`);
        if (r !== err) throw r;
        throw refuse(session, await failedRecipient(session, r).catch(() => r));
      }
    },
    async onData(message, session) {
      try {
        return `2.0.0 Ok: ${await accept(message, session)}`;
      } catch (err) {
        const r = asReply(err, options.onError, `smtp session ${session.id}: DATA`);
        if (r === err) options.onRefused?.(session.remoteAddress, `${r.responseCode} ${r.message}`);
        throw r;
      }
    },
  });

  async function greylisted(recipient: string, session: SmtpSession): Promise<void> {
    if (!options.greylist) return;
    const sender = session.envelope.mailFrom?.address ?? '';
    const wait = await options.greylist.check(session.remoteAddress, sender, recipient);
    if (wait !== null)
      throw reply(
        451,
        '4.7.1',
        `greylisted: this is the first attempt of this sender here, please retry in ${Math.ceil(wait / 1000)} seconds`,
      );
  }

  /**
   * Per-address limits at connect; a reply when the client is to be turned away. The place among
   * the concurrent connections is taken first, synchronously, and given back if a later check refuses.
   */
  async function admit(ip: string): Promise<SmtpError | null> {
    if (limiter.admit(ip))
      return reply(
        421,
        '4.7.0',
        `${options.hostname} too many connections from your address, try again later`,
      );
    let refusal: SmtpError | null = null;
    try {
      // Asked together: one round trip where the counters are the supervisor's or Redis.
      const [connections, failed] = await Promise.all([
        counters.hit(`mx:conn:${ip}`, 60_000),
        counters.count(`mx:rcptfail:${ip}`),
      ]);
      if (connections > limits.connectionsPerMinute)
        refusal = reply(
          421,
          '4.7.0',
          `${options.hostname} too many connections from your address per minute, try again later`,
        );
      else if (failed >= limits.failedRecipientsPerIp)
        refusal = reply(
          421,
          '4.7.0',
          `${options.hostname} too many refused recipients from your address, try again later`,
        );
    } catch (err) {
      // The counters are unreachable (Redis down): the limits cannot be checked, the mail still flows.
      options.onError?.(err, 'connection limits');
    }
    if (refusal) limiter.release(ip);
    return refusal;
  }

  /** A refused recipient counts against the client's address; past the limit the session ends. */
  async function failedRecipient(session: SmtpSession, err: SmtpError): Promise<SmtpError> {
    if (err.responseCode < 500) return err;
    const n = await counters.hit(`mx:rcptfail:${session.remoteAddress}`, FAILED_RCPT_WINDOW_MS);
    if (n >= limits.failedRecipientsPerIp)
      return reply(
        421,
        '4.7.0',
        `${options.hostname} too many refused recipients from your address, closing connection`,
      );
    return err;
  }

  async function checkRecipient(address: SmtpAddress, session: SmtpSession): Promise<void> {
    const raw = address.address;
    // RFC 3461 §4.1 and common practice: a bounce (null sender) goes to one recipient.
    if (
      session.envelope.mailFrom &&
      session.envelope.mailFrom.address === '' &&
      session.envelope.rcptTo.length >= 1
    ) {
      throw reply(452, '4.5.3', 'a message with a null sender may have one recipient only');
    }
    const at = raw.lastIndexOf('@');
    if (at <= 0) throw reply(501, '5.1.3', `<${raw}> bad recipient address syntax`);
    let domain: string;
    try {
      domain = normalizeDomain(raw.slice(at + 1));
    } catch {
      throw reply(501, '5.1.3', `<${raw}> bad recipient address syntax`);
    }
    const local = raw.slice(0, at);
    const routed = ROUTING.test(local) || local.startsWith('@');
    // Its canonical form, once; one that does not parse is answered only after the relay check, as ever.
    let canonical: string | null = null;
    try {
      canonical = normalizeAddress(raw);
    } catch {}
    // The common recipient, an account's own address: one read, its domain being local by the store's
    // rules (accountExpansion). Any other goes the whole way below, in the same order as ever.
    if (canonical !== null && !routed && !isSrsAddress(local)) {
      const own = await accountExpansion(store, canonical);
      if (own) {
        expansions.get(session.id)?.set(canonical, own);
        return;
      }
    }
    if (routed || !(await store.getDomain(domain))) {
      throw reply(554, '5.7.1', `<${raw}> relay access denied`);
    }
    if (canonical === null) throw reply(501, '5.1.3', `<${raw}> bad recipient address syntax`);
    if (isSrsAddress(local)) {
      // A bounce to an address our forwarding wrote (SRS, packages/smtp/src/srs.ts): it goes back to
      // the sender the address names, which this envelope then holds; a forged or expired one is refused.
      try {
        address.address = srsReverse(raw, { secret: await store.secret('srs') });
      } catch (err) {
        if (!(err instanceof SrsError)) throw err;
        throw reply(550, '5.1.1', `<${raw}> is not a valid forwarding address here: ${err.message}`);
      }
      return;
    }
    expansions.get(session.id)?.set(canonical, await checkDeliverable(store, canonical, domain));
  }

  /** Takes the message: `delivered as <id>` or `queued as <id>`, for the reply. */
  async function accept(data: Buffer, session: SmtpSession): Promise<string> {
    if (countHeaderFields(data, 'Received') > limits.maxHops) {
      throw reply(554, '5.4.0', `too many hops (more than ${limits.maxHops} Received: headers), mail loop?`);
    }
    const env = session.envelope;
    // The id of the delivery or queue entry, in the Received: field too (as Postfix's queue id), so
    // that a message's header leads to its lines in the log.
    const now = new Date();
    const id = newQueueId(now.getTime());
    const received = receivedHeader({
      helo: session.helo,
      clientAddress: session.remoteAddress,
      by: options.hostname,
      protocol: session.secure ? 'ESMTPS' : 'ESMTP',
      id,
      tls: session.tls,
      ...(env.rcptTo.length === 1 ? { recipient: env.rcptTo[0]!.address } : {}),
    });
    const checked = await inspect(data, session, id);
    const message = Buffer.concat([Buffer.from(received + checked.prepend, 'latin1'), checked.body]);
    const input: NewQueueEntry = {
      id,
      sender: env.mailFrom?.address ?? '',
      recipients: queueRecipients(env),
      blobId: contentId(message),
      size: message.length,
      meta: {
        client: session.remoteAddress,
        helo: session.helo,
        trace: id,
        ...dsnMeta(env),
      },
    };
    if (options.deliverNow) {
      let delivered = false;
      try {
        delivered = await options.deliverNow(
          newQueueEntry(input, id, now),
          message,
          expansions.get(session.id) ?? new Map(),
        );
      } catch (err) {
        options.onError?.(err, `smtp session ${session.id}: delivery before the reply`);
      }
      if (delivered) return `delivered as ${id}`;
    }
    // The body and its queue entry are committed together, synced, before the 250.
    const lease = options.handoff?.claim() ?? null;
    let entry: QueueEntry;
    try {
      entry = await store.enqueue({ ...input, data: message, ...(lease ? { lease } : {}) });
    } catch (err) {
      if (lease) options.handoff?.unclaim();
      throw err;
    }
    options.onQueued?.(entry);
    return `queued as ${entry.id}`;
  }

  /**
   * Authentication and spam checks: refuses (by throwing the reply) or
   * returns the header fields to add and the message with forged trust
   * headers removed (and a rewritten Subject, when rspamd asks for it).
   */
  async function inspect(
    data: Buffer,
    session: SmtpSession,
    queueId: string,
  ): Promise<{ prepend: string; body: Buffer }> {
    // Trust headers from outside are not ours to believe: X-Spam* and Authentication-Results in our name go.
    let body = editHeader(data, (name, raw) =>
      name.startsWith('x-spam') ||
      (name === 'authentication-results' && claimsOurAuthservId(raw, options.hostname))
        ? null
        : raw,
    );
    if (!options.authentication && !options.rspamd) return { prepend: '', body };
    const env = session.envelope;
    const sender = env.mailFrom?.address ?? '';
    let prepend = '';
    let junk = false;
    if (options.authentication) {
      const v = await checkAuthentication(
        body,
        { ip: session.remoteAddress, helo: session.helo, sender },
        options.authentication,
      );
      if (v.action === 'reject')
        throw reply(550, '5.7.1', `message rejected by the sender domain's DMARC policy: ${v.summary}`);
      prepend += v.header;
      if (v.action === 'junk') {
        junk = true;
        prepend += `X-Spam-Reason: DMARC policy of the sender domain: ${v.summary}\r\n`;
      }
    }
    if (options.rspamd) {
      const answer = await scan(
        options.rspamd,
        Buffer.concat([Buffer.from(prepend, 'latin1'), body]),
        {
          ip: session.remoteAddress,
          helo: session.helo,
          sender,
          recipients: env.rcptTo.map((r) => r.address),
          queueId,
          tls: session.tls ? { cipher: session.tls.cipher, version: session.tls.protocol } : null,
        },
        options.onError,
      );
      if (!answer) prepend += 'X-Spam-Status: unscanned (the spam scanner did not answer)\r\n';
      if (answer) {
        const subject =
          /^Subject:[ \t]?(.*)$/im.exec(headerBlock(body).replace(/\r?\n[ \t]+/g, ' '))?.[1] ?? '';
        const v = verdictOf(answer, subject);
        if (v.kind === 'reject') throw reply(v.code, v.enhanced, v.text);
        if (v.remove.length || v.subject !== undefined)
          body = editHeader(body, (name, raw) =>
            v.remove.includes(name)
              ? null
              : name === 'subject' && v.subject !== undefined
                ? `Subject: ${v.subject}\r\n`
                : raw,
          );
        prepend += v.add.join('');
        junk ||= v.junk;
      }
    }
    if (junk && !/^X-Spam: Yes\r$/m.test(prepend)) prepend += 'X-Spam: Yes\r\n';
    return { prepend, body };
  }

  return server;
}
