// Outbound delivery to a real SMTP server on loopback playing the remote domains, with MX answers
// from a test resolver and connections sent to loopback by a test dialer (no traffic leaves the host).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatReply } from '@mailwerk/store';
import { OutboundDelivery } from '../src/index.ts';
import { loopbackDialer, type RemoteServer, remoteServer, tableResolver } from './remote.ts';

const MSG = Buffer.from(
  'From: bob@example.org\r\nTo: x@remote.example\r\nSubject: out\r\n\r\nfirst\r\n.a line with a dot\r\nlast\r\n',
);

describe('outbound delivery', () => {
  let remote: RemoteServer;
  let plain8: RemoteServer;
  let withDsn: RemoteServer;
  const down = new Set<string>();
  const dialed: string[] = [];
  const port = () => remote.port;
  const resolver = tableResolver({
    mx: {
      'remote.example': [
        { exchange: 'mx2.remote.example', priority: 20 },
        { exchange: 'mx1.remote.example', priority: 10 },
      ],
      'null.example': [{ exchange: '.', priority: 0 }],
      'old.example': [{ exchange: 'mx.old.example', priority: 10 }],
      'dsn.example': [{ exchange: 'mx.dsn.example', priority: 10 }],
    },
    a: {
      'mx1.remote.example': ['192.0.2.1'],
      'mx2.remote.example': ['192.0.2.2'],
      'implicit.example': ['192.0.2.3'],
      'mx.old.example': ['192.0.2.9'],
      'mx.dsn.example': ['192.0.2.10'],
    },
    servfail: ['broken.example'],
  });
  let out: OutboundDelivery;

  before(async () => {
    remote = await remoteServer();
    // A server without 8BITMIME, SMTPUTF8 and STARTTLS, for the 8-bit rules.
    plain8 = await remoteServer({ hide8BITMIME: true, hideSTARTTLS: true, hideSMTPUTF8: true });
    // A server that offers DSN (RFC 3461), to see the parameters each recipient gets.
    withDsn = await remoteServer({ hideDSN: false });
    const dial = loopbackDialer(() => port(), down, dialed);
    out = new OutboundDelivery({
      hostname: 'mail.example.org',
      resolver,
      dialer: (address, p, t) =>
        address === '192.0.2.9'
          ? loopbackDialer(() => plain8.port)(address, p, t)
          : address === '192.0.2.10'
            ? loopbackDialer(() => withDsn.port)(address, p, t)
            : dial(address, p, t),
      idleMs: 2000,
    });
  });
  after(async () => {
    out.close();
    await remote.close();
    await plain8.close();
    await withDsn.close();
  });

  it('delivers to the preferred MX over STARTTLS, the bytes intact, and reuses the connection', async () => {
    const before = remote.connections;
    dialed.length = 0;
    const r1 = await out.deliver('remote.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@remote.example' }, { address: 'y@remote.example' }],
      data: MSG,
    });
    assert.deepEqual(
      r1.map((r) => r.state),
      ['delivered', 'delivered'],
    );
    assert.match(formatReply(r1[0]!.reply!), /^250 .*\(mx1\.remote\.example, TLS\)$/);
    assert.equal(dialed[0], '192.0.2.1');
    const got = remote.received.at(-1)!;
    assert.deepEqual(got.to, ['x@remote.example', 'y@remote.example']);
    assert.equal(got.secure, true);
    assert.deepEqual(got.data, MSG);
    await out.deliver('remote.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'z@remote.example' }],
      data: MSG,
    });
    assert.equal(remote.connections - before, 1, 'one connection for both messages');
  });

  it('opens at most perDomain connections to one domain, and queues the rest for them', async () => {
    const one = await remoteServer();
    const limited = new OutboundDelivery({
      hostname: 'mail.example.org',
      resolver,
      dialer: loopbackDialer(() => one.port),
      perDomain: 1,
      idleMs: 1000,
    });
    try {
      const sends = Array.from({ length: 4 }, (_, i) =>
        limited.deliver('remote.example', {
          sender: 'bob@example.org',
          recipients: [{ address: `r${i}@remote.example` }],
          data: MSG,
        }),
      );
      const results = (await Promise.all(sends)).flat();
      assert.ok(results.every((r) => r.state === 'delivered'));
      assert.equal(one.received.length, 4);
      assert.equal(one.mostAtOnce, 1);
      assert.equal(one.connections, 1, 'the waiting messages reuse the one connection');
    } finally {
      limited.close();
      await one.close();
    }
  });

  it('falls back to the next MX when the first does not answer, and to the domain itself without MX', async () => {
    down.add('192.0.2.1');
    out.close();
    const fresh = new OutboundDelivery({
      hostname: 'mail.example.org',
      resolver,
      dialer: loopbackDialer(() => port(), down, dialed),
    });
    try {
      dialed.length = 0;
      const r = await fresh.deliver('remote.example', {
        sender: 'bob@example.org',
        recipients: [{ address: 'x@remote.example' }],
        data: MSG,
      });
      assert.equal(r[0]!.state, 'delivered');
      assert.deepEqual(dialed, ['192.0.2.1', '192.0.2.2']);
      assert.match(formatReply(r[0]!.reply!), /mx2\.remote\.example/);
      dialed.length = 0;
      const i = await fresh.deliver('implicit.example', {
        sender: 'bob@example.org',
        recipients: [{ address: 'x@implicit.example' }],
        data: MSG,
      });
      assert.equal(i[0]!.state, 'delivered');
      assert.deepEqual(dialed, ['192.0.2.3']);
    } finally {
      fresh.close();
      down.clear();
    }
  });

  it('fails permanently for a null MX and a domain that does not exist; DNS trouble and unreachable hosts are temporary', async () => {
    const fresh = new OutboundDelivery({
      hostname: 'mail.example.org',
      resolver,
      dialer: loopbackDialer(() => port(), down),
    });
    try {
      const one = (domain: string) =>
        fresh
          .deliver(domain, { sender: 'bob@example.org', recipients: [{ address: `x@${domain}` }], data: MSG })
          .then((r) => r[0]!);
      const nullMx = await one('null.example');
      assert.equal(nullMx.state, 'failed');
      assert.match(formatReply(nullMx.reply!), /^556 5\.1\.10 /);
      const missing = await one('nowhere.example');
      assert.equal(missing.state, 'failed');
      assert.match(formatReply(missing.reply!), /^550 5\.1\.2 /);
      const broken = await one('broken.example');
      assert.equal(broken.state, 'pending');
      assert.match(formatReply(broken.reply!), /^451 4\.4\.3 /);
      down.add('192.0.2.1');
      down.add('192.0.2.2');
      const unreachable = await one('remote.example');
      assert.equal(unreachable.state, 'pending');
      assert.match(
        formatReply(unreachable.reply!),
        /^451 4\.4\.1 could not reach a mail host of remote\.example/,
      );
    } finally {
      fresh.close();
      down.clear();
    }
  });

  it('answers per recipient: 4xx pending, 5xx failed, the rest delivered', async () => {
    remote.rcptReplies.set('busy', '451 4.2.0 mailbox busy, try later');
    remote.rcptReplies.set('gone', '550 5.1.1 no such user');
    try {
      const r = await out.deliver('remote.example', {
        sender: 'bob@example.org',
        recipients: [
          { address: 'busy@remote.example' },
          { address: 'gone@remote.example' },
          { address: 'ok@remote.example' },
        ],
        data: MSG,
      });
      assert.deepEqual(
        r.map((x) => [x.address, x.state]),
        [
          ['busy@remote.example', 'pending'],
          ['gone@remote.example', 'failed'],
          ['ok@remote.example', 'delivered'],
        ],
      );
      assert.match(formatReply(r[1]!.reply!), /^550 5\.\d\.\d+ no such user/);
    } finally {
      remote.rcptReplies.clear();
    }
  });

  it('keeps a message pending when the remote answers 421 after DATA or drops the connection', async () => {
    remote.dataReply = '421 4.3.0 shutting down';
    const a = await out.deliver('remote.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@remote.example' }],
      data: MSG,
    });
    assert.equal(a[0]!.state, 'pending');
    assert.match(formatReply(a[0]!.reply!), /^421/);
    remote.dataReply = 'drop';
    const b = await out.deliver('remote.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@remote.example' }],
      data: MSG,
    });
    assert.equal(b[0]!.state, 'pending');
    assert.match(formatReply(b[0]!.reply!), /^451 4\.4\.2 /);
  });

  it('returns 8-bit mail for a server without 8BITMIME (5.6.3) and delivers 7-bit mail to it in the clear', async () => {
    const eight = Buffer.from('From: bob@example.org\r\nSubject: Grüße\r\n\r\nGrüße\r\n');
    const r = await out.deliver('old.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@old.example' }],
      data: eight,
    });
    assert.equal(r[0]!.state, 'failed');
    assert.match(formatReply(r[0]!.reply!), /^554 5\.6\.3 /);
    const ok = await out.deliver('old.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@old.example' }],
      data: MSG,
    });
    assert.equal(ok[0]!.state, 'delivered');
    assert.equal(plain8.received.at(-1)!.secure, false);
    const utf8 = await out.deliver('old.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'jürgen@old.example' }],
      data: MSG,
    });
    assert.equal(utf8[0]!.state, 'failed');
    assert.match(formatReply(utf8[0]!.reply!), /^553 5\.6\.7 /);
  });

  it('sends 8-bit mail to a server with 8BITMIME with BODY=8BITMIME', async () => {
    const eight = Buffer.from('From: bob@example.org\r\nSubject: Grüße\r\n\r\nGrüße\r\n');
    const r = await out.deliver('remote.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@remote.example' }],
      data: eight,
    });
    assert.equal(r[0]!.state, 'delivered');
    assert.equal(remote.received.at(-1)!.body8bit, '8bitmime');
    assert.deepEqual(remote.received.at(-1)!.data, eight);
  });

  it("sends each recipient's own NOTIFY and ORCPT (RFC 3461 §4), one transaction per set of equal ones", async () => {
    const before = withDsn.received.length;
    const results = await out.deliver('dsn.example', {
      sender: 'bob@example.org',
      envid: 'env-1',
      recipients: [
        { address: 'a@dsn.example', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;list@example.org' },
        { address: 'b@dsn.example', notify: ['NEVER'] },
        { address: 'c@dsn.example', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;list@example.org' },
        { address: 'd@dsn.example' },
      ],
      data: MSG,
    });
    assert.deepEqual(
      results.map((r) => [r.address, r.state, (r as { relayed?: boolean }).relayed ?? false]),
      [
        ['a@dsn.example', 'delivered', false],
        ['c@dsn.example', 'delivered', false],
        ['b@dsn.example', 'delivered', false],
        ['d@dsn.example', 'delivered', false],
      ],
    );
    const got = withDsn.received.slice(before);
    assert.equal(got.length, 3);
    const byRcpt = Object.fromEntries(got.flatMap((m) => m.to.map((to, i) => [to, m.rcptDsn[i]])));
    assert.deepEqual(byRcpt['a@dsn.example'], {
      notify: ['SUCCESS', 'FAILURE'],
      orcpt: 'rfc822;list@example.org',
    });
    assert.deepEqual(byRcpt['c@dsn.example'], byRcpt['a@dsn.example']);
    assert.deepEqual(byRcpt['b@dsn.example']?.notify, ['NEVER']);
    assert.equal(byRcpt['b@dsn.example']?.orcpt, undefined);
    assert.equal(byRcpt['d@dsn.example']?.notify, undefined);
    assert.ok(got.every((m) => m.envelopeDsn?.envid === 'env-1'));
    // A server without DSN got no NOTIFY: a success there is ours to report ("relayed").
    const plain = await out.deliver('remote.example', {
      sender: 'bob@example.org',
      recipients: [{ address: 'x@remote.example', notify: ['SUCCESS'] }],
      data: MSG,
    });
    assert.equal((plain[0] as { relayed?: boolean }).relayed, true);
  });
});
