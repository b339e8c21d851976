// Several processes on one host share a data directory (DESIGN.md): real
// OS processes, not connections in one event loop, race on the same files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { MailStore } from '@mailwerk/store';
import { openSqliteStore } from '../src/index.ts';

const run = promisify(execFile);
const worker = join(import.meta.dirname, 'fixtures', 'worker.ts');

describe('sqlite store shared by several processes', () => {
  let dir: string;
  let store: MailStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-mp-'));
    store = openSqliteStore({ path: join(dir, 'mailwerk.sqlite'), blobs: { dir: join(dir, 'blobs') } });
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const spawnWorkers = (args: (i: number) => string[], n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        run(process.execPath, ['--disable-warning=ExperimentalWarning', worker, dir, ...args(i)]).then(
          (r) => JSON.parse(r.stdout) as Array<number | string>,
        ),
      ),
    );

  it('gives every message a distinct UID when three processes deliver at once', async () => {
    await store.addDomain('example.org');
    const acc = await store.createAccount({
      address: 'bob@example.org',
      passwordHash: 'x',
      mailboxes: [{ name: 'INBOX' }],
    });
    const inbox = (await store.getMailbox(acc.id, 'INBOX'))!;
    const per = 40;
    const results = await spawnWorkers((i) => ['deliver', acc.id, inbox.id, String(per), `w${i}`], 3);
    const uids = results
      .flat()
      .map(Number)
      .sort((a, b) => a - b);
    assert.deepEqual(
      uids,
      Array.from({ length: per * 3 }, (_, i) => i + 1),
    );
    const status = await store.mailboxStatus(inbox.id);
    assert.equal(status.messages, per * 3);
    assert.equal((await store.getAccount(acc.id))!.usedBytes, status.size);
  });

  it('never leases a queue entry to two processes', async () => {
    const blobId = await store.blobs.put(Buffer.from('x'));
    for (let i = 0; i < 60; i++)
      await store.enqueue({ sender: '', recipients: [{ address: `r${i}@x.org` }], blobId, size: 1 });
    const results = await spawnWorkers((i) => ['lease', '0', '0', '30', `p${i}`], 3);
    const ids = results.flat();
    assert.equal(ids.length, 60);
    assert.equal(new Set(ids).size, 60);
  });
});
