/**
 * "The rest of the world" on loopback: a real SMTP server (smtp-server) that
 * plays the MX of remote domains, a resolver that answers MX and address
 * queries from a table, and a dialer that sends every address to that server
 * (or refuses, for addresses marked down).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { Dialer, MxResolver, OutboundDelivery } from '../src/index.ts';
import { testTls } from './harness.ts';

export interface Received {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  body8bit: string | undefined;
  /** Each RCPT's DSN parameters (NOTIFY, ORCPT), when the server offers DSN. */
  rcptDsn: Array<{ notify?: string[]; orcpt?: string } | undefined>;
  /** ENVID and RET of MAIL FROM. */
  envelopeDsn: { envid?: string; ret?: string } | undefined;
}

export interface RemoteServer {
  port: number;
  received: Received[];
  /** Connections the server accepted. */
  connections: number;
  /** The most connections it had open at once. */
  mostAtOnce: number;
  /** Per recipient local part: what RCPT answers (e.g. "451 4.2.0 try later"). */
  rcptReplies: Map<string, string>;
  /** What the end of DATA answers, once, then normal again; 'drop' closes the connection mid-DATA. */
  dataReply: string | 'drop' | null;
  close(): Promise<void>;
}

export async function remoteServer(options: Partial<SMTPServerOptions> = {}): Promise<RemoteServer> {
  const tls = await testTls();
  const state: RemoteServer = {
    port: 0,
    received: [],
    connections: 0,
    mostAtOnce: 0,
    rcptReplies: new Map(),
    dataReply: null,
    close: async () => undefined,
  };
  let open = 0;
  const fail = (line: string) => {
    // smtp-server puts its own enhanced code in front of the text.
    const m = /^(\d{3}) (?:\d\.\d{1,3}\.\d{1,3} )?(.*)$/.exec(line)!;
    return Object.assign(new Error(m[2]), { responseCode: Number(m[1]) });
  };
  const server = new SMTPServer({
    name: 'mx.remote.example',
    key: tls.key,
    cert: tls.cert,
    disabledCommands: ['AUTH'],
    logger: false,
    hideENHANCEDSTATUSCODES: false,
    onConnect(_session, cb) {
      state.connections++;
      state.mostAtOnce = Math.max(state.mostAtOnce, ++open);
      cb();
    },
    onClose() {
      open--;
    },
    onRcptTo(address, _session, cb) {
      const local = address.address.slice(0, address.address.lastIndexOf('@'));
      const r = state.rcptReplies.get(local);
      cb(r ? fail(r) : undefined);
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      const behaviour = state.dataReply;
      state.dataReply = null;
      if (behaviour === 'drop') {
        const conn = [...(server.connections as Set<{ id: string; _socket: Socket }>)].find(
          (c) => c.id === session.id,
        );
        conn?._socket.destroy();
        return;
      }
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (behaviour) return cb(fail(behaviour));
        state.received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          body8bit: (session.envelope as { bodyType?: string }).bodyType,
          rcptDsn: session.envelope.rcptTo.map(
            (r) => (r as { dsn?: { notify?: string[]; orcpt?: string } }).dsn,
          ),
          envelopeDsn: (session.envelope as { dsn?: { envid?: string; ret?: string } }).dsn,
        });
        cb();
      });
    },
    ...options,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.server.address() as AddressInfo).port;
  state.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return state;
}

const dnsError = (code: string) => Object.assign(new Error(code), { code });

/** MX and A answers from a table; names not in it do not exist. */
export function tableResolver(table: {
  mx?: Record<string, Array<{ exchange: string; priority: number }>>;
  a?: Record<string, string[]>;
  /** TXT records by name (MTA-STS's `_mta-sts.DOMAIN`). */
  txt?: Record<string, string[][]>;
  /** Domains whose lookups fail temporarily. */
  servfail?: string[];
}): MxResolver {
  const known = (name: string) => name in (table.mx ?? {}) || name in (table.a ?? {});
  return {
    async resolveTxt(name) {
      const t = table.txt?.[name];
      if (t) return t;
      throw dnsError('ENOTFOUND');
    },
    async resolveMx(domain) {
      if (table.servfail?.includes(domain)) throw dnsError('ESERVFAIL');
      const mx = table.mx?.[domain];
      if (mx) return mx;
      throw dnsError(known(domain) ? 'ENODATA' : 'ENOTFOUND');
    },
    async resolve4(host) {
      const a = table.a?.[host];
      if (a) return a;
      throw dnsError(known(host) ? 'ENODATA' : 'ENOTFOUND');
    },
    async resolve6(host) {
      throw dnsError(known(host) ? 'ENODATA' : 'ENOTFOUND');
    },
  };
}

/** Every address reaches the loopback server on `port`, except those in `down` (connection refused). */
export function loopbackDialer(
  port: () => number,
  down: Set<string> = new Set(),
  dialed: string[] = [],
): Dialer {
  return (address) =>
    new Promise((resolve, reject) => {
      dialed.push(address);
      if (down.has(address))
        return reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
      const s = connect({ host: '127.0.0.1', port: port() });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
}

/** Every address to the loopback port `portOf` gives for it (servers that play different MX hosts). */
export function dialByAddress(portOf: (address: string) => number): Dialer {
  return async (address) => {
    const s = connect({ host: '127.0.0.1', port: portOf(address) });
    await once(s, 'connect');
    return s;
  };
}

/**
 * Sends one message to x@`domain` and checks what `server` got: one message more (over TLS when
 * `secure`), or, with `deferred`, nothing, and a 4xx reply that matches it.
 */
export async function deliverOne(
  out: OutboundDelivery,
  domain: string,
  server: RemoteServer,
  expect: { secure?: boolean; deferred?: RegExp } = {},
): Promise<void> {
  const before = server.received.length;
  const [r] = await out.deliver(domain, {
    sender: 'bob@example.org',
    recipients: [{ address: `x@${domain}` }],
    data: Buffer.from(`From: bob@example.org\r\nTo: x@${domain}\r\nSubject: test\r\n\r\nbody\r\n`),
  });
  if (expect.deferred) {
    assert.equal(r!.state, 'pending', JSON.stringify(r));
    assert.match(`${r!.reply!.code} ${r!.reply!.enhanced} ${r!.reply!.text}`, expect.deferred);
    assert.equal(server.received.length, before, 'nothing was sent');
    return;
  }
  assert.equal(r!.state, 'delivered', JSON.stringify(r));
  assert.equal(server.received.length, before + 1);
  if (expect.secure) assert.equal(server.received.at(-1)!.secure, true);
}
