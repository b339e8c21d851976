/**
 * Delivery to other domains over SMTP (RFC 5321 §5): the domain's MX hosts in
 * preference order (the domain itself when it has no MX; a null MX, RFC 7505,
 * is a permanent failure), each host's addresses in turn, opportunistic
 * STARTTLS, one transaction per domain with all its recipients, connections
 * kept open a few seconds for the next message to the same domain, and at
 * most `perDomain` connections to one domain at a time.
 *
 * The resolver and the dialer are dependencies, so tests point MX answers and
 * TCP connections at loopback. The SMTP client is nodemailer's
 * SMTPConnection (dot-stuffing, PIPELINING, DSN parameters, STARTTLS).
 *
 * Every recipient comes back with a reply and a state: 2xx delivered, 4xx
 * (and every network or DNS trouble) pending, 5xx failed.
 */
import { promises as dns } from 'node:dns';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { foldLongLines } from '@mailwerk/smtp';
import { parseReply, type RecipientResult } from '@mailwerk/store';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { daneMismatch, peerChain, querySecure, secureTlsa, type TlsaRecord, usable } from './dane.ts';
import {
  currentPolicy,
  httpsPolicyFetcher,
  memoryPolicyCache,
  mxMatches,
  type PolicyCache,
  type PolicyFetcher,
} from './mta-sts.ts';

export interface MxResolver {
  resolveMx(domain: string): Promise<Array<{ exchange: string; priority: number }>>;
  resolve4(host: string): Promise<string[]>;
  resolve6(host: string): Promise<string[]>;
  /** For MTA-STS's `_mta-sts` record; without it no domain has a policy. */
  resolveTxt?(name: string): Promise<string[][]>;
}

/** Opens a TCP connection to an address (IPv4 or IPv6) and port. */
export type Dialer = (address: string, port: number, timeoutMs: number) => Promise<Socket>;

export const defaultDialer: Dialer = (address, port, timeoutMs) =>
  new Promise((resolve, reject) => {
    const socket = netConnect({ host: address, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.setTimeout(0);
      resolve(socket);
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error(`connection to ${address}:${port} timed out`));
    });
    socket.once('error', reject);
  });

export interface OutboundOptions {
  /** Our name in EHLO. */
  hostname: string;
  resolver?: MxResolver;
  dialer?: Dialer;
  /** The SMTP port of remote hosts (25; tests use another). */
  port?: number;
  /** Connections to one domain at a time. */
  perDomain?: number;
  /** How long an idle connection is kept for the next message to its domain. */
  idleMs?: number;
  connectTimeoutMs?: number;
  /** Inactivity during a transaction before it is given up (RFC 5321 §4.5.3.2 asks for minutes). */
  socketTimeoutMs?: number;
  /** Static routes: destination domain → "host:port" (no MX lookup). Before the relay. */
  routes?: Record<string, string>;
  /** A relay host (smarthost) for outside mail, or for the listed domains only. */
  relay?: RelayHost;
  /** MTA-STS (RFC 8461): how policies are fetched and where they are kept (mta-sts.ts). */
  mtaSts?: { fetch?: PolicyFetcher; cache?: PolicyCache };
  /** Certificate authorities for verified TLS to MX hosts, instead of the system's (tests). */
  tlsCa?: string;
  /** DANE (RFC 7672, dane.ts): the DNSSEC-validating resolver ("host:port") whose AD bit is trusted. */
  daneResolver?: string;
}

export interface RelayHost {
  host: string;
  port: number;
  /** starttls: STARTTLS required; tls: implicit TLS; none: plain. */
  tls: 'starttls' | 'tls' | 'none';
  verifyCertificate: boolean;
  auth?: { user: string; pass: string };
  /** Only these destination domains (empty: all). */
  domains: string[];
}

/** Where one domain's mail goes: its MX hosts, a static route, or the relay. */
interface Target {
  hosts: string[];
  port: number;
  tls: 'opportunistic' | 'starttls' | 'tls' | 'none';
  verify: boolean;
  auth?: { user: string; pass: string };
  /** The domain's MTA-STS policy is "enforce": verified TLS to a host it names, or no delivery. */
  stsEnforced?: boolean;
  /** DANE: the validated TLSA records of each MX host that has them (TLS that matches them, or not this host). */
  dane?: Map<string, TlsaRecord[]>;
}

export interface OutboundMessage {
  sender: string;
  recipients: Array<{ address: string; orcpt?: string; notify?: string[] }>;
  data: Buffer;
  envid?: string;
  ret?: 'FULL' | 'HDRS';
}

interface Connection {
  conn: SMTPConnection;
  host: string;
  extensions: string[];
  tls: boolean;
  timer: NodeJS.Timeout | null;
}

/** A failure that decides every recipient of the message the same way. */
class Final extends Error {
  readonly reply: string;
  constructor(reply: string) {
    super(reply);
    this.reply = reply;
  }
}

const stateOf = (reply: string): RecipientResult['state'] =>
  reply.startsWith('2') ? 'delivered' : reply.startsWith('5') ? 'failed' : 'pending';

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 500);

const is8bit = (data: Buffer): boolean => {
  for (let i = 0; i < data.length; i++) if (data[i]! > 0x7f) return true;
  return false;
};

const dnsCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? '';

/** A recipient's result; `relayed` when it went to a server that does not take DSN requests. */
export type OutboundResult = RecipientResult & { relayed?: boolean };

/** Recipients split into runs with equal NOTIFY and ORCPT, in their order of first appearance. */
export function dsnGroups<R extends { notify?: string[]; orcpt?: string }>(recipients: R[]): R[][] {
  const groups = new Map<string, R[]>();
  for (const r of recipients) {
    const key = JSON.stringify([r.notify ?? null, r.orcpt ?? null]);
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()];
}

export class OutboundDelivery {
  private o: Required<Omit<OutboundOptions, 'relay' | 'mtaSts' | 'tlsCa' | 'daneResolver'>> &
    Pick<OutboundOptions, 'relay' | 'tlsCa' | 'daneResolver'>;
  private readonly stsFetch: PolicyFetcher;
  private readonly stsCache: PolicyCache;
  private readonly idle = new Map<string, Connection[]>();
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, Array<() => void>>();
  private closed = false;

  constructor(options: OutboundOptions) {
    this.o = {
      resolver: new dns.Resolver(),
      dialer: defaultDialer,
      port: 25,
      perDomain: 3,
      idleMs: 5_000,
      connectTimeoutMs: 30_000,
      socketTimeoutMs: 300_000,
      routes: {},
      ...options,
    };
    this.stsFetch = options.mtaSts?.fetch ?? httpsPolicyFetcher();
    this.stsCache = options.mtaSts?.cache ?? memoryPolicyCache();
  }

  /** New static routes and relay host (a reloaded configuration); messages on their way finish as they began. */
  reroute(routes: Record<string, string>, relay: RelayHost | undefined): void {
    this.o.routes = routes;
    this.o.relay = relay;
    // Connections kept open were opened for the old routing.
    for (const list of this.idle.values()) for (const c of list) this.drop(c);
    this.idle.clear();
  }

  /** Delivers one message to the recipients of one domain. */
  async deliver(domain: string, message: OutboundMessage): Promise<OutboundResult[]> {
    const all = (reply: string) =>
      message.recipients.map((r) => ({
        address: r.address,
        state: stateOf(reply),
        reply: parseReply(reply),
      }));
    await this.slot(domain);
    let c: Connection | null = null;
    const results: OutboundResult[] = [];
    try {
      c = await this.connection(domain);
      // RFC 3461 §4.1-4.2: NOTIFY and ORCPT belong to each recipient; one transaction per set of equal ones.
      const groups = c.extensions.includes('DSN') ? dsnGroups(message.recipients) : [message.recipients];
      for (const recipients of groups) {
        try {
          results.push(...(await this.transaction(c, { ...message, recipients })));
        } catch (err) {
          if (!(err instanceof Final)) throw err;
          results.push(
            ...recipients.map((r) => ({
              address: r.address,
              state: stateOf(err.reply),
              reply: parseReply(err.reply),
            })),
          );
        }
      }
      this.keep(domain, c);
      c = null;
      return results;
    } catch (err) {
      const done = new Set(results.map((r) => r.address));
      const rest = (reply: string) => [...results, ...all(reply).filter((r) => !done.has(r.address))];
      if (err instanceof Final) return rest(err.reply);
      return rest(`451 4.4.2 ${oneLine(err instanceof Error ? err.message : String(err))}`);
    } finally {
      if (c) this.drop(c);
      this.free(domain);
    }
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) this.drop(c);
    this.idle.clear();
  }

  private async slot(domain: string): Promise<void> {
    while ((this.active.get(domain) ?? 0) >= this.o.perDomain) {
      await new Promise<void>((resolve) => {
        const q = this.waiting.get(domain) ?? [];
        q.push(resolve);
        this.waiting.set(domain, q);
      });
    }
    this.active.set(domain, (this.active.get(domain) ?? 0) + 1);
  }

  private free(domain: string): void {
    const n = (this.active.get(domain) ?? 1) - 1;
    if (n > 0) this.active.set(domain, n);
    else this.active.delete(domain);
    const queue = this.waiting.get(domain);
    queue?.shift()?.();
    if (queue?.length === 0) this.waiting.delete(domain);
  }

  private keep(domain: string, c: Connection): void {
    if (this.closed) {
      this.drop(c);
      return;
    }
    const list = this.idle.get(domain) ?? [];
    c.timer = setTimeout(() => {
      const l = this.idle.get(domain);
      if (l)
        this.idle.set(
          domain,
          l.filter((x) => x !== c),
        );
      this.drop(c);
    }, this.o.idleMs);
    c.timer.unref();
    list.push(c);
    this.idle.set(domain, list);
  }

  private drop(c: Connection): void {
    if (c.timer) clearTimeout(c.timer);
    try {
      c.conn.quit();
    } catch {
      c.conn.close();
    }
  }

  /** An idle connection to the domain that still answers RSET, or a new one. */
  private async connection(domain: string): Promise<Connection> {
    const list = this.idle.get(domain) ?? [];
    while (list.length) {
      const c = list.pop()!;
      if (c.timer) clearTimeout(c.timer);
      const ok = await new Promise<boolean>((resolve) => c.conn.reset((err) => resolve(!err)));
      if (ok) return c;
      this.drop(c);
    }
    return this.open(domain);
  }

  /** The hosts to try, best first: MX by preference (equal ones shuffled), else the domain itself. */
  private async hosts(domain: string): Promise<string[]> {
    let mx: Array<{ exchange: string; priority: number }>;
    try {
      mx = await this.o.resolver.resolveMx(domain);
    } catch (err) {
      const code = dnsCode(err);
      if (code === 'ENOTFOUND')
        throw new Final(`550 5.1.2 domain ${domain} does not exist (DNS: no such domain)`);
      if (code !== 'ENODATA')
        throw new Final(`451 4.4.3 DNS lookup of the MX of ${domain} failed (${code || 'error'})`);
      mx = [];
    }
    if (mx.length === 1 && (mx[0]!.exchange === '' || mx[0]!.exchange === '.'))
      throw new Final(`556 5.1.10 ${domain} does not accept mail (null MX, RFC 7505)`);
    if (mx.length === 0) return [domain];
    return mx
      .map((m) => ({ ...m, r: Math.random() }))
      .sort((a, b) => a.priority - b.priority || a.r - b.r)
      .map((m) => m.exchange.replace(/\.$/, ''));
  }

  private async addresses(host: string): Promise<string[]> {
    if (isIP(host)) return [host];
    const out: string[] = [];
    let tempFail = false;
    for (const lookup of [
      this.o.resolver.resolve4.bind(this.o.resolver),
      this.o.resolver.resolve6.bind(this.o.resolver),
    ]) {
      try {
        out.push(...(await lookup(host)));
      } catch (err) {
        const code = dnsCode(err);
        if (code !== 'ENODATA' && code !== 'ENOTFOUND') tempFail = true;
      }
    }
    if (out.length === 0 && tempFail) throw new Error(`DNS lookup of ${host} failed`);
    return out;
  }

  /** Where the domain's mail goes: a static route, the relay, or its MX hosts. */
  private async target(domain: string): Promise<Target> {
    const route = this.o.routes?.[domain.toLowerCase()];
    if (route) {
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(route);
      return { hosts: [m ? m[1]! : route], port: m ? Number(m[2]) : 25, tls: 'opportunistic', verify: false };
    }
    const relay = this.o.relay;
    if (relay && (relay.domains.length === 0 || relay.domains.includes(domain.toLowerCase())))
      return {
        hosts: [relay.host],
        port: relay.port,
        tls: relay.tls,
        verify: relay.verifyCertificate,
        ...(relay.auth ? { auth: relay.auth } : {}),
      };
    const hosts = await this.hosts(domain);
    const dane = await this.daneTarget(domain, hosts);
    if (dane) return dane;
    const policy = await currentPolicy(domain, this.o.resolver, this.stsFetch, this.stsCache);
    if (policy?.mode === 'enforce') {
      // RFC 8461 §4.1-4.2: only the MX hosts the policy names, each with a certificate valid for its name.
      const allowed = hosts.filter((h) => mxMatches(h, policy.mx));
      if (allowed.length === 0)
        throw new Final(
          `451 4.7.5 the MTA-STS policy of ${domain} (enforce) names none of its MX hosts (${hosts.join(', ')})`,
        );
      return { hosts: allowed, port: this.o.port, tls: 'starttls', verify: true, stsEnforced: true };
    }
    return { hosts, port: this.o.port, tls: 'opportunistic', verify: false };
  }

  /**
   * DANE applies when the domain's MX answer is validated and one of its hosts has validated TLSA
   * records (RFC 7672 §2.2); it then takes precedence over MTA-STS (RFC 8461 §2). A host whose TLSA
   * lookup fails under a validated MX is not used (§2.2.1). Null: DANE does not apply.
   */
  private async daneTarget(domain: string, hosts: string[]): Promise<Target | null> {
    const resolver = this.o.daneResolver;
    if (!resolver || (hosts.length === 1 && hosts[0] === domain)) return null;
    const mx = await querySecure(resolver, domain, 'MX');
    if (!mx.ok || !mx.secure) return null;
    const dane = new Map<string, TlsaRecord[]>();
    const failed = new Set<string>();
    for (const host of hosts) {
      const t = await secureTlsa(resolver, host, this.o.port);
      if (!t.ok) failed.add(host);
      else if (t.secure && t.records.length > 0) dane.set(host, t.records);
    }
    if (dane.size === 0 && failed.size === 0) return null;
    const usableHosts = hosts.filter((h) => !failed.has(h));
    if (usableHosts.length === 0)
      throw new Final(
        `451 4.7.5 the TLSA records of the MX hosts of ${domain} could not be looked up (DANE)`,
      );
    return { hosts: usableHosts, port: this.o.port, tls: 'opportunistic', verify: false, dane };
  }

  private async open(domain: string): Promise<Connection> {
    const problems: string[] = [];
    let permanent: string | null = null;
    let anyAddress = false;
    const target = await this.target(domain);
    for (const host of target.hosts) {
      let addrs: string[];
      try {
        addrs = await this.addresses(host);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      anyAddress ||= addrs.length > 0;
      for (const address of addrs) {
        let socket: Socket;
        try {
          socket = await this.o.dialer(address, target.port, this.o.connectTimeoutMs);
        } catch (err) {
          problems.push(`${host}[${address}]: ${(err as Error).message}`);
          continue;
        }
        try {
          return await this.greet(socket, host, target);
        } catch (err) {
          if (err instanceof Final) throw err;
          const e = err as { response?: string; message: string };
          const text = oneLine(e.response ?? e.message);
          problems.push(`${host}[${address}]: ${text}`);
          // A host that refuses us outright (5xx greeting or EHLO) is final only if every host does.
          if (/^5\d\d/.test(text)) permanent ??= text;
        }
      }
    }
    if (!anyAddress && problems.length === 0)
      throw new Final(`550 5.1.2 no address for the mail hosts of ${domain}`);
    if (permanent && problems.every((p) => /: 5\d\d/.test(p))) throw new Final(permanent);
    if (target.dane?.size)
      throw new Final(
        `451 4.7.5 no MX host of ${domain} took a TLS connection its DANE TLSA records accept: ${problems.slice(-3).join('; ')}`,
      );
    if (target.stsEnforced)
      throw new Final(
        `451 4.7.5 no MX host of ${domain} took a TLS connection with a valid certificate, which its MTA-STS policy (enforce) requires: ${problems.slice(-3).join('; ')}`,
      );
    throw new Final(`451 4.4.1 could not reach a mail host of ${domain}: ${problems.slice(-3).join('; ')}`);
  }

  private greet(socket: Socket, host: string, target: Target): Promise<Connection> {
    const tlsa = target.dane?.get(host);
    // A DANE host: STARTTLS required, its certificate checked against the TLSA records below, not a CA.
    const tlsMode = tlsa ? 'starttls' : target.tls;
    const conn = new SMTPConnection({
      connection: socket,
      host,
      port: target.port,
      name: this.o.hostname,
      // A relay: STARTTLS required, or TLS from the first byte; an MX: opportunistic, where any certificate
      // is better than none, unless the domain's MTA-STS policy enforces verified TLS (no DANE yet).
      secure: tlsMode === 'tls',
      ...(tlsMode === 'starttls' ? { requireTLS: true } : {}),
      ...(tlsMode === 'opportunistic' ? { opportunisticTLS: true } : {}),
      ...(tlsMode === 'none' ? { ignoreTLS: true } : {}),
      tls: {
        rejectUnauthorized: target.verify && !tlsa,
        servername: host,
        ...(target.verify && this.o.tlsCa ? { ca: this.o.tlsCa } : {}),
      },
      greetingTimeout: this.o.connectTimeoutMs,
      socketTimeout: this.o.socketTimeoutMs,
      logger: false,
    } as ConstructorParameters<typeof SMTPConnection>[0]);
    return new Promise((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => {
        if (tlsa && usable(tlsa).length > 0) {
          const tls = (conn as unknown as { _socket: TLSSocket })._socket;
          const why = daneMismatch(peerChain(tls.getPeerCertificate(true)), tlsa, host);
          if (why) {
            conn.close();
            reject(new Error(`DANE: ${why}`));
            return;
          }
        }
        const ready = () => {
          conn.removeListener('error', reject);
          // Later errors end up in the send callback; an idle connection's error only closes it.
          conn.on('error', () => undefined);
          const ext = (conn as unknown as { _supportedExtensions: string[] })._supportedExtensions ?? [];
          resolve({ conn, host, extensions: ext, tls: conn.secure, timer: null });
        };
        if (!target.auth) return ready();
        conn.login({ user: target.auth.user, pass: target.auth.pass }, (err) => {
          if (!err) return ready();
          conn.close();
          // Our credentials, not the message: it waits in the queue until the admin fixes them.
          const e = err as { response?: string; message: string };
          reject(
            new Final(
              `454 4.7.0 the relay host ${host} refused our sign-in: ${oneLine(e.response ?? e.message)}`,
            ),
          );
        });
      });
    });
  }

  private async transaction(c: Connection, m: OutboundMessage): Promise<OutboundResult[]> {
    // RFC 6531: a non-ASCII address needs SMTPUTF8 on the other side; there is no downgrade for it.
    const utf8 = [m.sender, ...m.recipients.map((r) => r.address)].some((a) => /[^\x00-\x7f]/.test(a));
    if (utf8 && !c.extensions.includes('SMTPUTF8'))
      throw new Final(
        `553 5.6.7 ${c.host} does not support SMTPUTF8, needed for an internationalized address`,
      );
    // Mail from elsewhere (an alias forwarding) may carry lines over 998 octets; fold them as Postfix does.
    const data = foldLongLines(m.data);
    const eightBit = is8bit(data);
    // RFC 6152: 8-bit data to a server without 8BITMIME must be converted or returned; we return it.
    if (eightBit && !c.extensions.includes('8BITMIME'))
      throw new Final(`554 5.6.3 ${c.host} does not support 8BITMIME and the message has 8-bit content`);
    const dsn = c.extensions.includes('DSN');
    const envelope = {
      from: m.sender,
      to: m.recipients.map((r) => r.address),
      size: data.length,
      use8BitMime: eightBit,
      ...(dsn
        ? {
            dsn: {
              ...(m.envid ? { envid: m.envid } : {}),
              ...(m.ret ? { ret: m.ret } : {}),
              // Every recipient of this transaction has the same (see dsnGroups).
              notify: m.recipients[0]?.notify ?? [],
              ...(m.recipients[0]?.orcpt ? { orcpt: m.recipients[0].orcpt } : {}),
            },
          }
        : {}),
    };
    const info = await new Promise<{
      accepted: string[];
      rejectedErrors?: Array<{ recipient?: string; response?: string; responseCode?: number }>;
      response: string;
    }>((resolve, reject) => {
      c.conn.send(envelope as Parameters<SMTPConnection['send']>[0], data, (err, info) => {
        if (err) {
          const e = err as { response?: string; responseCode?: number; message: string };
          if (e.responseCode && e.response) return reject(new Final(oneLine(e.response)));
          return reject(new Error(`${c.host}: ${oneLine(e.message)}`));
        }
        resolve(info as never);
      });
    });
    const byAddress = new Map<string, string>();
    for (const r of info.rejectedErrors ?? [])
      if (r.recipient) byAddress.set(r.recipient, oneLine(r.response ?? `${r.responseCode ?? 550} rejected`));
    const accepted = oneLine(info.response);
    return m.recipients.map((r) => {
      const reply = byAddress.get(r.address) ?? `${accepted} (${c.host}${c.tls ? ', TLS' : ''})`;
      const state = stateOf(reply);
      // RFC 3461 §5.2.2: a server without DSN did not get NOTIFY; a success is then ours to report, as "relayed".
      return {
        address: r.address,
        state,
        reply: parseReply(reply),
        ...(state === 'delivered' && !dsn ? { relayed: true } : {}),
      };
    });
  }
}
