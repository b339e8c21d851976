import assert from 'node:assert/strict';
import { afterEach, beforeEach } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import { isStoreError, type StoreErrorCode } from '../errors.ts';
import type { Account, MailStore, Message } from '../types.ts';

export interface StoreHarness {
  store: MailStore;
  /** Opens a second, independent store on the same data (another connection), for concurrency checks. */
  openAnother(): Promise<MailStore>;
  /**
   * Writes garbage where the adapter keeps a queue entry's recipients or a
   * message's structure (what a damaged database or a bug of an older version
   * leaves), so the suite can check that readers survive it.
   */
  damage: { queueRecipients(id: string): Promise<void>; messageStructure(messageId: string): Promise<void> };
  cleanup(): Promise<void>;
}

/** Creates a fresh, empty store for one test. */
export type StoreFactory = () => Promise<StoreHarness>;

export interface Ctx {
  readonly store: MailStore;
  openAnother(): Promise<MailStore>;
  readonly damage: StoreHarness['damage'];
}

/** Registers per-test setup and teardown; every test gets a fresh store. */
export function useStore(factory: StoreFactory): Ctx {
  let harness: StoreHarness | null = null;
  const others: MailStore[] = [];
  beforeEach(async () => {
    harness = await factory();
  });
  afterEach(async () => {
    for (const s of others.splice(0)) await s.close();
    await harness?.store.close();
    await harness?.cleanup();
    harness = null;
  });
  return {
    get store() {
      if (!harness) throw new Error('no store: used outside a test');
      return harness.store;
    },
    async openAnother() {
      if (!harness) throw new Error('no store: used outside a test');
      const s = await harness.openAnother();
      others.push(s);
      return s;
    },
    get damage() {
      if (!harness) throw new Error('no store: used outside a test');
      return harness.damage;
    },
  };
}

export function sampleMessage(subject: string, body = 'Hello.\r\n'): Buffer {
  return Buffer.from(
    `From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: ${subject}\r\n` +
      `Message-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\n${body}`,
  );
}

export async function deliver(
  store: MailStore,
  account: Account,
  mailboxId: string,
  raw: Buffer,
  extra: { flags?: string[]; internalDate?: Date; enforceQuota?: boolean; deliveryKey?: string } = {},
): Promise<Message> {
  const blobId = await store.blobs.put(raw);
  return store.appendMessage({
    accountId: account.id,
    mailboxId,
    blobId,
    size: raw.length,
    structure: parseMessage(raw),
    ...extra,
  });
}

export async function newAccount(
  store: MailStore,
  address = 'bob@example.org',
  quotaBytes: number | null = null,
) {
  const domain = address.slice(address.indexOf('@') + 1);
  if (!(await store.getDomain(domain))) await store.addDomain(domain);
  const account = await store.createAccount({
    address,
    passwordHash: '$argon2id$dummy',
    quotaBytes,
    mailboxes: [{ name: 'INBOX' }, { name: 'Trash', specialUse: '\\Trash' }],
  });
  const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
  return { account, inbox };
}

/** Asserts that `p` fails with a StoreError of this code. */
export const rejects = (p: Promise<unknown>, code: StoreErrorCode) =>
  assert.rejects(p, (err: unknown) => isStoreError(err, code));
