// The MDA's LMTP server driven by nodemailer's LMTP client over loopback.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InProcessBus, type MailEvent } from '@mailwerk/bus';
import { DEFAULT_MAILBOXES, deliveryEnvid, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import nodemailer from 'nodemailer';
import type { SMTPServer } from 'smtp-server';
import { createLmtpServer } from '../src/index.ts';

describe('MDA over LMTP', () => {
  let dir: string;
  let store: MailStore;
  let server: SMTPServer;
  let port: number;
  const events: MailEvent[] = [];
  const bus = new InProcessBus();
  const ids: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-mda-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
    for (const name of ['bob', 'ann', 'carl']) {
      const a = await store.createAccount({
        address: `${name}@example.org`,
        passwordHash: 'x',
        mailboxes: [...DEFAULT_MAILBOXES, { name: 'Lists' }],
      });
      ids[name] = a.id;
      bus.subscribe(a.id, (e) => events.push(e));
    }
    await store.addAlias({ address: 'team@example.org', targets: ['bob@example.org', 'ann@example.org'] });
    await store.addAlias({ address: 'fwd@example.org', targets: ['out@elsewhere.net', 'carl@example.org'] });
    await store.addAlias({ address: 'loop1@example.org', targets: ['loop2@example.org'] });
    await store.addAlias({ address: 'loop2@example.org', targets: ['loop1@example.org'] });
    server = createLmtpServer({ store, bus, hostname: 'mda.test', maxMessageSize: 100_000 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function lmtp(to: string[], subject: string, envelope: Record<string, unknown> = {}) {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, lmtp: true, ignoreTLS: true });
    try {
      return await t.sendMail({
        envelope: { from: 'sender@ext.org', to, ...envelope },
        from: 'sender@ext.org',
        to: 'whoever@example.org',
        subject,
        text: 'body\n',
      });
    } finally {
      t.close();
    }
  }

  async function mails(name: string, subject: string, mailbox = 'INBOX'): Promise<string[]> {
    const box = (await store.getMailbox(ids[name]!, mailbox))!;
    const out: string[] = [];
    for (const m of await store.listMessages(box.id)) {
      const text = (await store.blobs.get(m.blobId)).toString();
      if (text.includes(`Subject: ${subject}`)) out.push(text);
    }
    return out;
  }

  it('delivers to an account with Return-Path and Delivered-To, and publishes the event after the write', async () => {
    const before = events.length;
    const info = await lmtp(['bob@example.org'], 'direct');
    assert.deepEqual(info.accepted, ['bob@example.org']);
    const [text] = await mails('bob', 'direct');
    assert.match(text!, /^Return-Path: <sender@ext\.org>\r\nDelivered-To: bob@example\.org\r\n/);
    const e = events.slice(before);
    assert.equal(e.length, 1);
    assert.equal(e[0]!.type, 'message.new');
    const box = (await store.getMailbox(ids.bob!, 'INBOX'))!;
    assert.ok(e[0]!.type === 'message.new' && (await store.getMessage(box.id, e[0]!.uid)) !== null);
  });

  it('fans an alias out to each account once, and an account reached twice gets one copy', async () => {
    const info = await lmtp(['team@example.org', 'bob@example.org'], 'fan-out');
    assert.deepEqual(info.accepted, ['team@example.org', 'bob@example.org']);
    assert.equal((await mails('bob', 'fan-out')).length, 1);
    const [annCopy] = await mails('ann', 'fan-out');
    assert.match(annCopy!, /Delivered-To: ann@example\.org/);
  });

  it('refuses at RCPT an alias that forwards outside (the MTA forwards), and never queues anything itself', async () => {
    await assert.rejects(
      lmtp(['fwd@example.org'], 'forwarded'),
      /550 5\.3\.5 <fwd@example\.org> forwards to addresses outside/,
    );
    assert.equal((await mails('carl', 'forwarded')).length, 0);
    assert.deepEqual(await store.listQueue(), []);
  });

  it('delivers an alias to several accounts all or nothing: one member over quota makes it 452 for all', async () => {
    await store.updateAccount(ids.ann!, { quotaBytes: 1 });
    try {
      const info = await lmtp(['team@example.org', 'carl@example.org'], 'team full');
      assert.deepEqual(info.accepted, ['carl@example.org']);
      const errors = (info as unknown as { rejectedErrors: Array<{ response: string }> }).rejectedErrors;
      assert.match(errors[0]!.response, /^452 4\.2\.2 <team@example\.org> mailbox full/);
      assert.equal((await mails('bob', 'team full')).length, 0);
    } finally {
      await store.updateAccount(ids.ann!, { quotaBytes: null });
    }
    await lmtp(['team@example.org'], 'team full');
    assert.equal((await mails('carl', 'team full')).length, 1);
    assert.equal((await mails('bob', 'team full')).length, 1);
    assert.equal((await mails('ann', 'team full')).length, 1);
  });

  it('files user+tag into the folder of that name, else into INBOX; and uses the catch-all', async () => {
    await lmtp(['bob+lists@example.org', 'ann+nosuchfolder@example.org'], 'tagged');
    assert.equal((await mails('bob', 'tagged', 'Lists')).length, 1);
    assert.equal((await mails('ann', 'tagged')).length, 1);
    await assert.rejects(lmtp(['stranger@example.org'], 'caught'), /550 5\.1\.1/);
    await store.addAlias({ address: '@example.org', targets: ['carl@example.org'] });
    await lmtp(['stranger@example.org'], 'caught');
    assert.equal((await mails('carl', 'caught')).length, 1);
    await store.removeAlias('@example.org');
  });

  it('answers per recipient: an alias loop and a full mailbox fail, the others are delivered', async () => {
    await store.updateAccount(ids.ann!, { quotaBytes: 1 });
    const info = await lmtp(['loop1@example.org', 'ann@example.org', 'carl@example.org'], 'mixed');
    assert.deepEqual(info.accepted, ['carl@example.org']);
    const errors = Object.fromEntries(
      (
        info as unknown as { rejectedErrors: Array<{ recipient: string; response: string }> }
      ).rejectedErrors.map((e) => [e.recipient, e.response]),
    );
    assert.match(errors['loop1@example.org']!, /^550 5\.4\.6 .*alias loop/);
    assert.match(errors['ann@example.org']!, /^452 4\.2\.2 /);
    assert.equal((await mails('ann', 'mixed')).length, 0);
    await store.updateAccount(ids.ann!, { quotaBytes: null });
  });

  it('does not deliver twice when our MTA retries the same queue entry', async () => {
    // The ENVID our MTA sends: the queue id signed with the store's secret.
    const dsn = { dsn: { envid: await deliveryEnvid(store, '0abc123') } };
    await lmtp(['carl@example.org'], 'retried', dsn);
    const again = await lmtp(['carl@example.org'], 'retried', dsn);
    assert.deepEqual(again.accepted, ['carl@example.org']);
    assert.equal((await mails('carl', 'retried')).length, 1);
    // A foreign ENVID is no key: two messages stay two messages.
    await lmtp(['carl@example.org'], 'foreign', { dsn: { envid: 'client-id-1' } });
    await lmtp(['carl@example.org'], 'foreign', { dsn: { envid: 'client-id-1' } });
    assert.equal((await mails('carl', 'foreign')).length, 2);
  });

  it('takes no ENVID that looks like ours but is not signed with the secret as a delivery key', async () => {
    // What a client could send through another MTA in front: our format, a made-up or another store's mac.
    for (const envid of [
      'mailwerk.0abc999',
      `mailwerk.0abc999.${'A'.repeat(22)}`,
      (await deliveryEnvid(store, '0abc999')).replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')),
    ]) {
      await lmtp(['carl@example.org'], `forged ${envid}`, { dsn: { envid } });
      await lmtp(['carl@example.org'], `forged ${envid}`, { dsn: { envid } });
      assert.equal((await mails('carl', `forged ${envid}`)).length, 2, envid);
    }
  });
  describe('with a Sieve script (packages/sieve run by the MDA)', () => {
    const lines: Array<{ message: string; fields: Record<string, unknown> }> = [];
    let sieveServer: SMTPServer;
    let sievePort: number;
    before(async () => {
      sieveServer = createLmtpServer({
        store,
        bus,
        hostname: 'mda.test',
        maxMessageSize: 100_000,
        log: (_level, message, fields) => lines.push({ message, fields }),
      });
      await new Promise<void>((r) => sieveServer.listen(0, '127.0.0.1', r));
      sievePort = (sieveServer.server.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((r) => sieveServer.close(() => r())));

    async function send(to: string, subject: string, extra: Record<string, string> = {}) {
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: sievePort,
        lmtp: true,
        ignoreTLS: true,
      });
      try {
        return await t.sendMail({
          envelope: { from: 'sender@ext.org', to: [to] },
          from: 'Sender <sender@ext.org>',
          to,
          subject,
          text: 'body\n',
          headers: extra,
        });
      } finally {
        t.close();
      }
    }
    const flagsOf = async (name: string, mailbox: string, subject: string) => {
      const box = (await store.getMailbox(ids[name]!, mailbox))!;
      for (const m of await store.listMessages(box.id))
        if ((await store.blobs.get(m.blobId)).toString().includes(`Subject: ${subject}`)) return m.flags;
      return null;
    };

    it('files, flags, copies, discards and rejects as the active script says; subjects are matched decoded', async () => {
      await store.putSieveScript(
        ids.carl!,
        'rules',
        `require ["fileinto", "imap4flags", "copy", "reject", "mailbox"];
         if header :contains "subject" "[list]" { fileinto :flags "\\\\Seen" "Lists"; stop; }
         if header :is "subject" "Grüße" { fileinto :create "Greetings"; stop; }
         if header :contains "subject" "copy me" { fileinto :copy "Lists"; stop; }
         if header :contains "subject" "spam offer" { discard; stop; }
         if header :contains "subject" "unwanted" { reject "I do not want this"; stop; }
         if header :contains "subject" "to nowhere" { fileinto "No Such Folder"; }`,
      );
      await store.setActiveSieveScript(ids.carl!, 'rules');
      await send('carl@example.org', '[list] news');
      assert.deepEqual(await flagsOf('carl', 'Lists', '[list] news'), ['\\Seen']);
      assert.deepEqual(await mails('carl', '[list] news'), [], 'not in INBOX');
      // An encoded subject (RFC 2047) is matched as the user reads it.
      await send('carl@example.org', 'Grüße');
      assert.ok((await store.getMailbox(ids.carl!, 'Greetings')) !== null, ':create made the folder');
      const greetings = await store.listMessages((await store.getMailbox(ids.carl!, 'Greetings'))!.id);
      assert.equal(greetings.length, 1);
      assert.match(
        (await store.blobs.get(greetings[0]!.blobId)).toString(),
        /Subject: =\?UTF-8\?/i,
        'it was encoded',
      );
      await send('carl@example.org', 'please copy me');
      assert.equal((await mails('carl', 'please copy me', 'Lists')).length, 1);
      assert.equal((await mails('carl', 'please copy me')).length, 1, ':copy keeps it in INBOX too');
      const discarded = await send('carl@example.org', 'spam offer');
      assert.deepEqual(discarded.accepted, ['carl@example.org'], 'discard is a successful delivery');
      assert.deepEqual(await mails('carl', 'spam offer'), []);
      // LMTP answers per recipient (RFC 2033 §4.2): the refusal is carl's, at delivery time (RFC 5429 §2.1).
      const refused = (await send('carl@example.org', 'unwanted')) as unknown as {
        rejected: string[];
        rejectedErrors?: Array<{ response?: string }>;
      };
      assert.deepEqual(refused.rejected, ['carl@example.org']);
      assert.match(refused.rejectedErrors?.[0]?.response ?? '', /^550 5\.7\.1 .*I do not want this/);
      assert.deepEqual(await mails('carl', 'unwanted'), []);
      await send('carl@example.org', 'to nowhere');
      assert.equal((await mails('carl', 'to nowhere')).length, 1, 'a missing folder: kept in INBOX');
      assert.ok(
        lines.some((l) => l.message.includes('does not exist') && l.fields.folder === 'No Such Folder'),
      );
      await store.setActiveSieveScript(ids.carl!, null);
    });

    it('delivers as without a script when the script fails at run time, and logs it', async () => {
      await store.putSieveScript(ids.carl!, 'away', 'require "vacation"; vacation "I am away";');
      await store.setActiveSieveScript(ids.carl!, 'away');
      await send('carl@example.org', 'while away');
      assert.equal((await mails('carl', 'while away')).length, 1);
      assert.ok(lines.some((l) => l.message.startsWith('sieve script failed') && l.fields.script === 'away'));
      await store.setActiveSieveScript(ids.carl!, null);
    });
  });
});

describe('MDA over LMTP: a store that fails', () => {
  it('answers RCPT 451 4.3.0 (try again), never a permanent 550, and reports the error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailwerk-mda-'));
    const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
    await store.createAccount({
      address: 'bob@example.org',
      passwordHash: 'x',
      mailboxes: [...DEFAULT_MAILBOXES],
    });
    // A database hiccup during the recipient lookup (mocked: a real one cannot be caused on demand).
    const failing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'getAccountByAddress')
          return async () => Promise.reject(new Error('database is locked'));
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const errors: string[] = [];
    const server = createLmtpServer({
      store: failing,
      bus: new InProcessBus(),
      hostname: 'mda.test',
      maxMessageSize: 100_000,
      onError: (err, context) => errors.push(`${context}: ${(err as Error).message}`),
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.server.address() as AddressInfo).port;
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port, lmtp: true, ignoreTLS: true });
      await assert.rejects(
        t.sendMail({
          envelope: { from: 'a@ext.org', to: ['bob@example.org'] },
          raw: 'Subject: x\r\n\r\nbody\r\n',
        }),
        (err: Error & { responseCode?: number; response?: string }) => {
          assert.equal(err.responseCode, 451, err.response);
          assert.match(err.response ?? '', /4\.3\.0/);
          return true;
        },
      );
      assert.match(errors[0] ?? '', /^lmtp session \S+: RCPT <bob@example\.org>: database is locked/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
