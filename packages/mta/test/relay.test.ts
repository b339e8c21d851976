// The queue with outbound delivery: a real SMTP server on loopback plays the remote domain (MX answers
// from a test resolver, connections sent to loopback by a test dialer); the MDA takes the bounces.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { contentId, formatReply } from '@mailwerk/store';
import { OutboundDelivery, QueueRunner, remoteRetryPolicy } from '../src/index.ts';
import { eventually, type Rig, rig } from './harness.ts';
import { loopbackDialer, type RemoteServer, remoteServer, tableResolver } from './remote.ts';

describe('queue with outbound delivery', () => {
  let r: Rig;
  let remote: RemoteServer;
  const resolver = tableResolver({
    mx: { 'remote.example': [{ exchange: 'mx.remote.example', priority: 10 }] },
    a: { 'mx.remote.example': ['192.0.2.1'] },
  });
  const outbound = () =>
    new OutboundDelivery({
      hostname: 'mx.test.example',
      resolver,
      dialer: loopbackDialer(() => remote.port),
      idleMs: 200,
    });
  const remoteRetry = remoteRetryPolicy(200, 400, 3_600_000);

  before(async () => {
    remote = await remoteServer();
    r = await rig({}, { outbound: outbound(), remoteRetry, delayWarningMs: 150 });
  });
  after(async () => {
    await r.close();
    await remote.close();
  });

  const enqueue = async (to: string[], subject: string) => {
    const data = Buffer.from(
      `From: bob@example.org\r\nTo: ${to.join(', ')}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\nHello.\r\n`,
    );
    const e = await r.store.enqueue({
      sender: 'bob@example.org',
      recipients: to.map((address) => ({ address })),
      blobId: contentId(data),
      data,
      size: data.length,
    });
    r.runner.wake();
    return e;
  };

  it('retries a remote 4xx on the remote schedule, then delivers', async () => {
    remote.rcptReplies.set('later', '451 4.2.0 greylisted, try again later');
    const e = await enqueue(['later@remote.example'], 'retry me');
    const first = await eventually(async () => (await r.store.getQueueEntry(e.id))?.recipients[0]?.lastReply);
    assert.match(formatReply(first), /^451 4\.\d\.\d+ greylisted/);
    remote.rcptReplies.clear();
    await eventually(async () => (await r.store.getQueueEntry(e.id)) === null);
    assert.ok(remote.received.some((m) => m.to.includes('later@remote.example')));
  });

  it('bounces a remote 5xx to the sender: the DSN lands in their INBOX', async () => {
    remote.rcptReplies.set('gone', '550 5.1.1 user unknown');
    try {
      await enqueue(['gone@remote.example', 'fine@remote.example'], 'partly undeliverable');
      const dsn = await eventually(async () =>
        (await r.inbox('bob@example.org'))
          .map((b) => b.toString())
          .find((t) => t.includes('gone@remote.example')),
      );
      assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/);
      assert.match(dsn, /Final-Recipient: rfc822; ?gone@remote\.example/i);
      assert.match(dsn, /Status: 5\.\d\.\d+/);
      assert.match(dsn, /Diagnostic-Code: smtp; ?550 /);
      assert.doesNotMatch(dsn, /Final-Recipient: rfc822; ?fine@remote\.example/i);
      assert.ok(remote.received.some((m) => m.to.includes('fine@remote.example')));
    } finally {
      remote.rcptReplies.clear();
    }
  });

  it('tells the sender once that a message is delayed, and goes on trying', async () => {
    remote.rcptReplies.set('slow', '451 4.4.5 try again tomorrow');
    try {
      const e = await enqueue(['slow@remote.example'], 'slow one');
      const warning = await eventually(async () =>
        (await r.inbox('bob@example.org'))
          .map((b) => b.toString())
          .find((t) => t.includes('slow@remote.example')),
      );
      assert.match(warning, /Subject: Delayed Mail \(still being retried\)/);
      assert.match(warning, /Action: delayed/);
      assert.match(warning, /Status: 4\.\d\.\d+/);
      // More attempts, no second warning.
      await eventually(async () => ((await r.store.getQueueEntry(e.id))?.attempts ?? 0) >= 3);
      const warnings = (await r.inbox('bob@example.org')).filter((b) =>
        b.toString().includes('slow@remote.example'),
      );
      assert.equal(warnings.length, 1);
      assert.equal((await r.store.getQueueEntry(e.id))!.meta.delayNotified, true);
    } finally {
      remote.rcptReplies.clear();
    }
  });

  it('leaves the message queued when the remote answers 421 after DATA, and keeps it across a restart', async () => {
    remote.dataReply = '421 4.3.0 closing for maintenance';
    const e = await enqueue(['after@remote.example'], 'survives');
    const first = await eventually(async () => (await r.store.getQueueEntry(e.id))?.recipients[0]?.lastReply);
    assert.match(formatReply(first), /^421 /);
    // The MTA stops mid-retry; a new one on the same queue finishes the job.
    await r.runner.stop();
    const entry = (await r.store.getQueueEntry(e.id))!;
    assert.equal(entry.recipients[0]!.state, 'pending');
    const again = new QueueRunner({
      store: r.store,
      hostname: 'mx.test.example',
      lmtp: `127.0.0.1:${r.lmtpPort}`,
      isLocalDomain: async (d) => (await r.store.getDomain(d)) !== null,
      outbound: outbound(),
      remoteRetry,
      pollMs: 50,
    });
    again.start();
    try {
      await r.store.retryQueueEntry(e.id);
      again.wake();
      await eventually(async () => (await r.store.getQueueEntry(e.id)) === null);
      assert.ok(remote.received.some((m) => m.to.includes('after@remote.example')));
    } finally {
      await again.stop();
    }
  });

  it('gives up on a message that stays undeliverable past its lifetime and bounces it once', async () => {
    remote.rcptReplies.set('never', '451 4.2.0 try again later');
    // A runner on the same queue whose messages expire at once, so the first temporary failure is the last
    // (the rig's runner was stopped by the test before).
    await r.runner.stop();
    const impatient = new QueueRunner({
      store: r.store,
      hostname: 'mx.test.example',
      lmtp: `127.0.0.1:${r.lmtpPort}`,
      isLocalDomain: async (d) => (await r.store.getDomain(d)) !== null,
      outbound: outbound(),
      remoteRetry: remoteRetryPolicy(200, 400, 0),
      pollMs: 50,
    });
    impatient.start();
    try {
      const e = await enqueue(['never@remote.example'], 'expires');
      impatient.wake();
      const dsn = await eventually(async () =>
        (await r.inbox('bob@example.org'))
          .map((b) => b.toString())
          .find((t) => t.includes('never@remote.example')),
      );
      assert.match(dsn, /Action: failed/);
      assert.match(dsn, /Status: 5\.\d\.\d+/);
      assert.match(dsn, /gave up: 4\.4\.7 message expired/);
      assert.equal(await r.store.getQueueEntry(e.id), null);
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(
        (await r.inbox('bob@example.org')).filter((b) => b.toString().includes('never@remote.example'))
          .length,
        1,
      );
    } finally {
      remote.rcptReplies.clear();
      await impatient.stop();
    }
  });
});
