import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, createServer } from 'node:tls';
import { describeCertificate, ensureCertificate } from '../src/index.ts';

describe('TLS certificates', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-tls-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('generates a self-signed certificate once, then reuses it', async () => {
    const paths = {
      certPath: join(dir, 'tls', 'cert.pem'),
      keyPath: join(dir, 'tls', 'key.pem'),
      hostname: 'mail.example.org',
    };
    const first = await ensureCertificate(paths);
    assert.equal(first.generated, true);
    assert.equal((await stat(paths.keyPath)).mode & 0o777, 0o600);
    const info = describeCertificate(first.cert);
    assert.equal(info.selfSigned, true);
    assert.match(info.subject, /CN=mail\.example\.org/);
    assert.match(info.altNames, /DNS:mail\.example\.org/);
    assert.match(info.altNames, /IP Address:127\.0\.0\.1/);
    assert.ok(info.validTo.getTime() > Date.now() + 365 * 86_400_000);
    const second = await ensureCertificate(paths);
    assert.equal(second.generated, false);
    assert.equal(second.cert, first.cert);
  });

  it('serves a real TLS handshake on loopback that a client verifying the name accepts', async () => {
    const { cert, key } = await ensureCertificate({
      certPath: join(dir, 'h', 'cert.pem'),
      keyPath: join(dir, 'h', 'key.pem'),
      hostname: 'mail.example.org',
    });
    const server = createServer({ cert, key }, (s) => s.end('hello\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const c = connect({ host: '127.0.0.1', port, servername: 'mail.example.org', ca: cert }, () => {
          c.setEncoding('utf8');
          let data = '';
          c.on('data', (d) => {
            data += d;
          });
          c.on('end', () => resolve(data));
        });
        c.on('error', reject);
      });
      assert.equal(got, 'hello\n');
    } finally {
      server.close();
    }
  });

  it('refuses a certificate without its key, and a file that is not a certificate', async () => {
    await writeFile(join(dir, 'lonely.pem'), 'x');
    await assert.rejects(
      ensureCertificate({
        certPath: join(dir, 'lonely.pem'),
        keyPath: join(dir, 'nokey.pem'),
        hostname: 'h',
      }),
      /exists but/,
    );
    await writeFile(join(dir, 'garbage.key'), 'x');
    await assert.rejects(
      ensureCertificate({
        certPath: join(dir, 'lonely.pem'),
        keyPath: join(dir, 'garbage.key'),
        hostname: 'h',
      }),
    );
  });
});
