// The MX scanning with a real rspamd on loopback (fixtures/rspamd-rules.lua drives each action by a
// Subject keyword): what rspamd decides is what the sender hears and where the mail is filed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hashPassword } from '@mailwerk/auth';
import nodemailer from 'nodemailer';
import { createSubmissionServer, RspamdClient } from '../src/index.ts';
import { closeServer, eventually, listen, type Rig, rig, testTls } from './harness.ts';
import { type Rspamd, startRspamd } from './rspamd-server.ts';

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

describe('rspamd on the MX', () => {
  let r: Rig;
  let rspamd: Rspamd;
  const policy: { client: RspamdClient; onFailure: 'accept' | 'tempfail' } = {
    client: new RspamdClient({ url: 'http://127.0.0.1:1' }),
    onFailure: 'accept',
  };

  before(async () => {
    rspamd = await startRspamd();
    policy.client = new RspamdClient({ url: rspamd.url, timeoutMs: 5000 });
    r = await rig({}, {}, { rspamd: policy });
  });
  after(async () => {
    await r.close();
    await rspamd.stop();
  });

  const send = async (subject: string, body = 'Hello.\r\n', extra = '') => {
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port: r.smtpPort,
      ignoreTLS: true,
      name: 'client.example.net',
    });
    try {
      return await t.sendMail({
        envelope: { from: 'ann@sender.example', to: ['bob@example.org'] },
        raw: `From: ann@sender.example\r\nTo: bob@example.org\r\n${extra}Subject: ${subject}\r\n\r\n${body}`,
      });
    } finally {
      t.close();
    }
  };
  const refused = (subject: string, body?: string) =>
    send(subject, body).then(
      () => assert.fail('accepted'),
      (err: { response?: string }) => err.response ?? '',
    );
  const filed = (subject: string, mailbox = 'INBOX') =>
    eventually(async () =>
      (await r.inbox('bob@example.org', mailbox)).map((b) => b.toString()).find((t) => t.includes(subject)),
    );

  it('rejects the GTUBE test message with 550 5.7.1 and stores nothing', async () => {
    assert.match(await refused('gtube', `${GTUBE}\r\n`), /^550 5\.7\.1 Gtube pattern/);
    assert.equal((await r.store.listQueue()).length, 0);
  });

  it('passes a clean message into INBOX, marked as scanned', async () => {
    await send('a clean message');
    const got = await filed('a clean message');
    assert.match(got, /X-Spam: No\r\n/);
    assert.match(got, /X-Spam-Status: No, score=0\.00 required=15\.00\r\n/);
  });

  it('files "add header" mail into Junk with X-Spam headers', async () => {
    await send('MW-ADD-HEADER offer');
    const got = await filed('MW-ADD-HEADER offer', 'Junk');
    assert.match(got, /X-Spam: Yes\r\n/);
    assert.match(got, /X-Spam-Symbols: MW_ADD_HEADER/);
  });

  it('rewrites the subject for "rewrite subject" and files it into Junk', async () => {
    await send('MW-REWRITE deal');
    const got = await filed('MW-REWRITE deal', 'Junk');
    assert.match(got, /\r\nSubject: \[SPAM\] MW-REWRITE deal\r\n/);
  });

  it('answers 451 4.7.1 to soft reject and greylist', async () => {
    assert.match(await refused('MW-SOFT later'), /^451 4\.7\.1 deferred by test policy/);
    assert.match(await refused('MW-GREYLIST first time'), /^451 4\.7\.1 /);
  });

  it("applies rspamd's milter header changes", async () => {
    await send('MW-MILTER headers', 'Hello.\r\n', 'X-Remove-Me: yes\r\n');
    const got = await filed('MW-MILTER headers');
    assert.match(got, /X-Test-Milter: added\r\n/);
    assert.doesNotMatch(got, /X-Remove-Me/);
  });

  it('tells rspamd the client address, HELO, envelope and queue id', async () => {
    await send('MW-ECHO session');
    const got = await filed('MW-ECHO session');
    assert.match(
      got,
      /X-Test-Seen: ip=127\.0\.0\.1 helo=client\.example\.net from=ann@sender\.example rcpt=bob@example\.org queue=\w+/,
    );
  });

  it('scans submitted mail too when asked: GTUBE from a signed-in user is refused, clean mail queued', async () => {
    await r.store.updateAccount(r.users.bob!.id, { passwordHash: await hashPassword('pw') });
    const submission = createSubmissionServer({
      store: r.store,
      hostname: 'mx.test.example',
      tls: await testTls(),
      secure: false,
      allowPlaintext: false,
      rspamd: policy,
    });
    const port = await listen(submission);
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.org', pass: 'pw' },
    });
    try {
      await assert.rejects(
        t.sendMail({
          envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
          raw: `From: bob@example.org\r\nSubject: out\r\n\r\n${GTUBE}\r\n`,
        }),
        (err: { response?: string }) => /^550 5\.7\.1 Gtube pattern/.test(err.response ?? ''),
      );
      const ok = await t.sendMail({
        envelope: { from: 'bob@example.org', to: ['x@elsewhere.example'] },
        raw: 'From: bob@example.org\r\nSubject: fine\r\n\r\nhello\r\n',
      });
      assert.match(ok.response, /^250 /);
    } finally {
      t.close();
      await closeServer(submission);
    }
  });

  it('treats an rspamd that does not answer in time like one that is down', async () => {
    // rspamd itself cannot be made to hang: a loopback TCP server that accepts and never answers stands in.
    const { createServer } = await import('node:net');
    const held: import('node:net').Socket[] = [];
    const silent = createServer((socket) => held.push(socket));
    await new Promise<void>((res) => silent.listen(0, '127.0.0.1', res));
    const before = policy.client;
    policy.client = new RspamdClient({
      url: `http://127.0.0.1:${(silent.address() as import('node:net').AddressInfo).port}`,
      timeoutMs: 300,
    });
    try {
      policy.onFailure = 'tempfail';
      assert.match(await refused('slow scanner'), /^451 4\.7\.1 the message could not be scanned/);
      policy.onFailure = 'accept';
      await send('slow scanner, accepted');
      assert.match(await filed('slow scanner, accepted'), /X-Spam-Status: unscanned/);
    } finally {
      policy.client = before;
      policy.onFailure = 'accept';
      for (const h of held) h.destroy();
      silent.close();
    }
  });

  it('with rspamd stopped: accepts marked unscanned, or answers 451 4.7.1, as configured', async () => {
    await rspamd.stop();
    policy.onFailure = 'accept';
    await send('while rspamd is down');
    const got = await filed('while rspamd is down');
    assert.match(got, /X-Spam-Status: unscanned/);
    policy.onFailure = 'tempfail';
    assert.match(await refused('tempfail while down'), /^451 4\.7\.1 the message could not be scanned/);
  });
});
