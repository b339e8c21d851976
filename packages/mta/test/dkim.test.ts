// DKIM end to end: a user submits over 587, the queue delivers to a loopback "remote" MX, and the
// receiver verifies the signatures with mailauth against the TXT records `mailwerk dns` would print.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashPassword } from '@mailwerk/auth';
import type { SmtpServer } from '@mailwerk/smtp';
import { DEFAULT_MAILBOXES, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import nodemailer from 'nodemailer';
import {
  createDkimSigner,
  createSubmissionServer,
  dkimRecordValue,
  generateDkimKey,
  OutboundDelivery,
  QueueRunner,
  selectorFor,
} from '../src/index.ts';
import { closeServer, eventually, listen, testTls } from './harness.ts';
import { loopbackDialer, type RemoteServer, remoteServer, tableResolver } from './remote.ts';

describe('DKIM', () => {
  let dir: string;
  let store: MailStore;
  let submission: SmtpServer;
  let remote: RemoteServer;
  let runner: QueueRunner;
  let port: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-dkim-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
    await store.createAccount({
      address: 'bob@example.org',
      passwordHash: await hashPassword('pw for bob'),
      mailboxes: [...DEFAULT_MAILBOXES],
    });
    remote = await remoteServer();
    runner = new QueueRunner({
      store,
      hostname: 'mail.example.org',
      lmtp: '127.0.0.1:1',
      isLocalDomain: async (d) => (await store.getDomain(d)) !== null,
      outbound: new OutboundDelivery({
        hostname: 'mail.example.org',
        resolver: tableResolver({
          mx: { 'remote.example': [{ exchange: 'mx.remote.example', priority: 1 }] },
          a: { 'mx.remote.example': ['192.0.2.1'] },
        }),
        dialer: loopbackDialer(() => remote.port),
      }),
      pollMs: 50,
      sign: createDkimSigner(store),
    });
    runner.start();
    submission = createSubmissionServer({
      store,
      hostname: 'mail.example.org',
      tls: await testTls(),
      secure: false,
      allowPlaintext: false,
      sign: createDkimSigner(store),
      onQueued: () => runner.wake(),
    });
    port = await listen(submission);
  });
  after(async () => {
    await runner.stop();
    await closeServer(submission);
    await remote.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const submit = async (subject: string, to: string) => {
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.org', pass: 'pw for bob' },
    });
    try {
      await t.sendMail({
        from: 'Bob <bob@example.org>',
        to,
        subject,
        text: 'Signed, sealed, delivered.\n',
      });
    } finally {
      t.close();
    }
  };
  const send = async (subject: string) => {
    await submit(subject, 'someone@remote.example');
    return eventually(async () =>
      remote.received.find((m) => m.data.toString().includes(`Subject: ${subject}`)),
    );
  };

  /** The receiver's DNS: the TXT records of every key in the store. */
  const resolver = async (name: string, rrtype: string) => {
    if (rrtype !== 'TXT') throw Object.assign(new Error('ENODATA'), { code: 'ENODATA' });
    for (const k of await store.listDkimKeys())
      if (name === `${k.selector}._domainkey.${k.domain}`) return [[dkimRecordValue(k)]];
    throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
  };

  it('sends unsigned mail while the domain has no key', async () => {
    const got = await send('before keys');
    assert.doesNotMatch(got.data.toString(), /DKIM-Signature/);
  });

  it('signs with RSA and Ed25519 keys, and both signatures verify at the receiver', async () => {
    const now = new Date('2026-11-23T12:00:00Z');
    for (const kind of ['rsa', 'ed25519'] as const) {
      const key = generateDkimKey(kind);
      const taken = (await store.listDkimKeys('example.org')).map((k) => k.selector);
      await store.addDkimKey({
        domain: 'example.org',
        selector: selectorFor(now, key.algorithm, taken),
        ...key,
      });
    }
    const got = await send('signed twice');
    const result = await dkimVerify(got.data, { resolver: resolver as never });
    const passes = result.results.map((r) => [r.signingDomain, r.selector, r.status?.result]);
    assert.deepEqual(passes.sort(), [
      ['example.org', '20261123', 'pass'],
      ['example.org', '20261123e', 'pass'],
    ]);
  });

  it('after a rotation signs with the new key only; the old one still verifies mail signed earlier', async () => {
    const earlier = remote.received.at(-1)!.data;
    const key = generateDkimKey('rsa');
    const taken = (await store.listDkimKeys('example.org')).map((k) => k.selector);
    const selector = selectorFor(new Date('2026-11-23T12:00:00Z'), key.algorithm, taken);
    assert.equal(selector, '20261123-2');
    await store.addDkimKey({ domain: 'example.org', selector, ...key });
    const got = await send('after rotation');
    const result = await dkimVerify(got.data, { resolver: resolver as never });
    assert.deepEqual(result.results.map((r) => [r.selector, r.status?.result]).sort(), [
      ['20261123-2', 'pass'],
      ['20261123e', 'pass'],
    ]);
    const old = await dkimVerify(earlier, { resolver: resolver as never });
    assert.ok(old.results.every((r) => r.status?.result === 'pass'));
  });

  it("signs the reports it writes (here a bounce) with the host name's domain's keys", async () => {
    remote.rcptReplies.set('nobody', '550 5.1.1 no such user');
    await submit('will bounce', 'nobody@remote.example');
    // The bounce goes to bob, whose MDA is not reachable here: it waits in the queue, readable.
    const entry = await eventually(async () => (await store.listQueue()).find((e) => e.meta.dsnFor));
    const dsn = await store.blobs.get(entry.blobId);
    assert.match(dsn.toString(), /^DKIM-Signature: /);
    assert.match(dsn.toString(), /From: Mail Delivery System <MAILER-DAEMON@mail\.example\.org>/);
    const result = await dkimVerify(dsn, { resolver: resolver as never });
    assert.ok(result.results.length > 0);
    for (const r of result.results) {
      assert.equal(r.signingDomain, 'example.org');
      assert.equal(r.status?.result, 'pass');
    }
  });
});
