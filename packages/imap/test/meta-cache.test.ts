// The shared row cache (src/meta-cache.ts) against the store it caches: whatever other processes do to a
// mailbox (a second store on the same SQLite file plays them), a read returns what the store holds.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_MAILBOXES, type MailStore, type MessageMeta } from '@mailwerk/store';
import { deliver, sampleMessage } from '@mailwerk/store/conformance';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import fc from 'fast-check';
import { MetaCache } from '../src/meta-cache.ts';

const shape = (list: MessageMeta[]) =>
  list.map((m) => [m.uid, [...m.flags].sort(), m.modseq, m.size, m.blobId]);

describe('MetaCache', () => {
  let dir: string;
  let store: MailStore;
  let other: MailStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-metacache-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    other = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
  });
  after(async () => {
    await store.close();
    await other.close();
    await rm(dir, { recursive: true, force: true });
  });

  let n = 0;
  const account = async () =>
    store.createAccount({
      address: `u${++n}@example.org`,
      passwordHash: 'x',
      mailboxes: [...DEFAULT_MAILBOXES],
    });

  it('follows appends, flag changes and expunges made through another store, in any order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.constant({ op: 'append' as const }),
            fc.record({ op: fc.constant('flag' as const), at: fc.nat(), set: fc.boolean() }),
            fc.record({ op: fc.constant('expunge' as const), at: fc.nat() }),
            fc.record({
              op: fc.constant('read' as const),
              from: fc.nat({ max: 30 }),
              span: fc.nat({ max: 30 }),
            }),
          ),
          { maxLength: 40 },
        ),
        async (ops) => {
          const acc = await account();
          const box = (await store.getMailbox(acc.id, 'INBOX'))!;
          const cache = new MetaCache(store);
          // A few rows in the cache first, so the changes have something to change.
          for (let i = 0; i < 3; i++) await deliver(other, acc, box.id, sampleMessage(`first ${i}`));
          assert.equal((await cache.list(box.id)).length, 3);
          for (const o of ops) {
            const uids = await other.listUids(box.id);
            if (o.op === 'append') await deliver(other, acc, box.id, sampleMessage(`m${Math.random()}`));
            else if (o.op === 'flag' && uids.length)
              await other.updateFlags(box.id, [uids[o.at % uids.length]!], {
                op: o.set ? 'add' : 'remove',
                flags: ['\\Seen', 'Work'],
              });
            else if (o.op === 'expunge' && uids.length)
              await other.expungeMessages(box.id, [uids[o.at % uids.length]!]);
            else if (o.op === 'read') {
              const range = { uidFrom: o.from, uidTo: o.from + o.span };
              assert.deepEqual(
                shape(await cache.list(box.id, range)),
                shape(await store.listMessageMeta(box.id, range)),
              );
            }
          }
          assert.deepEqual(shape(await cache.list(box.id)), shape(await store.listMessageMeta(box.id)));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('reads the mailbox whole when the journal was pruned past what it knows', async () => {
    const acc = await account();
    const box = (await store.getMailbox(acc.id, 'INBOX'))!;
    const cache = new MetaCache(store);
    for (let i = 0; i < 3; i++) await deliver(other, acc, box.id, sampleMessage(`kept ${i}`));
    assert.equal((await cache.list(box.id)).length, 3);
    // Two changes, then a prune that keeps only the last: the first (a flag) is gone from the journal.
    await other.updateFlags(box.id, [1], { op: 'add', flags: ['\\Flagged'] });
    await other.expungeMessages(box.id, [2]);
    await other.pruneJournal(0);
    assert.deepEqual(shape(await cache.list(box.id)), shape(await store.listMessageMeta(box.id)));
    assert.deepEqual((await cache.list(box.id, { uidFrom: 1, uidTo: 1 }))[0]!.flags, ['\\Flagged']);
  });

  it('keeps at most maxRows rows, dropping the mailbox read least recently', async () => {
    const a = await account();
    const b = await account();
    const boxA = (await store.getMailbox(a.id, 'INBOX'))!;
    const boxB = (await store.getMailbox(b.id, 'INBOX'))!;
    for (let i = 0; i < 3; i++) {
      await deliver(store, a, boxA.id, sampleMessage(`a${i}`));
      await deliver(store, b, boxB.id, sampleMessage(`b${i}`));
    }
    const cache = new MetaCache(store, { maxRows: 4 });
    assert.equal((await cache.list(boxA.id)).length, 3);
    assert.equal((await cache.list(boxB.id)).length, 3);
    // A's rows went to make room: reading it again reads the store (seen as a fresh list, still right).
    await other.expungeMessages(boxA.id, [(await other.listUids(boxA.id))[0]!]);
    assert.equal((await cache.list(boxA.id)).length, 2);
    assert.equal((await cache.list(boxB.id)).length, 3);
  });

  it('answers a deleted mailbox with no rows', async () => {
    const a = await account();
    const box = await store.createMailbox(a.id, 'Gone');
    await deliver(store, a, box.id, sampleMessage('x'));
    const cache = new MetaCache(store);
    assert.equal((await cache.list(box.id)).length, 1);
    await other.deleteMailbox(a.id, 'Gone');
    assert.deepEqual(await cache.list(box.id), []);
  });
});
