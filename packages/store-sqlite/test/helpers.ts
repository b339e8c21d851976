// What several of this package's tests start from: a store at `path` with one domain and bob's account.
import { DEFAULT_MAILBOXES } from '@mailwerk/store';
import { openSqliteStore } from '../src/index.ts';

export async function storeWithBob(path: string, blobs: 'sqlite' | { dir: string } = 'sqlite') {
  const store = openSqliteStore({ path, blobs });
  await store.addDomain('example.org');
  const account = await store.createAccount({
    address: 'bob@example.org',
    passwordHash: 'x',
    mailboxes: [...DEFAULT_MAILBOXES],
  });
  const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
  return { store, account, inbox };
}
