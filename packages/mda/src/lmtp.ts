/**
 * The MDA's LMTP server (RFC 2033) on our SMTP engine in LMTP mode. RCPT checks
 * that the recipient exists; DATA delivers to each and replies once per
 * recipient. It never listens by itself: the caller does (socket or loopback).
 */
import type { Bus } from '@mailwerk/bus';
import { parseMessage } from '@mailwerk/mime';
import { asReply, reply, type SmtpError, SmtpServer, type SmtpSession } from '@mailwerk/smtp';
import {
  accountExpansion,
  deliveryKeyOf,
  type Expansion,
  expandRecipient,
  expansionRefusal,
  type MailStore,
  normalizeAddress,
} from '@mailwerk/store';
import { type DeliveryInput, deliverToRecipient, type Outbox } from './deliver.ts';

export interface LmtpServerOptions {
  store: MailStore;
  bus: Bus;
  hostname: string;
  /** Largest message accepted, in bytes. */
  maxMessageSize: number;
  /** Called for errors worth an admin's attention. */
  onError?: (err: unknown, context: string) => void;
  /** Lines about what users' Sieve scripts did (deliver.ts). */
  log?: DeliveryInput['log'];
  /** Where Sieve's redirects and vacation replies go (outbox.ts); without one they are not sent. */
  outbox?: Outbox;
}

export function createLmtpServer(options: LmtpServerOptions): SmtpServer {
  const { store, bus } = options;
  const expansions = new Map<string, Map<string, Expansion>>();
  const isLocal = async (domain: string) => (await store.getDomain(domain)) !== null;

  const server = new SmtpServer({
    lmtp: true,
    name: options.hostname,
    banner: 'Mailwerk LMTP',
    size: options.maxMessageSize,
    // RFC 3030 in LMTP: our MTA sends MAIL, RCPT and BDAT with the message in one write, one round trip.
    chunking: true,
    // Clients keep idle sessions for seconds (ours 2 s, Postfix's connection cache 2 s); one left open is closed.
    idleTimeoutMs: 300_000,
    onConnect(session) {
      expansions.set(session.id, new Map());
    },
    onClose(session) {
      expansions.delete(session.id);
    },
    onMailFrom(_address, session) {
      expansions.set(session.id, new Map());
    },
    async onRcptTo(address, session) {
      try {
        expansions.get(session.id)?.set(address.address, await resolve(address.address));
      } catch (err) {
        // A store that fails is a temporary condition (451), never a permanent refusal.
        throw asReply(err, options.onError, `lmtp session ${session.id}: RCPT <${address.address}>`);
      }
    },
    async onData(message, session) {
      try {
        return await handleData(message, session);
      } catch (err) {
        options.onError?.(err, `lmtp session ${session.id}: DATA`);
        throw reply(451, '4.3.0', 'local error in processing, try again later');
      }
    },
  });

  async function resolve(rcpt: string): Promise<Expansion> {
    let canonical: string;
    try {
      canonical = normalizeAddress(rcpt);
    } catch {
      throw reply(550, '5.1.3', `<${rcpt}> bad recipient address syntax`);
    }
    // The common recipient, an account's own address: one read (its domain is local by the store's rules).
    const own = await accountExpansion(store, canonical);
    if (own) return own;
    const domain = canonical.slice(canonical.lastIndexOf('@') + 1);
    if (!(await isLocal(domain))) throw reply(550, '5.1.2', `<${rcpt}> not a local domain`);
    let expansion: Expansion;
    try {
      // The recipient's own domain was just found local: not looked up again for the expansion.
      expansion = await expandRecipient(store, canonical, async (d) => d === domain || (await isLocal(d)));
    } catch (err) {
      const refusal = expansionRefusal(err, rcpt);
      if (refusal) throw reply(refusal.code, refusal.enhanced, refusal.text);
      throw err;
    }
    // Forwarding is the MTA's work: ours expands aliases before LMTP. Another MTA in front (Postfix) that
    // sends an alias with outside targets is told so now, rather than the copy being stranded here.
    if (expansion.external.length > 0)
      throw reply(
        550,
        '5.3.5',
        `<${rcpt}> forwards to addresses outside; only the MTA can forward: expand this alias there`,
      );
    return expansion;
  }

  async function handleData(data: Buffer, session: SmtpSession) {
    const rcpts = session.envelope.rcptTo.map((r) => r.address);
    const { ENVID } = session.envelope.mailFrom?.params ?? {};
    const envid = typeof ENVID === 'string' ? ENVID : null;
    const input = {
      store,
      bus,
      sender: session.envelope.mailFrom?.address ?? '',
      raw: data,
      structure: parseMessage(data),
      // Only our MTA's signed ENVID is a delivery key; a client's ENVID passed on by another MTA is not.
      deliveryKey: await deliveryKeyOf(store, envid),
      ...(options.log ? { log: options.log } : {}),
      ...(options.outbox ? { outbox: options.outbox } : {}),
      hostname: options.hostname,
    };
    const byRcpt = expansions.get(session.id) ?? new Map<string, Expansion>();
    const done = new Set<string>();
    const results: Array<string | SmtpError> = [];
    for (const rcpt of rcpts) {
      const expansion = byRcpt.get(rcpt);
      if (!expansion) {
        results.push(reply(451, '4.3.0', `<${rcpt}> lost its lookup, try again`));
        continue;
      }
      try {
        const r = await deliverToRecipient(input, rcpt, expansion, done);
        results.push(r.ok ? r.text : r.error);
      } catch (err) {
        options.onError?.(err, `delivery to ${rcpt}`);
        results.push(reply(451, '4.3.0', `<${rcpt}> local error in processing, try again later`));
      }
    }
    return results;
  }

  return server;
}
