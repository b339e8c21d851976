import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { connect } from 'node:tls';
import fc from 'fast-check';
import { readClientHello } from '../src/index.ts';

/** The first bytes a real Node TLS client sends, captured on a plain TCP server. */
async function capture(options: { servername?: string; ALPNProtocols?: string[] }): Promise<Buffer> {
  const server = createServer();
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s: Socket) => s.once('data', resolve)),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const c = connect({ port, host: '127.0.0.1', ...options });
  c.on('error', () => undefined);
  const data = await got;
  c.destroy();
  server.close();
  return data;
}

/** A ClientHello written by hand: the parts the parser reads, with the given extensions. */
function hello(extensions: Buffer | null, sessionId = 32): Buffer {
  const parts: Buffer[] = [
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([sessionId]),
    Buffer.alloc(sessionId, 1),
    Buffer.from([0, 2, 0x13, 0x01]),
    Buffer.from([1, 0]),
  ];
  if (extensions) parts.push(u16(extensions.length), extensions);
  const body = Buffer.concat(parts);
  const hs = Buffer.concat([
    Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]),
    body,
  ]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const ext = (type: number, data: Buffer) => Buffer.concat([u16(type), u16(data.length), data]);
const sni = (name: string) => {
  const n = Buffer.from(name, 'latin1');
  const entry = Buffer.concat([Buffer.from([0]), u16(n.length), n]);
  return ext(0, Buffer.concat([u16(entry.length), entry]));
};
const alpn = (protocols: string[]) => {
  const list = Buffer.concat(
    protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])),
  );
  return ext(16, Buffer.concat([u16(list.length), list]));
};

describe('readClientHello', () => {
  it('reads the server name and ALPN protocols of what a real TLS client sends', async () => {
    const data = await capture({ servername: 'Autoconfig.Example.ORG', ALPNProtocols: ['acme-tls/1'] });
    assert.deepEqual(readClientHello(data), { serverName: 'autoconfig.example.org', alpn: ['acme-tls/1'] });
    const plain = await capture({ servername: 'mail.example.org' });
    assert.deepEqual(readClientHello(plain), { serverName: 'mail.example.org', alpn: [] });
  });

  const table: Array<[string, Buffer, ReturnType<typeof readClientHello>]> = [
    [
      'SNI and two protocols',
      hello(Buffer.concat([sni('a.example'), alpn(['h2', 'http/1.1'])])),
      { serverName: 'a.example', alpn: ['h2', 'http/1.1'] },
    ],
    ['no extensions at all', hello(null), { serverName: null, alpn: [] }],
    [
      'an unknown extension is skipped',
      hello(Buffer.concat([ext(0xff01, Buffer.from([0])), alpn(['acme-tls/1'])])),
      { serverName: null, alpn: ['acme-tls/1'] },
    ],
    ['not a handshake record (HTTP)', Buffer.from('GET / HTTP/1.1\r\n\r\n'), null],
    ['empty', Buffer.alloc(0), null],
    ['the record cut short', hello(sni('a.example')).subarray(0, 40), null],
    ['a handshake that is not a ClientHello', Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0]), null],
    ['a session id longer than the message', hello(null, 32).fill(255, 43, 44), null],
    [
      'an SNI length beyond its extension',
      hello(Buffer.concat([ext(0, Buffer.from([0, 5, 0, 0, 200, 97, 98]))])),
      null,
    ],
    ['an ALPN entry beyond its list', hello(Buffer.concat([ext(16, Buffer.from([0, 3, 9, 97, 98]))])), null],
  ];
  for (const [name, data, want] of table)
    it(name, () => {
      assert.deepEqual(readClientHello(data), want);
    });

  it('never throws for any bytes, nor for a valid ClientHello with a byte changed or cut anywhere (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const r = readClientHello(Buffer.from(bytes));
        assert.ok(r === null || Array.isArray(r.alpn));
      }),
      { numRuns: 2000 },
    );
    // Mutations of a valid ClientHello: one byte changed, or cut anywhere.
    const base = hello(Buffer.concat([sni('autodiscover.example.org'), alpn(['acme-tls/1', 'http/1.1'])]));
    fc.assert(
      fc.property(
        fc.nat(base.length - 1),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(base.length),
        (at, byte, cut) => {
          const copy = Buffer.from(base);
          copy[at] = byte;
          readClientHello(copy.subarray(0, cut));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('reads back what it is given, for any server name and protocols (fast-check)', () => {
    const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    fc.assert(
      fc.property(
        fc.array(label, { minLength: 1, maxLength: 4 }),
        fc.array(fc.stringMatching(/^[!-~]{1,30}$/), { maxLength: 5 }),
        (labels, protocols) => {
          const name = labels.join('.');
          const data = hello(Buffer.concat([sni(name), ...(protocols.length ? [alpn(protocols)] : [])]));
          assert.deepEqual(readClientHello(data), { serverName: name, alpn: protocols });
        },
      ),
    );
  });
});
