// The sort fields SQLite keeps beside each message (schema.ts, message_sort): one row per message that has
// them, made on append, copy and move, gone with the message and its mailbox, filled by the migration from
// the structures of messages stored before; listSortFields reads them and not the structures.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import { contentId, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '../src/index.ts';
import { MIGRATIONS } from '../src/schema.ts';
import { storeWithBob } from './helpers.ts';

const raw = (subject: string) =>
  Buffer.from(
    `From: Ann <a@example.org>\r\nCc: c@example.org\r\nDate: Tue, 1 Dec 2026 10:00:00 +0100\r\nSubject: Re: ${subject}\r\nMessage-ID: <${subject}@x>\r\nReferences: <r1@x> <r2@x>\r\n\r\nbody\r\n`,
  );

async function deliver(store: MailStore, accountId: string, mailboxId: string, subject: string) {
  const data = raw(subject);
  return store.appendMessage({
    accountId,
    mailboxId,
    blobId: contentId(data),
    data,
    size: data.length,
    structure: parseMessage(data),
    flags: [],
  });
}

describe('message_sort (SQLite)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-sort-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const rows = (path: string, table: 'messages' | 'message_sort') => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      return db
        .prepare(`SELECT mailbox_id, uid FROM ${table} ORDER BY mailbox_id, uid`)
        .all()
        .map((r) => `${r.mailbox_id}/${r.uid}`);
    } finally {
      db.close();
    }
  };

  it('has a row for every message, through append, copy, move, expunge and a deleted mailbox', async () => {
    const path = join(dir, 'a.sqlite');
    const { store, account, inbox } = await storeWithBob(path);
    const other = await store.createMailbox(account.id, 'Other');
    for (const s of ['one', 'two', 'three', 'four']) await deliver(store, account.id, inbox.id, s);
    await store.copyMessages(inbox.id, [1, 2], other.id);
    await store.moveMessages(inbox.id, [3], other.id);
    await store.expungeMessages(inbox.id, [1]);
    const kept = rows(path, 'message_sort');
    assert.equal(kept.length, 5);
    assert.deepEqual(kept, rows(path, 'messages'));
    // The copy's fields are its original's, read from the kept row (no structure needed).
    const fields = await store.listSortFields(other.id);
    assert.deepEqual(
      fields.map((f) => [f.uid, f.sort?.subject, f.sort?.subjectKey]),
      [
        [1, 'Re: one', 'ONE'],
        [2, 'Re: two', 'TWO'],
        [3, 'Re: three', 'THREE'],
      ],
    );
    await store.deleteMailbox(account.id, 'Other');
    assert.deepEqual(rows(path, 'message_sort'), rows(path, 'messages'));
    assert.equal(rows(path, 'messages').length, 2);
    await store.close();
  });

  it('reads the kept fields, not the structure', async () => {
    const path = join(dir, 'b.sqlite');
    const { store, account, inbox } = await storeWithBob(path);
    await deliver(store, account.id, inbox.id, 'kept');
    const db = new DatabaseSync(path);
    db.exec(`UPDATE messages SET structure = 'not json'`);
    db.close();
    assert.equal((await store.listSortFields(inbox.id))[0]!.sort?.subject, 'Re: kept');
    // Damaged kept fields read as none (the reader then goes to the message itself).
    const again = new DatabaseSync(path);
    again.exec(`UPDATE message_sort SET fields = '{"subject":'`);
    again.close();
    assert.equal((await store.listSortFields(inbox.id))[0]!.sort, null);
    await store.close();
  });

  it('is filled by its migration from the structures of messages stored before', async () => {
    const path = join(dir, 'c.sqlite');
    const { store, account, inbox } = await storeWithBob(path);
    for (const s of ['one', 'two']) await deliver(store, account.id, inbox.id, s);
    // A structure without sort fields (stored before they were kept), and one damaged.
    const data = raw('older');
    const { sort: _, ...older } = parseMessage(data);
    await store.appendMessage({
      accountId: account.id,
      mailboxId: inbox.id,
      blobId: contentId(data),
      data,
      size: data.length,
      structure: older,
      flags: [],
    });
    await store.close();
    const at = MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE message_sort'));
    const db = new DatabaseSync(path);
    db.exec(`DROP TABLE message_sort; PRAGMA user_version = ${at}`);
    db.exec(`UPDATE messages SET structure = 'not json' WHERE uid = 2`);
    db.close();
    const reopened = openSqliteStore({ path, blobs: 'sqlite' });
    assert.deepEqual(rows(path, 'message_sort'), [`${inbox.id}/1`]);
    const fields = await reopened.listSortFields(inbox.id);
    assert.deepEqual(
      fields.map((f) => f.sort?.subject ?? null),
      ['Re: one', null, null],
    );
    // Filled by SQL from the structure, read as the same fields the message was parsed into.
    assert.deepEqual(fields[0]!.sort, parseMessage(raw('one')).sort);
    await reopened.close();
  });
});
