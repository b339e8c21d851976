/**
 * The MailStore conformance suite. Every adapter runs it:
 *
 *   runStoreConformance('sqlite', async () => ({ store, openAnother, cleanup }));
 *
 * Each test gets a fresh store from the factory and never depends on another
 * test's leftovers.
 */
import { describe } from 'node:test';
import { directorySuite } from './directory.ts';
import { dkimSuite } from './dkim.ts';
import type { StoreFactory } from './harness.ts';
import { mailboxSuite } from './mailboxes.ts';
import { messageSuite } from './messages.ts';
import { queueSuite } from './queue.ts';
import { sieveSuite } from './sieve.ts';
import { tlsSuite } from './tls.ts';

export type { StoreFactory, StoreHarness } from './harness.ts';
export { deliver, sampleMessage } from './harness.ts';

export function runStoreConformance(name: string, factory: StoreFactory): void {
  describe(`MailStore conformance: ${name}`, () => {
    directorySuite(factory);
    mailboxSuite(factory);
    messageSuite(factory);
    queueSuite(factory);
    sieveSuite(factory);
    dkimSuite(factory);
    tlsSuite(factory);
  });
}
