import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InProcessBus, type MailEvent } from '../src/index.ts';

describe('in-process bus', () => {
  it('delivers events to the subscribers of that account only, until they unsubscribe', async () => {
    const bus = new InProcessBus();
    const got: MailEvent[] = [];
    const other: MailEvent[] = [];
    const off = bus.subscribe('1', (e) => got.push(e));
    bus.subscribe('2', (e) => other.push(e));
    bus.subscribe('1', () => {
      throw new Error('a broken subscriber');
    });
    const e: MailEvent = { type: 'message.new', accountId: '1', mailboxId: '7', uid: 3, modseq: 9 };
    await bus.publish(e);
    off();
    await bus.publish({ ...e, uid: 4 });
    assert.deepEqual(got, [e]);
    assert.deepEqual(other, []);
  });
});
