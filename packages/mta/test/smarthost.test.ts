// Outside mail through a relay host (smarthost) with AUTH, and static routes, against real SMTP servers on
// loopback (smtp-server) reached with the real dialer; the resolver knows no domain, so nothing here can
// have come through an MX lookup.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SMTPServerOptions } from 'smtp-server';
import { OutboundDelivery, type RelayHost } from '../src/index.ts';
import { type RemoteServer, remoteServer, tableResolver } from './remote.ts';

const message = {
  sender: 'bob@example.org',
  recipients: [{ address: 'ann@outside.example' }],
  data: Buffer.from(
    'From: bob@example.org\r\nTo: ann@outside.example\r\nSubject: via the relay\r\n\r\nhi\r\n',
  ),
};

describe('outbound through a relay host, and static routes', () => {
  let relay: RemoteServer;
  let implicit: RemoteServer;
  let partner: RemoteServer;
  const signIns: Array<{ user: string; pass: string; secure: boolean }> = [];
  const auth = {
    disabledCommands: [],
    authMethods: ['PLAIN', 'LOGIN'],
    onAuth(...[a, session, cb]: Parameters<NonNullable<SMTPServerOptions['onAuth']>>) {
      signIns.push({ user: a.username ?? '', pass: a.password ?? '', secure: session.secure });
      if (a.username === 'relay-user' && a.password === 'relay secret')
        return cb(null, { user: 'relay-user' });
      cb(Object.assign(new Error('Authentication credentials invalid'), { responseCode: 535 }));
    },
  };
  before(async () => {
    relay = await remoteServer(auth);
    implicit = await remoteServer({ ...auth, secure: true });
    partner = await remoteServer();
  });
  after(async () => {
    await relay.close();
    await implicit.close();
    await partner.close();
  });

  const out = (relayHost?: Partial<RelayHost>, routes: Record<string, string> = {}) =>
    new OutboundDelivery({
      hostname: 'mx.example.org',
      resolver: tableResolver({}),
      idleMs: 50,
      routes,
      ...(relayHost
        ? {
            relay: {
              host: '127.0.0.1',
              port: relay.port,
              tls: 'starttls',
              verifyCertificate: false,
              domains: [],
              ...relayHost,
            } as RelayHost,
          }
        : {}),
    });

  it('sends outside mail to the relay after STARTTLS, signed in, instead of looking up the MX', async () => {
    const o = out({ auth: { user: 'relay-user', pass: 'relay secret' } });
    const before = relay.received.length;
    const [r] = await o.deliver('outside.example', message);
    o.close();
    assert.equal(r!.state, 'delivered', JSON.stringify(r));
    assert.equal(relay.received.length, before + 1);
    const got = relay.received.at(-1)!;
    assert.deepEqual(got.to, ['ann@outside.example']);
    assert.equal(got.secure, true);
    assert.match(got.data.toString(), /Subject: via the relay/);
    assert.deepEqual(signIns.at(-1), { user: 'relay-user', pass: 'relay secret', secure: true });
  });

  it('over implicit TLS (port 465 style) too', async () => {
    const o = out({ port: implicit.port, tls: 'tls', auth: { user: 'relay-user', pass: 'relay secret' } });
    const [r] = await o.deliver('outside.example', message);
    o.close();
    assert.equal(r!.state, 'delivered', JSON.stringify(r));
    assert.equal(implicit.received.at(-1)!.secure, true);
  });

  it('keeps the mail queued (4.7.0) when the relay refuses our credentials: our configuration, not the message', async () => {
    const o = out({ auth: { user: 'relay-user', pass: 'wrong' } });
    const [r] = await o.deliver('outside.example', message);
    o.close();
    assert.equal(r!.state, 'pending');
    assert.equal(r!.reply?.code, 454);
    assert.match(r!.reply?.text ?? '', /refused our sign-in/);
  });

  it('refuses to deliver when the relay does not offer STARTTLS although it is required', async () => {
    // smtp-server still takes STARTTLS when it only hides it; disabled, it answers it with an error.
    const plain = await remoteServer({ disabledCommands: ['STARTTLS', 'AUTH'] });
    try {
      const o = out({ port: plain.port });
      const [r] = await o.deliver('outside.example', message);
      o.close();
      assert.notEqual(r!.state, 'delivered');
      assert.equal(plain.received.length, 0);
    } finally {
      await plain.close();
    }
  });

  it('uses the relay only for its listed domains; a static route sends a domain to its own server first', async () => {
    const o = out(
      { domains: ['listed.example'], auth: { user: 'relay-user', pass: 'relay secret' } },
      { 'partner.example': `127.0.0.1:${partner.port}` },
    );
    const viaRelay = relay.received.length;
    const [listed] = await o.deliver('listed.example', {
      ...message,
      recipients: [{ address: 'x@listed.example' }],
    });
    assert.equal(listed!.state, 'delivered');
    assert.equal(relay.received.length, viaRelay + 1);
    const [routed] = await o.deliver('partner.example', {
      ...message,
      recipients: [{ address: 'y@partner.example' }],
    });
    assert.equal(routed!.state, 'delivered');
    assert.deepEqual(partner.received.at(-1)!.to, ['y@partner.example']);
    // Any other domain: its MX, which the resolver does not know.
    const [other] = await o.deliver('outside.example', message);
    assert.equal(other!.state, 'failed');
    assert.match(other!.reply?.text ?? '', /does not exist/);
    o.close();
    assert.equal(relay.received.length, viaRelay + 1);
  });
});
