// The queue between the MX and the MDA: retries, per-recipient results, DSNs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatReply } from '@mailwerk/store';
import nodemailer from 'nodemailer';
import { eventually, RawClient, type Rig, rig } from './harness.ts';

describe('queue and LMTP hand-off', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  const send = async (from: string, to: string[], subject: string, notify?: 'SUCCESS') => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, ignoreTLS: true });
    try {
      return await t.sendMail({
        from,
        to,
        subject,
        text: `${subject}\n`,
        ...(notify ? { dsn: { notify } } : {}),
      });
    } finally {
      t.close();
    }
  };
  const count = async (address: string, subject: string, mailbox = 'INBOX') =>
    (await r.inbox(address, mailbox)).filter((m) => m.includes(`Subject: ${subject}`)).length;

  it("hands a fresh entry to the runner leased: delivered without the runner's lease query taking it", async () => {
    const leasedByQuery: string[] = [];
    const leaseQueue = r.store.leaseQueue.bind(r.store);
    r.store.leaseQueue = async (request) => {
      const got = await leaseQueue(request);
      leasedByQuery.push(...got.map((e) => e.id));
      return got;
    };
    try {
      // NOTIFY=SUCCESS asks for a report, which only the queue runner writes: queued, not delivered before the reply.
      // From ann, so that the report goes to a local mailbox too.
      const info = await send('ann@example.org', ['bob@example.org'], 'handed over', 'SUCCESS');
      const id = /queued as (\S+)/.exec(info.response)?.[1];
      assert.ok(id, info.response);
      await eventually(async () => (await count('bob@example.org', 'handed over')) === 1);
      await eventually(async () => (await r.store.getQueueEntry(id)) === null);
      assert.ok(!leasedByQuery.includes(id), `leased again by the runner's query: ${leasedByQuery}`);
      await eventually(async () => (await r.store.listQueue()).length === 0);
    } finally {
      r.store.leaseQueue = leaseQueue;
    }
  });

  it('keeps mail queued while the MDA is down and delivers it when it is back', async () => {
    await r.stopMda();
    await send('sender@ext.org', ['bob@example.org'], 'while down');
    const entry = await eventually(async () => (await r.store.listQueue()).find((e) => e.attempts >= 2));
    assert.equal(entry.recipients[0]!.state, 'pending');
    assert.match(
      formatReply(entry.recipients[0]!.lastReply!),
      /^451 4\.4\.1 mail delivery agent unavailable/,
    );
    assert.equal(await count('bob@example.org', 'while down'), 0);
    await r.startMda();
    await eventually(async () => (await count('bob@example.org', 'while down')) === 1);
    await eventually(async () => (await r.store.listQueue()).length === 0);
  });

  it('pauses local delivery while the MDA is unreachable instead of failing every message on its own', async () => {
    await r.stopMda();
    const before = r.attempts.length;
    for (let i = 0; i < 6; i++) await send('sender@ext.org', ['carl@example.org'], `paused ${i}`);
    await new Promise((res) => setTimeout(res, 400));
    const failed = r.attempts.slice(before).filter((a) => a.includes('4.4.1'));
    // 6 messages, retried every 200 ms for 400 ms, would be about 12 failed connections without the pause.
    // Measured: 12 without the pause, 6 with it.
    assert.ok(failed.length <= 9, `${failed.length} attempts ${JSON.stringify(r.attempts.slice(before))}`);
    await r.startMda();
    await eventually(async () => (await r.store.listQueue()).length === 0);
    for (let i = 0; i < 6; i++) assert.equal(await count('carl@example.org', `paused ${i}`), 1);
  });

  it('with three recipients of which one fails, replies per recipient and retries only that one', async () => {
    const ann = r.users.ann!;
    await r.store.updateAccount(ann.id, { quotaBytes: 10 }); // far too small: 452 4.2.2 at the MDA
    const info = await send(
      'sender@ext.org',
      ['bob@example.org', 'ann@example.org', 'carl@example.org'],
      'three',
    );
    // Tried before the reply, where bob and carl had it and ann did not: queued under the id of that
    // attempt, so its delivery key keeps bob and carl from a second copy when the runner tries all three.
    const id = /queued as (\S+)/.exec(info.response)?.[1];
    assert.ok(id, info.response);
    assert.equal(await count('bob@example.org', 'three'), 1);
    const entry = await eventually(async () => (await r.store.listQueue()).find((e) => e.attempts >= 2));
    assert.equal(entry.id, id);
    const states = Object.fromEntries(entry.recipients.map((x) => [x.address, [x.state, x.attempts]]));
    assert.deepEqual(states['bob@example.org'], ['delivered', 1]);
    assert.deepEqual(states['carl@example.org'], ['delivered', 1]);
    assert.equal(states['ann@example.org']![0], 'pending');
    assert.match(
      formatReply(entry.recipients.find((x) => x.address === 'ann@example.org')!.lastReply!),
      /^452 4\.2\.2 /,
    );
    await r.store.updateAccount(ann.id, { quotaBytes: null });
    await eventually(async () => (await r.store.listQueue()).length === 0);
    assert.equal(await count('ann@example.org', 'three'), 1);
    assert.equal(await count('bob@example.org', 'three'), 1);
    assert.equal(await count('carl@example.org', 'three'), 1);
  });

  it('bounces a permanent failure to the sender as an RFC 3464 report, and never to <>', async () => {
    await r.stopMda();
    await send('carl@example.org', ['ann@example.org'], 'to a user about to go');
    await send('', ['ann@example.org'], 'null sender');
    await eventually(async () => (await r.store.listQueue()).filter((e) => e.attempts >= 1).length === 2);
    // ann is removed while her mail waits: the MDA now answers 550 5.1.1.
    await r.store.removeAccount(r.users.ann!.id);
    await r.startMda();
    const dsn = await eventually(async () =>
      (await r.inbox('carl@example.org')).find((m) => m.includes('Undelivered Mail Returned to Sender')),
    );
    const text = dsn.toString();
    assert.match(text, /^Return-Path: <>\r\n/);
    assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status;/);
    assert.match(text, /Content-Type: message\/delivery-status/);
    assert.match(text, /Reporting-MTA: dns; mx\.test\.example/);
    assert.match(text, /Final-Recipient: rfc822; ann@example\.org\r\nAction: failed\r\nStatus: 5\.1\.1\r\n/);
    assert.match(text, /Diagnostic-Code: smtp; 550 5\.1\.1 /);
    assert.match(text, /Content-Type: text\/rfc822-headers[\s\S]*Subject: to a user about to go/);
    await eventually(async () => (await r.store.listQueue()).length === 0);
    // The bounce of the null-sender message went nowhere: carl got exactly one report.
    const reports = (await r.inbox('carl@example.org')).filter((m) => m.includes('multipart/report'));
    assert.equal(reports.length, 1);
  });

  it('sends one "delivered" report for NOTIFY=SUCCESS (RFC 3461 §4.1), none for the other recipients', async () => {
    await r.store.addAlias({ address: 'pair@example.org', targets: ['bob@example.org', 'carl@example.org'] });
    const c = await RawClient.open(r.smtpPort);
    assert.match(await c.cmd('EHLO client.example'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<carl@example.org> ENVID=track-1'), /^250/);
    assert.match(
      await c.cmd('RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org'),
      /^250/,
    );
    assert.match(await c.cmd('RCPT TO:<pair@example.org> NOTIFY=SUCCESS'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob+x@example.org>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    assert.match(await c.cmd('Subject: track me\r\n\r\nhi\r\n.'), /^250/);
    c.close();
    const report = await eventually(async () =>
      (await r.inbox('carl@example.org')).find((m) => m.includes('Successful Mail Delivery Report')),
    );
    const text = report.toString();
    assert.match(text, /Original-Envelope-Id: track-1/);
    assert.match(
      text,
      /Original-Recipient: rfc822;bob@example\.org\r\nFinal-Recipient: rfc822; bob@example\.org\r\nAction: delivered\r\nStatus: 2\.0\.0/,
    );
    assert.match(text, /Final-Recipient: rfc822; pair@example\.org\r\nAction: expanded\r\nStatus: 2\.1\.5/);
    assert.doesNotMatch(text, /bob\+x@example\.org/);
    await eventually(async () => (await r.store.listQueue()).length === 0);
    // One report for the message, however many recipients asked.
    const reports = (await r.inbox('carl@example.org')).filter((m) =>
      m.includes('Successful Mail Delivery Report'),
    );
    assert.equal(reports.length, 1);
  });
});

describe('an MDA that comes up after the MTA', () => {
  it('delivers when the pause for the unreachable MDA ends, not after a whole backoff step', async () => {
    // The retry step is 30 s, as in production: a start where the MTA listens before the MDA must not
    // leave the first messages waiting that long (it did: `mailwerk start` after a SIGKILL). And a pause
    // grown long (20 s here) ends when the MDA answers again, not when it runs out.
    const r = await rig({}, { retry: { delayMs: () => 30_000, maxAgeMs: 3_600_000 }, mdaPauseMs: 20_000 });
    try {
      await r.stopMda();
      const entry = await r.queue('sender@ext.org', ['bob@example.org'], 'Subject: early\r\n\r\nhi\r\n');
      const tried = await eventually(async () => {
        const e = (await r.store.listQueue()).find((x) => x.id === entry.id);
        return e && e.attempts >= 1 ? e : null;
      });
      const wait = tried.nextAttemptAt.getTime() - tried.recipients[0]!.lastAttemptAt!.getTime();
      assert.ok(wait < 5_000, `next attempt ${wait} ms after the first`);
      await r.startMda();
      await eventually(async () =>
        (await r.inbox('bob@example.org')).some((m) => m.includes('Subject: early')),
      );
    } finally {
      await r.close();
    }
  });
});

describe('delivery before the reply to DATA', () => {
  it('delivers to what the recipients expanded to at RCPT, not looking them up again', async () => {
    const r = await rig();
    try {
      await r.store.addAlias({ address: 'team@example.org', targets: ['bob@example.org'] });
      const c = await RawClient.open(r.smtpPort);
      await c.cmd('EHLO client.example');
      assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<team@example.org>'), /^250/);
      // Changed between RCPT and DATA: the recipient checked at RCPT is the one delivered to.
      await r.store.removeAlias('team@example.org');
      await r.store.addAlias({ address: 'team@example.org', targets: ['carl@example.org'] });
      assert.match(await c.cmd('DATA'), /^354/);
      assert.match(await c.cmd('Subject: team\r\n\r\nx\r\n.'), /^250 2\.0\.0 Ok: delivered as /);
      assert.equal((await r.inbox('bob@example.org')).length, 1);
      assert.equal((await r.inbox('carl@example.org')).length, 0);
      // A new transaction on the same session looks its recipients up anew.
      assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<team@example.org>'), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      assert.match(await c.cmd('Subject: team 2\r\n\r\nx\r\n.'), /^250 2\.0\.0 Ok: delivered as /);
      assert.equal((await r.inbox('carl@example.org')).length, 1);
      c.close();
    } finally {
      await r.close();
    }
  });

  it('holds no more than directConcurrency messages at once; the others go by the queue', async () => {
    const r = await rig({}, { directConcurrency: 1 });
    // The MDA's mailbox write held until released (the same store object in this process), so that the
    // first message is still being delivered when the second comes.
    const append = r.store.appendMessage.bind(r.store);
    let release!: () => void;
    const released = new Promise<void>((res) => {
      release = res;
    });
    let writes = 0;
    r.store.appendMessage = async (input) => {
      writes++;
      await released;
      return append(input);
    };
    const send = (subject: string) => {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, ignoreTLS: true });
      return t
        .sendMail({ from: 'a@ext.org', to: 'bob@example.org', subject, text: 'x\n' })
        .finally(() => t.close());
    };
    try {
      const first = send('first');
      await eventually(async () => writes === 1);
      const second = await send('second');
      assert.match(second.response, /^250 2\.0\.0 Ok: queued as /);
      release();
      assert.match((await first).response, /^250 2\.0\.0 Ok: delivered as /);
      await eventually(async () => (await r.inbox('bob@example.org')).length === 2);
      await eventually(async () => (await r.store.listQueue()).length === 0);
      // The place is free again.
      assert.match((await send('third')).response, /^250 2\.0\.0 Ok: delivered as /);
    } finally {
      r.store.appendMessage = append;
      await r.close();
    }
  });
});
