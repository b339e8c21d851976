// Abuse limits on the MX, with raw clients over loopback: protocol violations, slow clients, connection
// and failed-recipient rates per address, greylisting; and the counters shared through a real redis-server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Greylist } from '@mailwerk/limits';
import { RedisCounters } from '@mailwerk/limits/redis';
import nodemailer from 'nodemailer';
import { startRedis } from '../../limits/test/redis-server.ts';
import { createInboundServer } from '../src/index.ts';
import { closeServer, listen, RawClient, rig, testTls } from './harness.ts';

const hello = async (c: RawClient) => {
  assert.match(await c.cmd('EHLO client.example.net'), /^250/);
  assert.match(await c.cmd('MAIL FROM:<ann@sender.example>'), /^250/);
};

describe('abuse limits on the MX', () => {
  it('answers web requests with 221 and closes', async () => {
    const r = await rig();
    try {
      for (const line of [
        'GET / HTTP/1.1',
        'CONNECT mail.example.org:443 HTTP/1.1',
        'POST /login HTTP/1.0',
      ]) {
        const c = await RawClient.open(r.smtpPort);
        assert.match(await c.cmd(line), /^221 2\.7\.0 /);
        await c.closedByServer();
      }
    } finally {
      await r.close();
    }
  });

  it('refuses a client that talks before the greeting, 554 5.5.0', async () => {
    const r = await rig({ greetingDelayMs: 400 });
    try {
      const c = await RawClient.connect(r.smtpPort);
      c.write('EHLO early.example\r\n');
      assert.match(await c.read(), /^554 5\.5\.0 protocol violation: the client spoke before the greeting/);
      await c.closedByServer();
      // A patient client is served.
      const ok = await RawClient.open(r.smtpPort);
      assert.match(ok.greeting, /^220 /);
      assert.match(await ok.cmd('EHLO patient.example'), /^250/);
      ok.close();
    } finally {
      await r.close();
    }
  });

  it('refuses message data sent before the 354 reply, and queues nothing', async () => {
    const r = await rig();
    try {
      const c = await RawClient.open(r.smtpPort);
      await hello(c);
      assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^250/);
      c.write('DATA\r\nSubject: rushed\r\n\r\nno waiting\r\n.\r\n');
      assert.match(
        await c.read(),
        /^554 5\.5\.0 protocol violation: message data was sent before the 354 reply/,
      );
      await c.closedByServer();
      assert.equal((await r.store.listQueue()).length, 0);
      assert.equal((await r.inbox('bob@example.org')).length, 0);
    } finally {
      await r.close();
    }
  });

  it('disconnects a client that trickles a command or the message with 421, without slowing others', async () => {
    const r = await rig({ commandTimeoutMs: 600, minDataRate: 2000, dataGraceMs: 300 });
    try {
      const drip = await RawClient.open(r.smtpPort);
      const started = Date.now();
      const timer = setInterval(() => drip.write('E'), 150);
      // Meanwhile another client sends a message normally.
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, ignoreTLS: true });
      const info = await t.sendMail({
        from: 'ann@sender.example',
        to: 'bob@example.org',
        subject: 'normal',
        text: 'fine\n',
      });
      t.close();
      assert.match(info.response, /^250 /);
      assert.match(await drip.read(3000), /^421 4\.4\.2 too slow/);
      clearInterval(timer);
      assert.ok(Date.now() - started < 2500);
      await drip.closedByServer();

      const slow = await RawClient.open(r.smtpPort);
      await hello(slow);
      assert.match(await slow.cmd('RCPT TO:<bob@example.org>'), /^250/);
      assert.match(await slow.cmd('DATA'), /^354/);
      const trickle = setInterval(() => slow.write('Subject: slow\r\n'), 200);
      assert.match(await slow.read(3000), /^421 4\.4\.2 message data arrives too slowly/);
      clearInterval(trickle);
      await slow.closedByServer();
    } finally {
      await r.close();
    }
  });

  it('limits new connections per minute from one address', async () => {
    const r = await rig({ connectionsPerMinute: 3 });
    try {
      for (let i = 0; i < 3; i++) (await RawClient.open(r.smtpPort)).close();
      const c = await RawClient.connect(r.smtpPort);
      assert.match(await c.read(), /^421 4\.7\.0 .*too many connections from your address per minute/);
    } finally {
      await r.close();
    }
  });

  it('turns an address away after too many refused recipients, in this session and the next', async () => {
    const r = await rig({ failedRecipientsPerIp: 3 });
    try {
      const c = await RawClient.open(r.smtpPort);
      await hello(c);
      assert.match(await c.cmd('RCPT TO:<nobody1@example.org>'), /^550 5\.1\.1/);
      assert.match(await c.cmd('RCPT TO:<nobody2@example.org>'), /^550 5\.1\.1/);
      assert.match(
        await c.cmd('RCPT TO:<nobody3@example.org>'),
        /^421 4\.7\.0 .*too many refused recipients/,
      );
      await c.closedByServer();
      const again = await RawClient.connect(r.smtpPort);
      assert.match(await again.read(), /^421 4\.7\.0 .*too many refused recipients from your address/);
    } finally {
      await r.close();
    }
  });

  it('greylists a new triplet with 451 4.7.1 and takes the retry after the delay', async () => {
    const { InProcessCounters } = await import('@mailwerk/limits');
    const r = await rig({}, {}, { greylist: new Greylist(new InProcessCounters(), { delayMs: 300 }) });
    try {
      const c = await RawClient.open(r.smtpPort);
      await hello(c);
      assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^451 4\.7\.1 greylisted/);
      await new Promise((res) => setTimeout(res, 350));
      assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^250/);
      c.close();
    } finally {
      await r.close();
    }
  });

  it('shares the counts between MX processes through Redis', async () => {
    const redis = await startRedis();
    const a = new RedisCounters(redis.url, `test${process.pid}:`);
    const b = new RedisCounters(redis.url, `test${process.pid}:`);
    const r = await rig({ connectionsPerMinute: 2 }, {}, { counters: a });
    // A second MX on the same store and the same Redis, as a second process would be.
    const other = createInboundServer({
      store: r.store,
      hostname: 'mx2.test.example',
      tls: await testTls(),
      counters: b,
      limits: { connectionsPerMinute: 2 },
    });
    const otherPort = await listen(other);
    try {
      (await RawClient.open(r.smtpPort)).close();
      (await RawClient.open(otherPort)).close();
      const third = await RawClient.connect(r.smtpPort);
      assert.match(await third.read(), /^421 4\.7\.0 .*per minute/);
      const fourth = await RawClient.connect(otherPort);
      assert.match(await fourth.read(), /^421 4\.7\.0 .*per minute/);
    } finally {
      await closeServer(other);
      await r.close();
      await a.close();
      await b.close();
      await redis.stop();
    }
  });
});
