import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Rig, rig, sample } from './harness.ts';

describe('IMAP smoke', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('logs in, lists, appends and fetches byte for byte', async () => {
    const c = await r.client();
    const list = await c.list();
    assert.ok(list.some((m) => m.path === 'INBOX'));
    const raw = sample('First');
    const res = await c.append('INBOX', raw, ['\\Seen']);
    assert.ok(res && res.uid);
    const lock = await c.getMailboxLock('INBOX');
    try {
      const msg = await c.fetchOne(
        String(res.uid),
        { source: true, envelope: true, bodyStructure: true, flags: true },
        { uid: true },
      );
      assert.ok(msg);
      assert.deepEqual(msg.source, raw);
      assert.equal(msg.envelope?.subject, 'First');
    } finally {
      lock.release();
    }
  });
});
