// Aliases through the MX: refused at RCPT when they cannot deliver (no backscatter), expanded by the
// MTA's queue runner (accounts over LMTP, outside targets queued once by the MTA, never by the MDA).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { authenticate } from 'mailauth';
import { createArcSealer, dkimRecordValue, generateDkimKey } from '../src/index.ts';
import { eventually, RawClient, type Rig, rig } from './harness.ts';

describe('MX: aliases', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    await r.store.addAlias({ address: 'team@example.org', targets: ['bob@example.org', 'ann@example.org'] });
    await r.store.addAlias({
      address: 'fwd@example.org',
      targets: ['carl@example.org', 'out@elsewhere.net'],
    });
    await r.store.addAlias({ address: 'loop1@example.org', targets: ['loop2@example.org'] });
    await r.store.addAlias({ address: 'loop2@example.org', targets: ['loop1@example.org'] });
    // An alias whose target was removed after it was made.
    const gone = await r.store.createAccount({ address: 'gone@example.org', passwordHash: 'x' });
    await r.store.addAlias({ address: 'dangling@example.org', targets: ['gone@example.org'] });
    await r.store.removeAccount(gone.id);
  });
  after(() => r.close());

  const send = async (rcpt: string, subject: string) => {
    const c = await RawClient.open(r.smtpPort);
    assert.match(await c.cmd('EHLO client.example'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
    const answer = await c.cmd(`RCPT TO:<${rcpt}>`);
    if (answer.startsWith('250')) {
      assert.match(await c.cmd('DATA'), /^354/);
      assert.match(await c.cmd(`Subject: ${subject}\r\n\r\nhello\r\n.`), /^250/);
    }
    c.close();
    return answer;
  };
  const count = async (who: string, subject: string) =>
    (await r.inbox(who)).filter((m) => m.includes(`Subject: ${subject}`)).length;

  it('refuses at RCPT an alias whose target no longer exists (550 5.1.1) and an alias loop (550 5.4.6)', async () => {
    assert.match(await send('dangling@example.org', 'x'), /^550 5\.1\.1 /);
    assert.match(await send('loop1@example.org', 'x'), /^550 5\.4\.6 /);
    assert.deepEqual(await r.store.listQueue(), []);
  });

  it('delivers an alias to each of its accounts', async () => {
    assert.match(await send('team@example.org', 'to the team'), /^250/);
    await eventually(async () => (await count('bob@example.org', 'to the team')) === 1);
    await eventually(async () => (await count('ann@example.org', 'to the team')) === 1);
    await eventually(async () => (await r.store.listQueue()).length === 0);
  });

  it('queues the outside target of an alias once, in the MTA, even when the local part is retried', async () => {
    // The MDA is down: the alias waits (its local member could not be reached), nothing is forwarded yet.
    await r.stopMda();
    assert.match(await send('fwd@example.org', 'forward me'), /^250/);
    const first = await eventually(async () => (await r.store.listQueue()).find((e) => e.attempts >= 1));
    assert.equal(first.recipients[0]!.state, 'pending');
    assert.equal((await r.store.listQueue()).length, 1);
    await r.startMda();
    await eventually(async () => (await count('carl@example.org', 'forward me')) === 1, 10_000);
    const forward = await eventually(async () =>
      (await r.store.listQueue()).find((e) => e.recipients.some((x) => x.address === 'out@elsewhere.net')),
    );
    assert.equal(forward.meta.origin, 'alias');
    assert.equal(forward.meta.via, 'fwd@example.org');
    // SRS at the alias's domain: SPF passes at the receiver, and a bounce comes back here.
    assert.match(forward.sender, /^SRS0=[A-Z2-7]{6}=[A-Z2-7]{2}=ext\.org=a@example\.org$/);
    srs = forward.sender;
    assert.match((await r.store.blobs.get(forward.blobId)).toString(), /Subject: forward me/);
    // The alias's entry is done; the forward is the only one left (no outbound here: it waits).
    await eventually(async () => (await r.store.listQueue()).length === 1);
    assert.equal(await count('carl@example.org', 'forward me'), 1);
    await r.store.removeQueueEntry(forward.id);
  });
  let srs = '';

  it('returns a bounce to an SRS address of ours to the original sender, and refuses forged ones with 550 5.1.1', async () => {
    assert.ok(srs, 'the forwarding test ran first');
    const c = await RawClient.open(r.smtpPort);
    assert.match(await c.cmd('EHLO bounce.example'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<>'), /^250/);
    assert.match(await c.cmd(`RCPT TO:<${srs.toLowerCase()}>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    assert.match(await c.cmd('Subject: Undelivered Mail Returned to Sender\r\n\r\nsorry\r\n.'), /^250/);
    const back = await eventually(async () =>
      (await r.store.listQueue()).find((e) => e.recipients.some((x) => x.address === 'a@ext.org')),
    );
    assert.equal(back.sender, '');
    for (const forged of [
      srs.replace('=a@', '=b@'),
      'SRS0=AAAAAA=AA=ext.org=a@example.org',
      'SRS1=AAAAAA=other.example==x@example.org',
      'srs0=garbage@example.org',
    ]) {
      assert.match(await c.cmd('RSET'), /^250/);
      assert.match(await c.cmd('MAIL FROM:<>'), /^250/);
      assert.match(
        await c.cmd(`RCPT TO:<${forged}>`),
        /^550 5\.1\.1 .*not a valid forwarding address/,
        forged,
      );
    }
    c.close();
    await r.store.removeQueueEntry(back.id);
  });

  it('does not forward mail marked as spam outside; the local members still get it', async () => {
    // Queued as the MX queues mail rspamd marked (the MX path that writes X-Spam is tested with rspamd).
    await r.queue('a@ext.org', ['fwd@example.org'], 'X-Spam: Yes\r\nSubject: spam to forward\r\n\r\nbuy\r\n');
    await eventually(async () =>
      (await r.inbox('carl@example.org', 'Junk')).some((m) => m.includes('Subject: spam to forward')),
    );
    await eventually(async () => (await r.store.listQueue()).length === 0);
  });
});

describe('MX: aliases, forwarded with an ARC seal (checks.arc_seal)', () => {
  let r: Rig;
  let sealer: (m: Buffer, d: string) => Promise<string> = async () => '';
  let record = '';
  before(async () => {
    r = await rig({}, { seal: (m, d) => sealer(m, d) });
    const key = generateDkimKey('rsa');
    await r.store.addDkimKey({ domain: 'example.org', selector: 's1', ...key });
    record = dkimRecordValue(key);
    sealer = createArcSealer(r.store, 'mx.test.example');
    await r.store.addAlias({ address: 'fwd@example.org', targets: ['out@elsewhere.net'] });
  });
  after(() => r.close());

  it("seals what our MX found with example.org's key, and a receiver verifies the chain", async () => {
    await r.queue(
      'a@ext.org',
      ['fwd@example.org'],
      'Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=a@ext.org; arc=none\r\nFrom: <a@ext.org>\r\nTo: <fwd@example.org>\r\nSubject: sealed\r\n\r\nhello\r\n',
    );
    const forward = await eventually(async () =>
      (await r.store.listQueue()).find((e) => e.recipients.some((x) => x.address === 'out@elsewhere.net')),
    );
    const sent = await r.store.blobs.get(forward.blobId);
    assert.match(sent.toString(), /^ARC-Seal: i=1; .*d=example\.org/m);
    assert.match(sent.toString(), /^ARC-Authentication-Results: i=1; mx\.test\.example; spf=pass/m);
    // The receiver's view: mailauth with DNS answered from a table (the key we published).
    const resolver = async (name: string, type: string) => {
      if (type === 'TXT' && name === 's1._domainkey.example.org') return [[record]];
      throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
    };
    const checked = await authenticate(sent, {
      ip: '127.0.0.1',
      helo: 'mx.test.example',
      sender: forward.sender,
      mta: 'rx.elsewhere.net',
      resolver: resolver as never,
      disableBimi: true,
    });
    assert.equal(checked.arc ? checked.arc.status.result : null, 'pass');
  });
});
