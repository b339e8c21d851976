import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Config } from '@mailwerk/config';
import type { MailStore } from '@mailwerk/store';
import { type CheckpointerOptions, openSqliteStore } from '@mailwerk/store-sqlite';

/**
 * The MongoDB driver is loaded only for the MongoDB backend: importing it
 * costs a process about 25 MB (7 MB of code and an 18 MB buffer pool), which
 * the embedded default does not pay. require() of an ES module is synchronous
 * (Node 22.12 and later), so openStore stays synchronous too.
 */
const require = createRequire(import.meta.url);

/** The configuration names a store that cannot be opened as configured. */
export class UnsupportedBackendError extends Error {}

export interface OpenStoreOptions {
  /** For a process that runs the MDA alone, whose every write waits for its sync (SqliteStoreOptions.syncOnLoop). */
  syncOnLoop?: boolean;
  /** For the process that runs the MDA: the WAL's checkpoints in a thread (SqliteStoreOptions.checkpointer). */
  checkpointer?: CheckpointerOptions;
}

/** Opens the store the configuration names. The options are the embedded store's; the other backends ignore them. */
export function openStore(config: Config, options: OpenStoreOptions = {}): MailStore {
  if (config.store.backend === 'mongodb') {
    if (!config.store.mongodb_url)
      throw new UnsupportedBackendError(
        'store.backend "mongodb" needs store.mongodb_url (a replica set URL)',
      );
    const mongo = require('@mailwerk/store-mongodb') as typeof import('@mailwerk/store-mongodb');
    return mongo.openMongoStore({ url: config.store.mongodb_url });
  }
  return openSqliteStore({
    path: config.store.sqlite_path,
    blobs: config.store.bodies === 'sqlite' ? 'sqlite' : { dir: join(config.data_dir, 'blobs') },
    syncOnLoop: options.syncOnLoop === true,
    ...(options.checkpointer ? { checkpointer: options.checkpointer } : {}),
  });
}
