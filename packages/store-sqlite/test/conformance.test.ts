import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    return {
      store: open(),
      openAnother: async () => open(),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  });
}
