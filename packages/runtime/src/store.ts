import { join } from 'node:path';
import type { Config } from '@mailwerk/config';
import type { MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';

export class UnsupportedBackendError extends Error {}

/** Opens the store the configuration names. */
export function openStore(config: Config): MailStore {
  if (config.store.backend === 'mongodb') {
    throw new UnsupportedBackendError(
      'store.backend "mongodb" is not available in this build yet; use "sqlite"',
    );
  }
  return openSqliteStore({
    path: config.store.sqlite_path,
    blobs: config.store.bodies === 'sqlite' ? 'sqlite' : { dir: join(config.data_dir, 'blobs') },
  });
}
