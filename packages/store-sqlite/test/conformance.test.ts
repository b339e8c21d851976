import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { runStoreConformance } from '@mailwerk/store/conformance';
import { openSqliteStore } from '../src/index.ts';

for (const blobs of ['files', 'sqlite'] as const) {
  runStoreConformance(`sqlite (bodies in ${blobs})`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailwerk-store-'));
    const open = () =>
      openSqliteStore({
        path: join(dir, 'mailwerk.sqlite'),
        blobs: blobs === 'files' ? { dir: join(dir, 'blobs') } : 'sqlite',
      });
    const raw = () => new DatabaseSync(join(dir, 'mailwerk.sqlite'));
    const scribble = async (sql: string, id: string | number) => {
      const db = raw();
      try {
        db.prepare(sql).run(id);
      } finally {
        db.close();
      }
    };
    return {
      store: open(),
      openAnother: async () => open(),
      damage: {
        queueRecipients: (id) => scribble(`UPDATE queue SET recipients = '[{"address": ' WHERE id = ?`, id),
        messageStructure: (id) =>
          scribble(`UPDATE messages SET structure = 'not json' WHERE id = ?`, Number(id)),
      },
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  });
}
