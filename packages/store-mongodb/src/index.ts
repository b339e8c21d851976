import type { MailStore } from '@mailwerk/store';
import { MongoMailStore, type MongoStoreOptions } from './store.ts';

export { GridFsBlobStore } from './blobs.ts';
export { MongoMailStore, type MongoStoreOptions } from './store.ts';

/** The shared store on MongoDB; the connection opens with the first operation. */
export const openMongoStore = (options: MongoStoreOptions): MailStore => new MongoMailStore(options);
