import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { generateSelfSigned, PacedWriter, SLICE } from '../src/index.ts';

/** A loopback TLS server whose connections record every write the application hands their socket. */
async function tlsPair(): Promise<{
  server: Server;
  client: TLSSocket;
  socket: TLSSocket;
  writes: number[];
  maxInFlight: () => number;
}> {
  const { key, cert } = await generateSelfSigned('paced.example.org');
  const writes: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let accept: (s: TLSSocket) => void = () => undefined;
  const accepted = new Promise<TLSSocket>((resolve) => {
    accept = resolve;
  });
  const server = createServer({ key, cert }, (s) => {
    const write = s.write.bind(s) as (chunk: Buffer, cb: (err?: Error | null) => void) => boolean;
    (s as unknown as { write: unknown }).write = (chunk: Buffer, cb: (err?: Error | null) => void) => {
      writes.push(chunk.length);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return write(chunk, (err) => {
        inFlight--;
        cb(err);
      });
    };
    accept(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    rejectUnauthorized: false,
  });
  await once(client, 'secureConnect');
  return { server, client, socket: await accepted, writes, maxInFlight: () => maxInFlight };
}

describe('PacedWriter', () => {
  let pair: Awaited<ReturnType<typeof tlsPair>>;
  before(async () => {
    pair = await tlsPair();
  });
  after(() => {
    pair.client.destroy();
    pair.server.close();
  });

  it('hands the TLS socket one slice of at most SLICE bytes at a time, and every byte arrives in order', async () => {
    const received: Buffer[] = [];
    pair.client.on('data', (d: Buffer) => received.push(d));
    const closed = once(pair.client, 'end');
    const out = new PacedWriter(pair.socket, 64 * 1024);
    // A large write, small ones queued behind it (joined into one by writev on a bare socket), a string.
    const big = Buffer.alloc(1_000_000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const accepted = out.write(big);
    assert.equal(accepted, false, 'beyond the high-water mark, write() asks the caller to wait for drain');
    for (let i = 0; i < 100; i++) out.write(Buffer.from(`line ${i}\r\n`));
    out.write('* BYE done\r\n', 'latin1');
    out.end();
    await closed;
    const all = Buffer.concat(received);
    const tail = Array.from({ length: 100 }, (_, i) => `line ${i}\r\n`).join('') + '* BYE done\r\n';
    assert.equal(all.length, big.length + tail.length);
    assert.ok(all.subarray(0, big.length).equals(big), 'the large write arrives whole and in order');
    assert.equal(all.subarray(big.length).toString('latin1'), tail);
    assert.ok(
      pair.writes.every((n) => n <= SLICE),
      `largest write ${Math.max(...pair.writes)}`,
    );
    assert.equal(pair.maxInFlight(), 1, 'the next slice waits until the previous one has gone out');
    assert.ok(pair.writes.length >= Math.ceil(big.length / SLICE));
  });

  it('ends quietly when the socket is gone: a write after destroy neither throws nor emits an unhandled error', async () => {
    const p = await tlsPair();
    const out = new PacedWriter(p.socket);
    p.socket.destroy();
    const finished = new Promise<void>((resolve) => out.on('close', () => resolve()));
    out.write(Buffer.alloc(100_000));
    out.end();
    await finished;
    assert.ok(out.destroyed);
    p.client.destroy();
    p.server.close();
  });
});
