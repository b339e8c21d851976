// A Sieve reject (RFC 5429) that reaches the MDA after our MX took the message becomes a bounce (a DSN
// with the user's reason) only when the sender is known not to be forged; a forged one gets nothing,
// so a reject never turns this server into a source of backscatter.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, type Rig, rig } from './harness.ts';

describe('Sieve reject after the MX accepted', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    await r.store.putSieveScript(
      r.users.bob!.id,
      'no',
      'require "reject"; reject "I do not take mail from you.";',
    );
    await r.store.setActiveSieveScript(r.users.bob!.id, 'no');
  });
  after(() => r.close());

  const queue = (subject: string, extra: string) =>
    r.queue(
      'a@ext.org',
      ['bob@example.org'],
      `${extra}From: <a@ext.org>\r\nTo: <bob@example.org>\r\nSubject: ${subject}\r\n\r\nhi\r\n`,
    );
  const bounceFor = async (id: string) => (await r.store.listQueue()).find((e) => e.meta.dsnFor === id);

  it('bounces to an authenticated sender with the reason, and to an unauthenticated one not at all', async () => {
    // Queued as the MX queues it: our own Authentication-Results on top (the MX removes forged ones).
    const vouched = await queue(
      'vouched',
      'Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=a@ext.org\r\n',
    );
    const bounce = await eventually(() => bounceFor(vouched.id));
    assert.equal(bounce.sender, '');
    assert.deepEqual(
      bounce.recipients.map((x) => x.address),
      ['a@ext.org'],
    );
    const text = (await r.store.blobs.get(bounce.blobId)).toString();
    assert.match(text, /550 5\.7\.1 .*refused by the recipient: I do not take mail from you\./);

    const forged = await queue(
      'forged',
      'Authentication-Results: mx.test.example; spf=fail smtp.mailfrom=a@ext.org\r\n',
    );
    const other = await queue('claimed elsewhere', 'Authentication-Results: evil.example; spf=pass\r\n');
    // Both entries end (bob's recipient failed) with no bounce queued for either.
    await eventually(async () => {
      const ids = new Set((await r.store.listQueue()).map((e) => e.id));
      return !ids.has(forged.id) && !ids.has(other.id);
    });
    assert.equal(await bounceFor(forged.id), undefined);
    assert.equal(await bounceFor(other.id), undefined);
    assert.deepEqual(await r.inbox('bob@example.org'), [], 'nothing delivered');
  });
});
