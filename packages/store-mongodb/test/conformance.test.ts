// The MailStore conformance suite against a real MongoDB, when MONGODB_URL names one (a replica set or a
// single server). No MongoDB can be installed on the development machines, so without MONGODB_URL the
// suite is skipped, and says so: it is not a pass.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { runStoreConformance } from '@mailwerk/store/conformance';
import { MongoClient } from 'mongodb';
import { MongoMailStore } from '../src/index.ts';

const url = process.env.MONGODB_URL;

if (!url) {
  test('MailStore conformance: mongodb', {
    skip: 'MONGODB_URL is not set (no MongoDB server on this machine)',
  }, () => {});
} else {
  runStoreConformance('mongodb', async () => {
    const dbName = `mailwerk_test_${randomBytes(6).toString('hex')}`;
    const scribble = async (collection: string, id: string, set: Record<string, unknown>) => {
      const client = new MongoClient(url);
      try {
        await client.db(dbName).collection<{ _id: string }>(collection).updateOne({ _id: id }, { $set: set });
      } finally {
        await client.close();
      }
    };
    return {
      store: new MongoMailStore({ url, dbName }),
      openAnother: async () => new MongoMailStore({ url, dbName }),
      damage: {
        queueRecipients: (id) => scribble('queue', id, { recipients: 'not a list' }),
        messageStructure: (id) => scribble('messages', id, { structure: 'not json' }),
      },
      async cleanup() {
        const client = new MongoClient(url);
        await client.db(dbName).dropDatabase();
        await client.close();
      },
    };
  });
}

if (url) {
  test('refuses a database written by a newer Mailwerk, saying so', async () => {
    const { isStoreError } = await import('@mailwerk/store');
    const { MONGO_SCHEMA } = await import('../src/store.ts');
    const dbName = `mailwerk_test_${randomBytes(6).toString('hex')}`;
    const client = new MongoClient(url);
    try {
      await client
        .db(dbName)
        .collection<{ _id: string; version: number }>('meta')
        .insertOne({ _id: 'schema', version: MONGO_SCHEMA + 1 });
      const store = new MongoMailStore({ url, dbName });
      await assert.rejects(
        store.listDomains(),
        (e) => isStoreError(e, 'conflict') && /newer Mailwerk/.test((e as Error).message),
      );
      await store.close();
    } finally {
      await client.db(dbName).dropDatabase();
      await client.close();
    }
  });
}
