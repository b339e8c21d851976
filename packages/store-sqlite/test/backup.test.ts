// Backups of the embedded store: online while mail is written, restored only into a store nobody has
// open; a schema newer than the code is refused; a migration keeps a copy of the store it changes.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import { contentId, isStoreError, type MailStore } from '@mailwerk/store';
import { backupStore, openDatabase, openSqliteStore, restoreStore } from '../src/index.ts';
import { MIGRATIONS } from '../src/schema.ts';
import { storeWithBob } from './helpers.ts';

const message = (i: number) =>
  Buffer.from(
    `From: a@example.net\r\nSubject: number ${i}\r\nMessage-ID: <${i}@example.net>\r\n\r\nbody ${i}\r\n`,
  );

describe('backup and restore of the embedded store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-backup-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function filled(name: string, blobs: 'sqlite' | { dir: string }) {
    const path = join(dir, `${name}.sqlite`);
    const { store, account, inbox } = await storeWithBob(path, blobs);
    const append = (i: number) => {
      const raw = message(i);
      return store.appendMessage({
        accountId: account.id,
        mailboxId: inbox.id,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
        flags: [],
      });
    };
    return { path, store, inbox, append };
  }

  const subjects = async (store: MailStore, mailboxId: string) =>
    (await store.listMessages(mailboxId)).map((m) => m.structure.root.envelope?.subject);

  for (const bodies of ['sqlite', 'files'] as const) {
    it(`copies every message written before the backup began, bodies included, while writes go on (bodies in ${bodies})`, async () => {
      const bodiesDir = join(dir, `bodies-${bodies}`);
      const { path, store, inbox, append } = await filled(
        `live-${bodies}`,
        bodies === 'sqlite' ? 'sqlite' : { dir: bodiesDir },
      );
      for (let i = 1; i <= 50; i++) await append(i);
      // Writes keep coming while the backup runs.
      let writing = true;
      let n = 50;
      const writer = (async () => {
        while (writing) await append(++n);
      })();
      const file = join(dir, `backup-${bodies}.sqlite`);
      const r = await backupStore(path, file, bodies === 'files' ? bodiesDir : undefined);
      writing = false;
      await writer;
      await store.close();
      assert.equal(r.schema, MIGRATIONS.length);
      assert.ok(!existsSync(`${file}.partial`));
      // Restored into a new place: the 50 written before, byte for byte, and whatever came after up to the copy.
      const target = join(dir, `restored-${bodies}.sqlite`);
      const restoredBodies = join(dir, `restored-bodies-${bodies}`);
      const rr = await restoreStore(file, target, bodies === 'files' ? restoredBodies : undefined);
      assert.equal(rr.previous, null);
      const restored = openSqliteStore({
        path: target,
        blobs: bodies === 'sqlite' ? 'sqlite' : { dir: restoredBodies },
      });
      try {
        const got = await subjects(restored, inbox.id);
        for (let i = 1; i <= 50; i++) assert.ok(got.includes(`number ${i}`), `message ${i} in the copy`);
        assert.ok(got.length <= n);
        const list = await restored.listMessages(inbox.id);
        for (const m of list) {
          const raw = await restored.blobs.get(m.blobId);
          assert.equal(contentId(raw), m.blobId);
        }
      } finally {
        await restored.close();
      }
    });
  }

  it('refuses to overwrite a file, to restore into a store in use, and to restore what is not a whole backup', async () => {
    const { path, store, append } = await filled('guarded', 'sqlite');
    await append(1);
    const file = join(dir, 'guarded-backup.sqlite');
    await backupStore(path, file);
    await assert.rejects(backupStore(path, file), (e) => isStoreError(e, 'exists'));
    // The store is open (as the running server has it): restoring over it is refused, and nothing changes.
    await assert.rejects(
      restoreStore(file, path),
      (e) => isStoreError(e, 'conflict') && /in use/.test(e.message),
    );
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith('guarded.sqlite.before-restore')),
      [],
    );
    await store.close();
    const junk = join(dir, 'junk.sqlite');
    writeFileSync(junk, Buffer.alloc(8192, 7));
    await assert.rejects(restoreStore(junk, path), (e) => isStoreError(e, 'corrupt'));
    // Stopped: the restore goes through and keeps the store it replaced beside it.
    const r = await restoreStore(file, path);
    assert.ok(r.previous && existsSync(r.previous));
  });

  it('refuses a store or a backup whose schema is newer than the code, saying so', async () => {
    const path = join(dir, 'newer.sqlite');
    openDatabase({ path }).close();
    const db = new DatabaseSync(path);
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    assert.throws(
      () => openDatabase({ path }),
      (e: unknown) => isStoreError(e, 'conflict') && /newer Mailwerk/.test((e as Error).message),
    );
    await assert.rejects(restoreStore(path, join(dir, 'elsewhere.sqlite')), (e) =>
      isStoreError(e, 'conflict'),
    );
  });

  it('keeps a copy of the store as it was before a migration changes it', async () => {
    const path = join(dir, 'old.sqlite');
    // A store of the schema before the last migration, as the previous version left it.
    const db = new DatabaseSync(path);
    for (let v = 0; v < MIGRATIONS.length - 1; v++) db.exec(MIGRATIONS[v]!);
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length - 1}`);
    db.exec("INSERT INTO domains (name, created_at) VALUES ('kept.example', 1)");
    db.close();
    openDatabase({ path }).close();
    const copy = `${path}.schema-${MIGRATIONS.length - 1}.backup`;
    const old = new DatabaseSync(copy, { readOnly: true });
    try {
      assert.equal(
        (old.prepare('PRAGMA user_version').get() as { user_version: number }).user_version,
        MIGRATIONS.length - 1,
      );
      assert.equal((old.prepare('SELECT name FROM domains').get() as { name: string }).name, 'kept.example');
    } finally {
      old.close();
    }
    // A fresh store has nothing to keep.
    openDatabase({ path: join(dir, 'fresh.sqlite') }).close();
    assert.equal(readdirSync(dir).filter((f) => f.startsWith('fresh.sqlite.schema')).length, 0);
  });

  // SQLite gives a journal it creates as root the database file's owner (os_unix.c); the CLI run as root
  // beside services running as their user relies on it.
  it("as root, leaves the -wal and -shm files of a store that belongs to the services' user to that user", async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root (CI runs as root)');
    const { chownSync, statSync } = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    const nobody = Number(execFileSync('id', ['-u', 'nobody']).toString());
    const path = join(dir, 'owned.sqlite');
    openDatabase({ path }).close();
    chownSync(path, nobody, nobody);
    const db = openDatabase({ path });
    try {
      for (const f of [`${path}-wal`, `${path}-shm`]) assert.equal(statSync(f).uid, nobody, f);
    } finally {
      db.close();
    }
  });
});
