/** Messages: UIDs, MODSEQs, flags, copy/move/expunge, quota, the change journal, and concurrency. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import { isStoreError } from '../errors.ts';
import { contentId } from '../types.ts';
import { deliver, newAccount, rejects, type StoreFactory, sampleMessage, useStore } from './harness.ts';

export function messageSuite(factory: StoreFactory): void {
  describe('messages', () => {
    const ctx = useStore(factory);

    it('assigns ascending UIDs and MODSEQs and keeps the bytes exact', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const raw = Buffer.from('Subject: exact\n\nbare LF body\r\nmixed\rline endings \u00e9\n', 'utf8');
      const date = new Date('2026-01-02T03:04:05.000Z');
      const m1 = await deliver(ctx.store, account, inbox.id, raw, {
        flags: ['\\seen', 'Work', 'work'],
        internalDate: date,
      });
      const m2 = await deliver(ctx.store, account, inbox.id, sampleMessage('two'));
      assert.deepEqual([m1.uid, m2.uid], [1, 2]);
      assert.ok(m2.modseq > m1.modseq);
      assert.deepEqual(m1.flags, ['\\Seen', 'Work']);
      const got = (await ctx.store.getMessage(inbox.id, 1))!;
      assert.equal(got.internalDate.getTime(), date.getTime());
      assert.equal(got.size, raw.length);
      assert.equal(got.structure.root.envelope?.subject, 'exact');
      assert.ok((await ctx.store.blobs.get(got.blobId)).equals(raw));
      const box = (await ctx.store.getMailboxById(inbox.id))!;
      assert.equal(box.uidNext, 3);
      assert.equal(box.highestModseq, m2.modseq);
      const status = await ctx.store.mailboxStatus(inbox.id);
      assert.deepEqual(status, {
        messages: 2,
        unseen: 1,
        recent: 2,
        size: raw.length + m2.size,
        uidNext: 3,
        uidValidity: box.uidValidity,
        highestModseq: m2.modseq,
      });
      assert.deepEqual(
        (await ctx.store.listMessages(inbox.id, { uidFrom: 2 })).map((m) => m.uid),
        [2],
      );
      assert.deepEqual(await ctx.store.listUids(inbox.id), [1, 2]);
      const meta = await ctx.store.listMessageMeta(inbox.id, { uidTo: 1 });
      assert.equal(meta.length, 1);
      assert.deepEqual(
        {
          uid: meta[0]!.uid,
          flags: meta[0]!.flags,
          size: meta[0]!.size,
          blobId: meta[0]!.blobId,
          modseq: meta[0]!.modseq,
        },
        { uid: 1, flags: ['\\Seen', 'Work'], size: raw.length, blobId: m1.blobId, modseq: m1.modseq },
      );
      assert.equal(meta[0]!.internalDate.getTime(), date.getTime());
      assert.ok(!('structure' in meta[0]!));
      await ctx.store.expungeMessages(inbox.id, [1]);
      assert.deepEqual(await ctx.store.listUids(inbox.id), [2]);
      await rejects(
        deliver(ctx.store, account, inbox.id, sampleMessage('x'), { flags: ['\\Bogus'] }),
        'invalid',
      );
    });

    it('views a mailbox for SELECT: UIDs, first unseen, keywords, and \\Recent claimed once', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      await deliver(ctx.store, account, inbox.id, sampleMessage('a'), { flags: ['\\Seen', '$Work'] });
      await deliver(ctx.store, account, inbox.id, sampleMessage('b'), { flags: ['$Later', '\\Flagged'] });
      await deliver(ctx.store, account, inbox.id, sampleMessage('c'), { flags: ['$work'] });
      const peek = await ctx.store.viewMailbox(inbox.id);
      assert.deepEqual(peek.uids, [1, 2, 3]);
      assert.equal(peek.recentAbove, 0);
      assert.equal(peek.firstUnseen, 2);
      assert.deepEqual(peek.keywords.map((k) => k.toLowerCase()).sort(), ['$later', '$work']);
      assert.equal(peek.mailbox.uidNext, 4);
      // Peeking claims nothing: the first session to claim gets all three as \Recent, the next none.
      const first = await ctx.store.viewMailbox(inbox.id, { claimRecent: true });
      assert.equal(first.recentAbove, 0);
      const second = await ctx.store.viewMailbox(inbox.id, { claimRecent: true });
      assert.equal(second.recentAbove, 3);
      assert.equal((await ctx.store.mailboxStatus(inbox.id)).recent, 0);
      // A new message is \Recent for the one session that claims it while selected.
      await deliver(ctx.store, account, inbox.id, sampleMessage('d'));
      assert.equal((await ctx.store.mailboxStatus(inbox.id)).recent, 1);
      assert.equal(await ctx.store.claimRecent(inbox.id, 4), 3);
      assert.equal(await ctx.store.claimRecent(inbox.id, 4), 4);
      assert.equal(await ctx.store.claimRecent(inbox.id, 2), 4);
      await ctx.store.updateFlags(inbox.id, [2, 3, 4], { op: 'add', flags: ['\\Seen'] });
      assert.equal((await ctx.store.viewMailbox(inbox.id)).firstUnseen, null);
      await rejects(ctx.store.viewMailbox('999999'), 'not_found');
    });

    it('lists a mailbox holding a message whose structure is damaged: only reading that structure fails, as corrupt', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const ok = await deliver(ctx.store, account, inbox.id, sampleMessage('fine'));
      const bad = await deliver(ctx.store, account, inbox.id, sampleMessage('damaged'));
      await ctx.damage.messageStructure(bad.id);
      const list = await ctx.store.listMessages(inbox.id);
      assert.deepEqual(
        list.map((m) => m.uid),
        [ok.uid, bad.uid],
      );
      assert.equal(list[0]!.structure.root.envelope?.subject, 'fine');
      assert.throws(
        () => list[1]!.structure,
        (err: unknown) => isStoreError(err, 'corrupt'),
      );
      assert.deepEqual(
        (await ctx.store.listMessageMeta(inbox.id)).map((m) => m.uid),
        [ok.uid, bad.uid],
      );
      assert.equal((await ctx.store.viewMailbox(inbox.id)).uids.length, 2);
    });

    it('lists the sort fields kept with the messages, in UID order; null for an older structure', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const subjects = ['one', 'two', 'three', 'four'];
      for (const subject of subjects) await deliver(ctx.store, account, inbox.id, sampleMessage(subject));
      const bad = (await ctx.store.getMessage(inbox.id, 2))!;
      await ctx.damage.messageStructure(bad.id);
      // A structure stored before the sort fields were kept.
      const raw = sampleMessage('older');
      const { sort: _, ...older } = parseMessage(raw);
      await ctx.store.appendMessage({
        accountId: account.id,
        mailboxId: inbox.id,
        blobId: await ctx.store.blobs.put(raw),
        size: raw.length,
        structure: older,
        flags: [],
      });
      const all = await ctx.store.listSortFields(inbox.id);
      // A damaged structure: its fields, where the store keeps them apart, else none (read from the message).
      const damaged = all[1]!.sort;
      assert.ok(damaged === null || damaged.subject === 'two', JSON.stringify(damaged));
      assert.deepEqual(
        all.map((f) => [f.uid, f.uid === 2 ? 'either' : (f.sort?.subject ?? null)]),
        [
          [1, 'one'],
          [2, 'either'],
          [3, 'three'],
          [4, 'four'],
          [5, null],
        ],
      );
      assert.deepEqual(all[0]!.sort, parseMessage(sampleMessage('one')).sort);
      assert.deepEqual(
        (await ctx.store.listSortFields(inbox.id, { uidFrom: 3, uidTo: 4 })).map((f) => f.uid),
        [3, 4],
      );
      assert.deepEqual(await ctx.store.listSortFields('999999'), []);
    });

    it('keeps the sort fields of a message copied or moved, and none of one expunged', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const other = await ctx.store.createMailbox(account.id, 'Other');
      for (const subject of ['one', 'two', 'three'])
        await deliver(ctx.store, account, inbox.id, sampleMessage(subject));
      await ctx.store.copyMessages(inbox.id, [1], other.id);
      await ctx.store.moveMessages(inbox.id, [2], other.id);
      await ctx.store.expungeMessages(inbox.id, [3]);
      const subjectsOf = async (id: string) =>
        (await ctx.store.listSortFields(id)).map((f) => [f.uid, f.sort?.subject ?? null]);
      assert.deepEqual(await subjectsOf(other.id), [
        [1, 'one'],
        [2, 'two'],
      ]);
      assert.deepEqual(await subjectsOf(inbox.id), [[1, 'one']]);
      assert.deepEqual(
        (await ctx.store.listSortFields(other.id))[1]!.sort,
        parseMessage(sampleMessage('two')).sort,
      );
      // Gone with their mailbox: a mailbox made later (SQLite may give it the same id) has none of them.
      await ctx.store.deleteMailbox(account.id, 'Other');
      const again = await ctx.store.createMailbox(account.id, 'Again');
      await deliver(ctx.store, account, again.id, sampleMessage('new'));
      assert.deepEqual(await subjectsOf(again.id), [[1, 'new']]);
    });

    it('stores the body with the message when given', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const raw = sampleMessage('inline');
      const m = await ctx.store.appendMessage({
        accountId: account.id,
        mailboxId: inbox.id,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
      });
      assert.ok((await ctx.store.blobs.get(m.blobId)).equals(raw));
    });

    it('names the body by its hash when only the bytes are given, and refuses an id that is not theirs', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const raw = sampleMessage('hashed here');
      const base = {
        accountId: account.id,
        mailboxId: inbox.id,
        size: raw.length,
        structure: parseMessage(raw),
      };
      const m = await ctx.store.appendMessage({ ...base, data: raw });
      assert.equal(m.blobId, contentId(raw));
      assert.equal((await ctx.store.getMessage(inbox.id, m.uid))!.blobId, contentId(raw));
      assert.ok((await ctx.store.blobs.get(m.blobId)).equals(raw));
      // An id that is another body's, or neither id nor bytes: refused, and nothing stored.
      const other = sampleMessage('another body');
      await rejects(ctx.store.appendMessage({ ...base, blobId: contentId(raw), data: other }), 'invalid');
      await rejects(ctx.store.appendMessage(base), 'invalid');
      assert.equal(await ctx.store.blobs.has(contentId(other)), false);
      assert.deepEqual(await ctx.store.listUids(inbox.id), [m.uid]);
      assert.equal((await ctx.store.getMailboxById(inbox.id))!.uidNext, m.uid + 1);
    });

    it('never reuses a UID after expunge', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      await deliver(ctx.store, account, inbox.id, sampleMessage('a'));
      await deliver(ctx.store, account, inbox.id, sampleMessage('b'));
      assert.deepEqual(await ctx.store.expungeMessages(inbox.id, [2, 7]), [2]);
      const m = await deliver(ctx.store, account, inbox.id, sampleMessage('c'));
      assert.equal(m.uid, 3);
    });

    it('updates flags with add, remove and set, and honours UNCHANGEDSINCE', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const a = await deliver(ctx.store, account, inbox.id, sampleMessage('a'));
      const b = await deliver(ctx.store, account, inbox.id, sampleMessage('b'), { flags: ['\\Seen'] });
      const r1 = await ctx.store.updateFlags(inbox.id, [1, 2], { op: 'add', flags: ['\\Seen'] });
      assert.deepEqual(
        r1.updated.map((m) => [m.uid, m.flags]),
        [[1, ['\\Seen']]],
      );
      const ms = r1.updated[0]!.modseq;
      assert.ok(ms > b.modseq);
      const r2 = await ctx.store.updateFlags(inbox.id, [1, 2], {
        op: 'set',
        flags: ['\\Flagged', '$Label1'],
      });
      assert.equal(r2.updated.length, 2);
      const r3 = await ctx.store.updateFlags(inbox.id, [1], { op: 'remove', flags: ['$label1'] });
      assert.deepEqual(r3.updated[0]!.flags, ['\\Flagged']);
      // Message 2 changes after message 1 did: UNCHANGEDSINCE at message 1's modseq lets 1 through, refuses 2.
      const m1 = r3.updated[0]!;
      await ctx.store.updateFlags(inbox.id, [2], { op: 'add', flags: ['Later'] });
      const r4 = await ctx.store.updateFlags(inbox.id, [1, 2], {
        op: 'add',
        flags: ['\\Answered'],
        unchangedSince: m1.modseq,
      });
      assert.deepEqual(r4.modified, [2]);
      assert.deepEqual(
        r4.updated.map((m) => m.uid),
        [1],
      );
      assert.equal((await ctx.store.mailboxStatus(inbox.id)).unseen, 2);
      assert.ok(a.modseq < ms);
    });

    it('copies and moves messages with new UIDs, and keeps quota right', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const trash = (await ctx.store.getMailbox(account.id, 'Trash'))!;
      const m1 = await deliver(ctx.store, account, inbox.id, sampleMessage('a'), { flags: ['\\Seen'] });
      const m2 = await deliver(ctx.store, account, inbox.id, sampleMessage('b'));
      const size = m1.size + m2.size;
      const copy = await ctx.store.copyMessages(inbox.id, [1, 2, 9], trash.id);
      assert.equal(copy.uidValidity, trash.uidValidity);
      assert.deepEqual(copy.uids, [
        [1, 1],
        [2, 2],
      ]);
      assert.deepEqual((await ctx.store.getMessage(trash.id, 1))?.flags, ['\\Seen']);
      assert.equal((await ctx.store.getAccount(account.id))!.usedBytes, size * 2);
      const move = await ctx.store.moveMessages(inbox.id, [2], trash.id);
      assert.deepEqual(move.uids, [[2, 3]]);
      assert.equal(await ctx.store.getMessage(inbox.id, 2), null);
      assert.equal((await ctx.store.getAccount(account.id))!.usedBytes, size * 2);
      assert.equal(await ctx.store.recalculateQuota(account.id), size * 2);
    });

    it('keeps when each message was stored in its mailbox (SAVEDATE): set by append, copy and move, apart from INTERNALDATE', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const trash = (await ctx.store.getMailbox(account.id, 'Trash'))!;
      const old = new Date('2020-05-06T07:08:09.000Z');
      const before = Date.now();
      await deliver(ctx.store, account, inbox.id, sampleMessage('saved'), { internalDate: old });
      const stored = (await ctx.store.getMessage(inbox.id, 1))!;
      assert.equal(stored.internalDate.getTime(), old.getTime());
      assert.ok(stored.savedAt && stored.savedAt.getTime() >= before - 1000, String(stored.savedAt));
      const [meta] = await ctx.store.listMessageMeta(inbox.id);
      assert.equal(meta!.savedAt?.getTime(), stored.savedAt.getTime());
      // A copy and a move are stored anew: their own time, the same INTERNALDATE.
      // The clock past the first save, so a copy that kept its time would show.
      while (Date.now() <= stored.savedAt.getTime()) await new Promise((r) => setImmediate(r));
      await ctx.store.copyMessages(inbox.id, [1], trash.id);
      await ctx.store.moveMessages(inbox.id, [1], trash.id);
      for (const uid of [1, 2]) {
        const m = (await ctx.store.getMessage(trash.id, uid))!;
        assert.equal(m.internalDate.getTime(), old.getTime());
        assert.ok(m.savedAt && m.savedAt.getTime() > stored.savedAt.getTime(), `uid ${uid}: ${m.savedAt}`);
      }
    });

    it('refuses a message over quota and writes nothing', async () => {
      const raw = sampleMessage('q');
      const { account, inbox } = await newAccount(ctx.store, 'bob@example.org', raw.length * 2);
      await deliver(ctx.store, account, inbox.id, raw);
      await deliver(ctx.store, account, inbox.id, raw);
      await rejects(deliver(ctx.store, account, inbox.id, raw), 'over_quota');
      await rejects(ctx.store.copyMessages(inbox.id, [1], inbox.id), 'over_quota');
      const status = await ctx.store.mailboxStatus(inbox.id);
      assert.equal(status.messages, 2);
      assert.equal(status.uidNext, 3);
      assert.equal((await ctx.store.getAccount(account.id))!.usedBytes, raw.length * 2);
      // Mail the admin allows past the quota (enforceQuota: false) is still counted.
      await deliver(ctx.store, account, inbox.id, raw, { enforceQuota: false });
      assert.equal((await ctx.store.getAccount(account.id))!.usedBytes, raw.length * 3);
    });

    it('delivers once per delivery key, even when retried', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const trash = (await ctx.store.getMailbox(account.id, 'Trash'))!;
      const raw = sampleMessage('once');
      const first = await deliver(ctx.store, account, inbox.id, raw, { deliveryKey: 'q1:bob@example.org' });
      await rejects(
        deliver(ctx.store, account, trash.id, raw, { deliveryKey: 'q1:bob@example.org' }),
        'exists',
      );
      assert.equal((await ctx.store.mailboxStatus(trash.id)).messages, 0);
      assert.equal((await ctx.store.getAccount(account.id))!.usedBytes, raw.length);
      // Copies do not carry the key, and other keys are independent.
      await ctx.store.copyMessages(inbox.id, [first.uid], trash.id);
      await deliver(ctx.store, account, inbox.id, raw, { deliveryKey: 'q2:bob@example.org' });
      assert.equal((await ctx.store.mailboxStatus(inbox.id)).messages, 2);
    });

    it('journals appends, flag changes and expunges for IDLE and CONDSTORE', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const start = (await ctx.store.getMailboxById(inbox.id))!.highestModseq;
      await deliver(ctx.store, account, inbox.id, sampleMessage('a'));
      await deliver(ctx.store, account, inbox.id, sampleMessage('b'));
      await ctx.store.updateFlags(inbox.id, [1], { op: 'add', flags: ['\\Seen'] });
      await ctx.store.expungeMessages(inbox.id, [2]);
      const changes = await ctx.store.changesSince(inbox.id, start);
      assert.deepEqual(
        changes.map((c) => [c.kind, c.uid]),
        [
          ['append', 1],
          ['append', 2],
          ['flags', 1],
          ['expunge', 2],
        ],
      );
      assert.deepEqual(changes[2]!.flags, ['\\Seen']);
      for (let i = 1; i < changes.length; i++) assert.ok(changes[i]!.modseq > changes[i - 1]!.modseq);
      const last = changes.at(-1)!.modseq;
      assert.deepEqual(await ctx.store.changesSince(inbox.id, last), []);
      assert.equal((await ctx.store.changesSince(inbox.id, changes[1]!.modseq)).length, 2);
      // Pruning keeps the newest entries of each mailbox.
      assert.ok((await ctx.store.pruneJournal(2)) >= 2);
      assert.deepEqual(
        (await ctx.store.changesSince(inbox.id, 0)).map((c) => [c.kind, c.uid]),
        [
          ['flags', 1],
          ['expunge', 2],
        ],
      );
      assert.equal(await ctx.store.pruneJournal(2), 0);
    });
  });

  describe('concurrency', () => {
    const ctx = useStore(factory);

    it('two writers delivering at once never share a UID', async () => {
      const { account, inbox } = await newAccount(ctx.store);
      const other = await ctx.openAnother();
      const n = 40;
      const jobs = [];
      for (let i = 0; i < n; i++) {
        jobs.push(deliver(i % 2 ? other : ctx.store, account, inbox.id, sampleMessage(`m${i}`)));
      }
      const uids = (await Promise.all(jobs)).map((m) => m.uid).sort((a, b) => a - b);
      assert.deepEqual(
        uids,
        Array.from({ length: n }, (_, i) => i + 1),
      );
      assert.equal((await ctx.store.listMessages(inbox.id)).length, n);
    });

    it('quota usage never drifts under concurrent appends, copies and expunges', async () => {
      const raw = sampleMessage('quota', 'x'.repeat(500));
      const limit = raw.length * 25;
      const { account, inbox } = await newAccount(ctx.store, 'bob@example.org', limit);
      const trash = (await ctx.store.getMailbox(account.id, 'Trash'))!;
      const other = await ctx.openAnother();
      const ops: Array<Promise<unknown>> = [];
      for (let i = 0; i < 40; i++) {
        const s = i % 2 ? other : ctx.store;
        ops.push(
          deliver(s, account, inbox.id, raw).catch((e) =>
            isStoreError(e, 'over_quota') ? null : Promise.reject(e),
          ),
        );
        if (i % 5 === 4) ops.push(s.expungeMessages(inbox.id, [i - 2]));
        if (i % 7 === 6) {
          ops.push(
            s
              .copyMessages(inbox.id, [i - 1], trash.id)
              .catch((e) => (isStoreError(e, 'over_quota') ? null : Promise.reject(e))),
          );
        }
      }
      await Promise.all(ops);
      const used = (await ctx.store.getAccount(account.id))!.usedBytes;
      const inboxSize = (await ctx.store.mailboxStatus(inbox.id)).size;
      const trashSize = (await ctx.store.mailboxStatus(trash.id)).size;
      assert.equal(used, inboxSize + trashSize);
      assert.ok(used <= limit, `${used} <= ${limit}`);
      assert.equal(await ctx.store.recalculateQuota(account.id), used);
    });
  });
}
