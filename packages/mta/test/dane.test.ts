// DANE for outbound mail (RFC 7672) against real SMTP servers on loopback. The DNSSEC-validating
// resolver is a DNS server of the test's own (UDP on loopback, dns-packet) that sets the AD bit for the
// zones it calls signed: real DNSSEC validation (unbound and a signed zone) is what it stands in for.
// MX and address answers for the delivery itself come from the usual test resolver and dialer.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { generateSelfSigned } from '@mailwerk/tls';
import { type Answer, decode, encode, type Question } from 'dns-packet';
import fc from 'fast-check';
import { daneMismatch, querySecure, type TlsaRecord, usable } from '../src/dane.ts';
import { OutboundDelivery } from '../src/index.ts';
import { deliverOne, dialByAddress, type RemoteServer, remoteServer, tableResolver } from './remote.ts';

interface Zone {
  /** "name TYPE" → answers */
  records: Record<string, Answer[]>;
  /** Names whose answers are validated (AD). */
  signed: Set<string>;
  /** Names whose lookups fail (SERVFAIL). */
  servfail: Set<string>;
}

async function validatingResolver(zone: Zone, garbage?: () => Buffer | null) {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const junk = garbage?.();
    if (junk) return socket.send(junk, rinfo.port, rinfo.address);
    const query = decode(msg);
    const q = query.questions?.[0] as Question | undefined;
    const name = q?.name.toLowerCase() ?? '';
    const rcode = zone.servfail.has(name) ? 2 : 0;
    const flags = 0x8180 | rcode | (zone.signed.has(name) ? 1 << 5 : 0);
    const answers = rcode ? [] : (zone.records[`${name} ${q?.type}`] ?? []);
    socket.send(
      encode({ id: query.id, type: 'response', flags, questions: query.questions, answers }),
      rinfo.port,
      rinfo.address,
    );
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { address: `127.0.0.1:${(socket.address() as AddressInfo).port}`, close: () => socket.close() };
}

const spkiSha256 = (pem: string) =>
  createHash('sha256')
    .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
    .digest();
const certSha256 = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest();
const tlsa = (
  name: string,
  usage: number,
  selector: number,
  matchingType: number,
  certificate: Buffer,
): Answer =>
  ({
    type: 'TLSA',
    name,
    ttl: 60,
    data: { usage, selector, matchingType, certificate },
  }) as unknown as Answer;

describe('DANE: matching a certificate chain against TLSA records', () => {
  let pem = '';
  let other = '';
  before(async () => {
    pem = (await generateSelfSigned('mx.a.example')).cert;
    other = (await generateSelfSigned('mx.b.example')).cert;
  });
  const rec = (usage: number, selector: number, matchingType: number, data: Buffer): TlsaRecord => ({
    usage,
    selector,
    matchingType,
    data,
  });

  it('accepts DANE-EE by key or certificate, exact or hashed, whatever the name; refuses what differs', () => {
    const chain = [new X509Certificate(pem)];
    const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
    for (const r of [
      rec(3, 1, 1, spkiSha256(pem)),
      rec(3, 0, 1, certSha256(pem)),
      rec(3, 1, 0, spki),
      rec(3, 0, 2, createHash('sha512').update(new X509Certificate(pem).raw).digest()),
    ])
      assert.equal(daneMismatch(chain, [r], 'another-name.example'), null, JSON.stringify(r));
    assert.match(
      String(daneMismatch(chain, [rec(3, 1, 1, spkiSha256(other))], 'mx.a.example')),
      /matches none/,
    );
  });

  it('accepts DANE-TA only with the host name checked; PKIX usages are unusable for SMTP (RFC 7672 §3.1.3)', () => {
    const chain = [new X509Certificate(pem)];
    assert.equal(daneMismatch(chain, [rec(2, 0, 1, certSha256(pem))], 'mx.a.example'), null);
    assert.notEqual(daneMismatch(chain, [rec(2, 0, 1, certSha256(pem))], 'mx.b.example'), null);
    assert.deepEqual(
      usable([rec(0, 0, 1, certSha256(pem)), rec(1, 1, 1, spkiSha256(pem)), rec(3, 2, 1, Buffer.alloc(32))]),
      [],
    );
    assert.notEqual(daneMismatch(chain, [rec(1, 1, 1, spkiSha256(pem))], 'mx.a.example'), null);
  });
});

describe('DANE: outbound delivery (RFC 7672)', () => {
  let good: RemoteServer;
  let impostor: RemoteServer;
  let resolver: Awaited<ReturnType<typeof validatingResolver>>;
  let out: OutboundDelivery;

  before(async () => {
    const goodTls = await generateSelfSigned('mx.secure.example');
    const impostorTls = await generateSelfSigned('mx.secure.example');
    good = await remoteServer({ key: goodTls.key, cert: goodTls.cert });
    impostor = await remoteServer({ key: impostorTls.key, cert: impostorTls.cert });
    const domains = ['secure.example', 'forged.example', 'insecure.example', 'broken.example'];
    const zone: Zone = { records: {}, signed: new Set(), servfail: new Set(['_25._tcp.mx.broken.example']) };
    for (const d of domains) {
      zone.records[`${d} MX`] = [
        { type: 'MX', name: d, ttl: 60, data: { preference: 10, exchange: `mx.${d}` } },
      ];
      // Every TLSA record names the good server's key.
      zone.records[`_25._tcp.mx.${d} TLSA`] = [tlsa(`_25._tcp.mx.${d}`, 3, 1, 1, spkiSha256(goodTls.cert))];
      if (d !== 'insecure.example') zone.signed.add(d).add(`_25._tcp.mx.${d}`);
    }
    resolver = await validatingResolver(zone);
    // secure.example's MX is the good server; every other MX presents the impostor's certificate.
    const dialPort = (address: string) => (address === '192.0.2.1' ? good.port : impostor.port);
    out = new OutboundDelivery({
      hostname: 'mail.example.org',
      resolver: tableResolver({
        mx: Object.fromEntries(domains.map((d) => [d, [{ exchange: `mx.${d}`, priority: 10 }]])),
        a: Object.fromEntries(domains.map((d, i) => [`mx.${d}`, [`192.0.2.${i + 1}`]])),
      }),
      dialer: dialByAddress(dialPort),
      daneResolver: resolver.address,
      idleMs: 200,
    });
  });
  after(async () => {
    out.close();
    resolver.close();
    await good.close();
    await impostor.close();
  });

  it('delivers over TLS to an MX whose key matches its validated TLSA record', () =>
    deliverOne(out, 'secure.example', good, { secure: true }));

  it('defers, and sends nothing, when the MX presents a key its validated TLSA record does not name', () =>
    deliverOne(out, 'forged.example', impostor, { deferred: /^451 4\.7\.5 .*DANE/ }));

  it('does not apply DANE where the answers are not validated (delivers as without it)', () =>
    deliverOne(out, 'insecure.example', impostor));

  it('defers when the TLSA lookup of the only MX fails under a validated MX (RFC 7672 §2.2.1)', () =>
    deliverOne(out, 'broken.example', impostor, { deferred: /TLSA records .* could not be looked up/ }));

  it('takes any bytes the resolver sends back as a failed lookup, never an exception (fast-check)', async () => {
    let next: Buffer | null = null;
    const junk = await validatingResolver(
      { records: {}, signed: new Set(), servfail: new Set() },
      () => next,
    );
    try {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 600 }), async (bytes) => {
          next = Buffer.from(bytes);
          const a = await querySecure(junk.address, 'mx.example', 'TLSA', 300);
          assert.ok(Array.isArray(a.records));
        }),
        { numRuns: 40 },
      );
    } finally {
      junk.close();
    }
  });
});
