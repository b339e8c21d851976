/**
 * DANE for SMTP (RFC 7672): where the admin names a DNSSEC-validating resolver (`mta.dane_resolver`,
 * such as unbound on the host), a domain whose MX answer the resolver validated (the AD bit, RFC 4035
 * §3.2.3; trusted because the resolver is the admin's own, RFC 7672 §2.1.1) and an MX host with
 * validated TLSA records at `_25._tcp.HOST` get TLS that must match one of those records: DANE-EE(3)
 * against the server's own certificate or key, whatever its name and dates (§3.1.1), DANE-TA(2) against
 * a certificate of the chain the server sends, with the host name checked (§3.1.2). PKIX-TA(0) and
 * PKIX-EE(1) are unusable for SMTP (§3.1.3): with only those, TLS is required but not authenticated.
 * Where anything is insecure, DANE does not apply and delivery is as without it.
 *
 * The resolver is asked over UDP with dns-packet (Node's resolver does not say whether an answer was
 * validated). Answers are untrusted input: a packet that does not decode is a failed lookup.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { createSocket } from 'node:dgram';
import type { PeerCertificate } from 'node:tls';
import { decode, encode } from 'dns-packet';

export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  data: Buffer;
}

export interface SecureAnswer<T> {
  /** The resolver validated the answer (AD). */
  secure: boolean;
  /** NOERROR or NXDOMAIN: an answer (possibly empty); anything else is a failed lookup. */
  ok: boolean;
  records: T[];
}

const AD = 1 << 5;
const RD = 1 << 8;

/** One query to `resolver` ("host:port"), with the DO bit so the resolver validates; within `timeoutMs`. */
export function querySecure(
  resolver: string,
  name: string,
  type: 'MX' | 'TLSA',
  timeoutMs = 5000,
): Promise<SecureAnswer<unknown>> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(resolver);
  const host = m ? m[1]! : resolver;
  const port = m ? Number(m[2]) : 53;
  const id = Math.floor(Math.random() * 65536);
  const query = encode({
    id,
    type: 'query',
    flags: RD,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 1 << 15, options: [] } as never],
  });
  return new Promise((resolve) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (answer: SecureAnswer<unknown>) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const failed = { secure: false, ok: false, records: [] };
    const timer = setTimeout(() => done(failed), timeoutMs);
    socket.on('error', () => done(failed));
    socket.on('message', (msg) => {
      let reply: ReturnType<typeof decode>;
      try {
        reply = decode(msg);
      } catch {
        return done(failed);
      }
      if (reply.id !== id) return;
      const rcode = (reply.flags ?? 0) & 0xf;
      const records = (reply.answers ?? [])
        .filter((a) => a.type === type)
        .map((a) => (a as { data: unknown }).data);
      done({ secure: ((reply.flags ?? 0) & AD) !== 0, ok: rcode === 0 || rcode === 3, records });
    });
    socket.send(query, port, host);
  });
}

export async function secureTlsa(
  resolver: string,
  host: string,
  port: number,
): Promise<SecureAnswer<TlsaRecord>> {
  const a = await querySecure(resolver, `_${port}._tcp.${host}`, 'TLSA');
  const records: TlsaRecord[] = [];
  for (const r of a.records as Array<{
    usage: number;
    selector: number;
    matchingType: number;
    certificate: Buffer;
  }>)
    if (Buffer.isBuffer(r?.certificate))
      records.push({
        usage: r.usage,
        selector: r.selector,
        matchingType: r.matchingType,
        data: r.certificate,
      });
  return { ...a, records };
}

/** The records DANE can use for SMTP (§3.1.3): DANE-TA(2) and DANE-EE(3), with known selectors and matching. */
export const usable = (records: readonly TlsaRecord[]): TlsaRecord[] =>
  records.filter((r) => (r.usage === 2 || r.usage === 3) && r.selector <= 1 && r.matchingType <= 2);

function digest(cert: X509Certificate, r: TlsaRecord): Buffer {
  const der = r.selector === 0 ? cert.raw : cert.publicKey.export({ type: 'spki', format: 'der' });
  if (r.matchingType === 1) return createHash('sha256').update(der).digest();
  if (r.matchingType === 2) return createHash('sha512').update(der).digest();
  return der;
}

/** The server's certificate chain, leaf first, as it was sent. */
export function peerChain(
  leaf: PeerCertificate & { issuerCertificate?: PeerCertificate },
): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let c: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = leaf;
  while (c?.raw && !seen.has(c.fingerprint256) && chain.length < 10) {
    seen.add(c.fingerprint256);
    chain.push(new X509Certificate(c.raw));
    c = c.issuerCertificate as typeof c;
  }
  return chain;
}

/** Why the chain does not match the host's usable TLSA records, or null when it does (RFC 7672 §3.1). */
export function daneMismatch(
  chain: readonly X509Certificate[],
  records: readonly TlsaRecord[],
  host: string,
): string | null {
  const leaf = chain[0];
  if (!leaf) return 'the server sent no certificate';
  for (const r of usable(records)) {
    if (r.usage === 3 && digest(leaf, r).equals(r.data)) return null;
    if (r.usage === 2) {
      const i = chain.findIndex((c) => digest(c, r).equals(r.data));
      // The trust anchor is in the chain; each certificate below it is signed by the next one up.
      if (i < 0) continue;
      let signed = true;
      for (let k = 0; k < i; k++) signed &&= chain[k]!.verify(chain[k + 1]!.publicKey);
      if (signed && leaf.checkHost(host) !== undefined) return null;
    }
  }
  return `the certificate of ${host} matches none of its TLSA records`;
}
