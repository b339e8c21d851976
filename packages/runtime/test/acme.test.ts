// The ACME manager's decisions (which names, when to order) and what it does when the CA refuses: a real
// SQLite store, the "CA" an HTTP server on loopback that answers 404 to everything (an unreachable CA is
// retried by acme-client for over a minute before the same happens). The orders that succeed are in
// apps/cli/test/acme.test.ts, against Pebble.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fromData } from '@mailwerk/config';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { AcmeManager, acmeNames, certificateNames, orderDue } from '../src/acme.ts';

describe('ACME decisions', () => {
  it('covers the host name first, then autoconfig., autodiscover. and mta-sts. of each domain, once each', () => {
    assert.deepEqual(acmeNames('Mail.Example.org', ['example.net', 'EXAMPLE.org']), [
      'mail.example.org',
      'autoconfig.example.net',
      'autodiscover.example.net',
      'mta-sts.example.net',
      'autoconfig.example.org',
      'autodiscover.example.org',
      'mta-sts.example.org',
    ]);
    assert.deepEqual(acmeNames('autoconfig.example.org', ['example.org']), [
      'autoconfig.example.org',
      'autodiscover.example.org',
      'mta-sts.example.org',
    ]);
    assert.deepEqual(acmeNames('mail.example.org', []), ['mail.example.org']);
  });

  it('orders when there is none, when asked, when the names changed or expiry is near; not otherwise', async () => {
    const { cert } = await generateSelfSigned('mail.example.org');
    const names = certificateNames(cert);
    assert.ok(names.includes('mail.example.org'));
    const now = Date.parse('2027-01-01T00:00:00Z');
    const item = (notAfter: string, updated = '2026-12-01T00:00:00Z') => ({
      name: 'acme',
      cert,
      key: 'k',
      notAfter: new Date(notAfter),
      updatedAt: new Date(updated),
    });
    const fine = item('2027-03-01T00:00:00Z');
    const ask = (at: string) => ({ name: 'r', cert: '', key: '', notAfter: null, updatedAt: new Date(at) });
    assert.equal(orderDue(null, null, names, 30, now), 'no certificate yet');
    assert.equal(orderDue(fine, null, names, 30, now), null);
    assert.equal(orderDue(item('2027-01-20T00:00:00Z'), null, names, 30, now), 'it expires within 30 days');
    assert.equal(orderDue(fine, null, [...names, 'mta-sts.example.net'], 30, now), 'the names changed');
    assert.equal(orderDue(fine, ask('2026-12-02T00:00:00Z'), names, 30, now), 'renewal asked for');
    assert.equal(
      orderDue(fine, ask('2026-11-30T00:00:00Z'), names, 30, now),
      null,
      'a request older than the certificate is done',
    );
    assert.equal(
      orderDue({ ...fine, cert: 'garbage' }, null, names, 30, now),
      'the stored certificate does not read',
    );
  });

  it('logs a failed order, keeps what is in use, backs off, and gives the lock back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailwerk-acme-'));
    const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    let asked = 0;
    const ca = createServer((_req, res) => {
      asked++;
      res.writeHead(404).end();
    });
    ca.listen(0, '127.0.0.1');
    await once(ca, 'listening');
    try {
      await store.addDomain('example.org');
      const config = fromData(
        {
          hostname: 'mail.example.org',
          data_dir: dir,
          tls: {
            acme: {
              enabled: true,
              directory_url: `http://127.0.0.1:${(ca.address() as AddressInfo).port}/dir`,
            },
          },
        },
        null,
      );
      const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
      const log = {
        log: (level: string, msg: string, fields: Record<string, unknown> = {}) =>
          lines.push({ level, msg, fields }),
        error: () => undefined,
      };
      let issued = 0;
      const acme = new AcmeManager({
        config,
        store,
        log,
        onCertificate: () => issued++,
        httpListening: true,
      });
      await acme.check('test');
      const failed = lines.find((l) => l.msg === 'certificate order failed; the certificate in use stays');
      assert.ok(failed, JSON.stringify(lines));
      assert.equal(failed.level, 'error');
      assert.equal(failed.fields.failures, 1);
      const wait = Date.parse(String(failed.fields.nextTry)) - Date.now();
      assert.ok(wait > 4 * 60_000 && wait <= 5 * 60_000, `first retry in about 5 minutes, not ${wait} ms`);
      assert.equal(issued, 0);
      assert.equal(await store.getTlsItem('acme'), null);
      // Within the back-off, a check does not order again (no second attempt, no second line).
      await acme.check('test again');
      assert.equal(lines.filter((l) => l.msg.startsWith('ordering')).length, 1);
      assert.equal(asked, 1, 'the CA was asked once');
      // The lock was given back: another orderer could take it now.
      assert.equal(await store.acquireLock('acme-order', 'someone-else', 1000), true);
    } finally {
      ca.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
