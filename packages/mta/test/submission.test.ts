// Submission (587 STARTTLS, 465 TLS) with nodemailer and a raw client, over loopback.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import type { SmtpServer } from '@mailwerk/smtp';
import { DEFAULT_MAILBOXES, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import nodemailer from 'nodemailer';
import { createSubmissionServer, SendLimiter, type SubmissionServerOptions } from '../src/index.ts';
import { closeServer, listen, RawClient, testTls } from './harness.ts';

const PASSWORD = 'a good password';

describe('submission', () => {
  let dir: string;
  let store: MailStore;
  let starttls: SmtpServer;
  let implicit: SmtpServer;
  let port: number;
  let securePort: number;
  const signed: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-submission-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
    await store.addDomain('example.net');
    const hash = await hashPassword(PASSWORD);
    for (const u of ['bob', 'ann', 'limited'])
      await store.createAccount({
        address: `${u}@example.org`,
        passwordHash: hash,
        mailboxes: [...DEFAULT_MAILBOXES],
      });
    await store.addAlias({ address: 'sales@example.org', targets: ['bob@example.org', 'ann@example.org'] });
    await store.addAlias({ address: '@example.org', targets: ['bob@example.org'] });
    const throttle = new AuthThrottle({ baseDelayMs: 100, maxDelayMs: 400 });
    const sendLimiter = new SendLimiter();
    const common = {
      store,
      hostname: 'mail.example.org',
      tls: await testTls(),
      allowPlaintext: false,
      throttle,
      sendLimiter,
      limits: { maxRecipients: 3, messagesPerHour: 1000 },
      sign: async (_m: Buffer, domain: string) => {
        signed.push(domain);
        return `X-Test-Signed: ${domain}\r\n`;
      },
    };
    starttls = createSubmissionServer({ ...common, secure: false });
    implicit = createSubmissionServer({ ...common, secure: true });
    port = await listen(starttls);
    securePort = await listen(implicit);
  });
  after(async () => {
    await closeServer(starttls);
    await closeServer(implicit);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A STARTTLS submission server for one test, with `extra` options, on its own port. */
  const withServer = async (
    extra: Partial<SubmissionServerOptions>,
    run: (port: number) => Promise<void>,
  ) => {
    const server = createSubmissionServer({
      store,
      hostname: 'mail.example.org',
      tls: await testTls(),
      secure: false,
      allowPlaintext: false,
      ...extra,
    });
    const port = await listen(server);
    try {
      await run(port);
    } finally {
      await closeServer(server);
    }
  };

  const transport = (user = 'bob@example.org', pass = PASSWORD, secure = false) =>
    nodemailer.createTransport({
      host: '127.0.0.1',
      port: secure ? securePort : port,
      secure,
      requireTLS: !secure,
      tls: { rejectUnauthorized: false },
      auth: { user, pass },
    });

  const queued = async (id: string) => {
    const entry = (await store.listQueue()).find((e) => e.id === id);
    assert.ok(entry, `queue entry ${id}`);
    return { entry, data: (await store.blobs.get(entry.blobId)).toString() };
  };
  const idOf = (response: string) => /queued as (\S+)/.exec(response)![1]!;

  it('offers AUTH only after STARTTLS, and refuses MAIL without it', async () => {
    const c = await RawClient.open(port);
    const ehlo = await c.cmd('EHLO client.example');
    assert.match(ehlo, /STARTTLS/);
    assert.doesNotMatch(ehlo, /AUTH/);
    assert.match(await c.cmd('AUTH PLAIN AGJvYkBleGFtcGxlLm9yZwBhIGdvb2QgcGFzc3dvcmQ='), /^538 5\.7\.11/m);
    assert.match(await c.cmd('MAIL FROM:<bob@example.org>'), /^530 5\.7\.0/m);
    await c.close();
  });

  it('takes mail from a signed-in user over 587 and 465, adds Date and Message-ID, signs it and queues it', async () => {
    for (const secure of [false, true]) {
      const t = transport('bob@example.org', PASSWORD, secure);
      const info = await t.sendMail({
        envelope: { from: 'bob@example.org', to: ['someone@elsewhere.example', 'ann@example.org'] },
        raw: 'From: Bob <bob@example.org>\r\nTo: someone@elsewhere.example\r\nSubject: hi\r\n\r\nHello.\r\n',
      });
      t.close();
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as/);
      const { entry, data } = await queued(idOf(info.response));
      assert.equal(entry.sender, 'bob@example.org');
      assert.deepEqual(
        entry.recipients.map((r) => r.address),
        ['someone@elsewhere.example', 'ann@example.org'],
      );
      assert.equal(entry.meta.authUser, 'bob@example.org');
      assert.match(
        data,
        /^Received: by mail\.example\.org \(Mailwerk\) with ESMTPSA id \S+\r\n\t\(using TLS[^)]*\);\r\n\t/,
      );
      assert.doesNotMatch(data, /127\.0\.0\.1|client\.example/);
      assert.match(
        data,
        /\r\nX-Test-Signed: example\.org\r\nDate: [A-Z][a-z]{2}, \d+ [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\r\nMessage-ID: <[0-9a-f]+@mail\.example\.org>\r\nFrom: Bob/,
      );
    }
    assert.deepEqual(signed.slice(-2), ['example.org', 'example.org']);
  });

  it('offers AUTH in the clear only when the admin allows it', async () => {
    await withServer({ allowPlaintext: true }, async (p) => {
      const c = await RawClient.open(p);
      assert.match(await c.cmd('EHLO client.example'), /AUTH PLAIN LOGIN/);
      c.close();
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: p,
        ignoreTLS: true,
        auth: { user: 'bob@example.org', pass: PASSWORD },
      });
      const info = await t.sendMail({
        envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: bob@example.org\r\n\r\nx\r\n',
      });
      assert.match(info.response, /^250 /);
      t.close();
    });
  });

  it('takes AUTH LOGIN as well as PLAIN', async () => {
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'ann@example.org', pass: PASSWORD },
      authMethod: 'LOGIN',
    });
    const info = await t.sendMail({
      envelope: { from: 'ann@example.org', to: ['x@elsewhere.example'] },
      raw: 'From: ann@example.org\r\n\r\nx\r\n',
    });
    assert.match(info.response, /^250 /);
    t.close();
  });

  it('keeps the Date and Message-ID a client set, and folds lines over 998 octets', async () => {
    const t = transport();
    const info = await t.sendMail({
      envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
      raw: `From: bob@example.org\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <mine@example.org>\r\nSubject: long\r\n\r\n${'y'.repeat(1500)}\r\n`,
    });
    t.close();
    const { data } = await queued(idOf(info.response));
    assert.equal(data.match(/^Date: /gm)?.length, 1);
    assert.match(data, /\r\nMessage-ID: <mine@example\.org>\r\n/);
    assert.ok(data.split('\r\n').every((l) => l.length <= 998));
    assert.ok(data.includes(`\r\n${'y'.repeat(998)}\r\n ${'y'.repeat(502)}\r\n`));
  });

  it('lets a user send as a +tag of their address and as an alias that reaches them, but not as anyone else', async () => {
    const t = transport();
    for (const from of ['bob+lists@example.org', 'sales@example.org']) {
      const info = await t.sendMail({
        envelope: { from, to: ['x@elsewhere.example'] },
        raw: `From: ${from}\r\nSubject: ok\r\n\r\nok\r\n`,
      });
      assert.match(info.response, /^250 /);
    }
    // The catch-all reaches bob, but does not make every address of the domain his.
    await assert.rejects(
      t.sendMail({
        envelope: { from: 'ceo@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: ceo@example.org\r\n\r\nx\r\n',
      }),
      (err: { responseCode?: number; response?: string }) => {
        assert.equal(err.responseCode, 553);
        assert.match(err.response ?? '', /^553 5\.7\.1 <ceo@example\.org> is not one of your addresses/);
        return true;
      },
    );
    await assert.rejects(
      t.sendMail({
        envelope: { from: 'ann@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: ann@example.org\r\n\r\nx\r\n',
      }),
      /553 5\.7\.1/,
    );
    // A spoofed header From with an honest envelope.
    await assert.rejects(
      t.sendMail({
        envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: "The Bank" <security@bank.example>\r\nSubject: urgent\r\n\r\nx\r\n',
      }),
      (err: { response?: string }) => {
        assert.match(
          err.response ?? '',
          /^553 5\.7\.1 From: <security@bank\.example> is not one of your addresses/,
        );
        return true;
      },
    );
    t.close();
    const before = (await store.listQueue()).length;
    assert.equal((await store.listQueue()).length, before);
  });

  it('checks every From: and Sender: field: two From: fields, or a Sender: naming someone else, are refused', async () => {
    const t = transport();
    const before = (await store.listQueue()).length;
    await assert.rejects(
      t.sendMail({
        envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: bob@example.org\r\nFrom: ceo@bank.example\r\nSubject: two\r\n\r\nx\r\n',
      }),
      (err: { responseCode?: number; response?: string }) => {
        assert.match(err.response ?? '', /^550 5\.6\.0 the message has more than one From: field/);
        return true;
      },
    );
    await assert.rejects(
      t.sendMail({
        envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: bob@example.org\r\nSender: ann@example.org\r\nSubject: sender\r\n\r\nx\r\n',
      }),
      (err: { response?: string }) => {
        assert.match(
          err.response ?? '',
          /^553 5\.7\.1 Sender: <ann@example\.org> is not one of your addresses/,
        );
        return true;
      },
    );
    // His own Sender: is fine.
    const ok = await t.sendMail({
      envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
      raw: 'From: sales@example.org\r\nSender: bob@example.org\r\nSubject: fine\r\n\r\nx\r\n',
    });
    assert.match(ok.response, /^250 /);
    assert.equal((await store.listQueue()).length, before + 1);
    t.close();
  });

  it('refuses an unknown local recipient and more recipients than allowed', async () => {
    const t = transport();
    await assert.rejects(
      t.sendMail({
        envelope: { from: 'bob@example.org', to: ['nobody@example.net'] },
        raw: 'From: bob@example.org\r\n\r\nx\r\n',
      }),
      (err: { rejectedErrors?: Array<{ response: string }> }) => {
        assert.match(err.rejectedErrors?.[0]?.response ?? '', /^550 5\.1\.1 <nobody@example\.net>/);
        return true;
      },
    );
    const four = ['a@x.example', 'b@x.example', 'c@x.example', 'd@x.example'];
    const info = await t.sendMail({
      envelope: { from: 'bob@example.org', to: four },
      raw: 'From: bob@example.org\r\n\r\nx\r\n',
    });
    assert.equal(info.accepted.length, 3);
    assert.equal(info.rejected.length, 1);
    assert.match(
      String(
        (info as unknown as { rejectedErrors: Array<{ response: string }> }).rejectedErrors[0]!.response,
      ),
      /^452 4\.5\.3/,
    );
    t.close();
  });

  it('answers a wrong password 535 5.7.8 and slows repeated failures down', async () => {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = transport('ann@example.org', 'wrong');
      const start = Date.now();
      await assert.rejects(t.verify(), (err: { response?: string }) => {
        assert.match(err.response ?? '', /^535 5\.7\.8/);
        return true;
      });
      times.push(Date.now() - start);
      t.close();
    }
    assert.ok(times[4]! - times[0]! >= 150, `times ${times.join(', ')}`);
  });

  it('limits connections per address, and a refused connection does not free a place', async () => {
    await withServer({ limits: { maxConnectionsPerIp: 1 } }, async (p) => {
      const first = await RawClient.open(p);
      assert.match(first.greeting, /^220 /);
      const second = await RawClient.connect(p);
      assert.match(await second.read(), /^421 4\.7\.0 .*too many connections from your address/);
      await second.closedByServer();
      // The refused one closed; the first still holds the only place.
      const third = await RawClient.connect(p);
      assert.match(await third.read(), /^421 4\.7\.0 /);
      first.close();
      await new Promise((r) => setTimeout(r, 100));
      const fourth = await RawClient.open(p);
      assert.match(fourth.greeting, /^220 /);
      fourth.close();
    });
  });

  it('names the client in Received: only when the admin configures "full"', async () => {
    await withServer({ receivedHeader: 'full' }, async (p) => {
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: p,
        name: 'laptop.example',
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'ann@example.org', pass: PASSWORD },
      });
      const info = await t.sendMail({
        envelope: { from: 'ann@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: ann@example.org\r\n\r\nx\r\n',
      });
      t.close();
      const { data } = await queued(idOf(info.response));
      assert.match(data, /^Received: from laptop\.example \(\[127\.0\.0\.1\]\)\r\n\t\(using TLS/);
    });
  });

  it('blocks an address after many failed sign-ins; the real user from another address gets in', async () => {
    await withServer({ throttle: new AuthThrottle({ freeFailures: 10, blockAfter: 3 }) }, async (p) => {
      const from = (localAddress: string, pass: string) =>
        nodemailer.createTransport({
          host: '127.0.0.1',
          port: p,
          localAddress,
          requireTLS: true,
          tls: { rejectUnauthorized: false },
          auth: { user: 'bob@example.org', pass },
        });
      for (let i = 0; i < 3; i++) {
        const t = from('127.0.0.1', 'guess');
        await assert.rejects(t.verify(), (err: { response?: string }) =>
          /^535 5\.7\.8/.test(err.response ?? ''),
        );
        t.close();
      }
      // Now even the right password from the guessing address is refused, without being checked.
      const blocked = from('127.0.0.1', PASSWORD);
      await assert.rejects(blocked.verify(), (err: { response?: string }) => {
        assert.match(err.response ?? '', /^454 4\.7\.0 too many failed sign-ins from your address/);
        return true;
      });
      blocked.close();
      const real = from('127.0.0.2', PASSWORD);
      assert.equal(await real.verify(), true);
      real.close();
    });
  });

  it('limits messages per hour per user with 450 4.7.1', async () => {
    await withServer({ limits: { messagesPerHour: 2 } }, async (p) => {
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: p,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'limited@example.org', pass: PASSWORD },
      });
      const mail = {
        envelope: { from: 'limited@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: limited@example.org\r\n\r\nx\r\n',
      };
      await t.sendMail(mail);
      await t.sendMail(mail);
      await assert.rejects(t.sendMail(mail), (err: { response?: string }) => {
        assert.match(err.response ?? '', /^450 4\.7\.1 sending limit of 2 messages per hour/);
        return true;
      });
      t.close();
    });
  });
});
