import { join } from 'node:path';
import type { Config } from '@mailwerk/config';
import type { MailStore } from '@mailwerk/store';
import { openMongoStore } from '@mailwerk/store-mongodb';
import { openSqliteStore } from '@mailwerk/store-sqlite';

/** The configuration names a store that cannot be opened as configured. */
export class UnsupportedBackendError extends Error {}

/** Opens the store the configuration names. */
export function openStore(config: Config): MailStore {
  if (config.store.backend === 'mongodb') {
    if (!config.store.mongodb_url)
      throw new UnsupportedBackendError(
        'store.backend "mongodb" needs store.mongodb_url (a replica set URL)',
      );
    return openMongoStore({ url: config.store.mongodb_url });
  }
  return openSqliteStore({
    path: config.store.sqlite_path,
    blobs: config.store.bodies === 'sqlite' ? 'sqlite' : { dir: join(config.data_dir, 'blobs') },
  });
}
