// Bodies kept in SQLite are removed once nothing refers to them: no disk that
// only grows as users delete mail.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import { contentId, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '../src/index.ts';

describe('unused bodies are collected (bodies in SQLite)', () => {
  let dir: string;
  let store: MailStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-gc-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const append = async (accountId: string, mailboxId: string, raw: Buffer) =>
    store.appendMessage({
      accountId,
      mailboxId,
      blobId: contentId(raw),
      data: raw,
      size: raw.length,
      structure: parseMessage(raw),
    });

  it('keeps a body while a copy, a move or a queue entry still needs it, and drops it after the last', async () => {
    const acc = await store.createAccount({
      address: 'bob@example.org',
      passwordHash: 'x',
      mailboxes: [{ name: 'INBOX' }, { name: 'Old' }],
    });
    const inbox = (await store.getMailbox(acc.id, 'INBOX'))!;
    const old = (await store.getMailbox(acc.id, 'Old'))!;
    const raw = Buffer.from('Subject: gc\r\n\r\nbody\r\n');
    const id = contentId(raw);
    const m = await append(acc.id, inbox.id, raw);
    await store.enqueue({ sender: '', recipients: [{ address: 'x@ext.org' }], blobId: id, size: raw.length });
    await store.copyMessages(inbox.id, [m.uid], old.id);
    await store.expungeMessages(inbox.id, [m.uid]);
    assert.equal(await store.blobs.has(id), true, 'the copy in Old still needs it');
    await store.deleteMailbox(acc.id, 'Old');
    assert.equal(await store.blobs.has(id), true, 'the queue entry still needs it');
    const [entry] = await store.listQueue();
    await store.removeQueueEntry(entry!.id);
    assert.equal(await store.blobs.has(id), false);
  });

  it('drops the bodies of a removed account and of a finished queue entry', async () => {
    const acc = await store.createAccount({
      address: 'ann@example.org',
      passwordHash: 'x',
      mailboxes: [{ name: 'INBOX' }],
    });
    const inbox = (await store.getMailbox(acc.id, 'INBOX'))!;
    const raw = Buffer.from('Subject: ann\r\n\r\nbody\r\n');
    await append(acc.id, inbox.id, raw);
    await store.removeAccount(acc.id);
    assert.equal(await store.blobs.has(contentId(raw)), false);
    const q = Buffer.from('Subject: queued\r\n\r\nbody\r\n');
    await store.enqueue({
      sender: '',
      recipients: [{ address: 'x@ext.org' }],
      blobId: contentId(q),
      data: q,
      size: q.length,
    });
    const [leased] = await store.leaseQueue({ owner: 'w', leaseMs: 1000, limit: 1 });
    await store.recordAttempt(leased!.id, 'w', {
      results: [{ address: 'x@ext.org', state: 'delivered' }],
      nextAttemptAt: new Date(),
    });
    assert.equal(await store.blobs.has(contentId(q)), false);
  });
});
