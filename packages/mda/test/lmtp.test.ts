// The MDA's LMTP server driven by nodemailer's LMTP client over loopback.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InProcessBus, type MailEvent } from '@mailwerk/bus';
import type { SmtpServer } from '@mailwerk/smtp';
import { DEFAULT_MAILBOXES, deliveryEnvid, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import nodemailer, { type SendMailOptions } from 'nodemailer';
import { storeWithBob as sqliteStoreWithBob } from '../../store-sqlite/test/helpers.ts';
import { createLmtpServer, queueOutbox } from '../src/index.ts';

describe('MDA over LMTP', () => {
  let dir: string;
  let store: MailStore;
  let server: SmtpServer;
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
    let sieveServer: SmtpServer;
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
      // 40 fileinto actions: over the bound of 32 (a run-time error, the script itself is valid).
      const many = Array.from({ length: 40 }, (_, i) => `fileinto "f${i}";`).join(' ');
      await store.putSieveScript(ids.carl!, 'many', `require "fileinto"; ${many}`);
      await store.setActiveSieveScript(ids.carl!, 'many');
      await send('carl@example.org', 'too many');
      assert.equal((await mails('carl', 'too many')).length, 1);
      assert.ok(lines.some((l) => l.message.startsWith('sieve script failed') && l.fields.script === 'many'));
      await store.setActiveSieveScript(ids.carl!, null);
    });

    it('gives the script the body, the spam score and the duplicate memory, and a retried delivery is not its own duplicate', async () => {
      await store.putSieveScript(
        ids.carl!,
        'more',
        `require ["fileinto", "body", "duplicate", "spamtest", "relational", "comparator-i;ascii-numeric", "mailbox", "variables", "environment"];
         if duplicate { fileinto :create "Dups"; stop; }
         if body :text :contains "invoice attached" { fileinto :create "Invoices"; stop; }
         if spamtest :value "ge" "5" { fileinto :create "Suspect"; stop; }
         if allof (mailboxexists "Lists", environment :is "location" "MDA") { fileinto "Lists"; }`,
      );
      await store.setActiveSieveScript(ids.carl!, 'more');
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: sievePort,
        lmtp: true,
        ignoreTLS: true,
      });
      const raw = (subject: string, extra: string, body: string, envid?: string) =>
        t.sendMail({
          envelope: { from: 'sender@ext.org', to: ['carl@example.org'] },
          raw: `From: <sender@ext.org>\r\nTo: <carl@example.org>\r\nSubject: ${subject}\r\n${extra}\r\n${body}\r\n`,
          ...(envid ? { dsn: { envid } } : {}),
        } as SendMailOptions);
      try {
        // The body test reads decoded text: quoted-printable here.
        await raw(
          'bill',
          'Message-ID: <bill@ext.org>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n',
          'Your invoice=20attached.',
        );
        assert.ok(await store.getMailbox(ids.carl!, 'Invoices'), JSON.stringify(lines.slice(-2)));
        assert.equal((await mails('carl', 'bill', 'Invoices')).length, 1);
        // The same Message-ID again: a duplicate (RFC 7352).
        await raw('bill again', 'Message-ID: <bill@ext.org>\r\n', 'hello');
        assert.equal((await mails('carl', 'bill again', 'Dups')).length, 1);
        // A retried delivery (the same delivery key) is not taken for its own duplicate.
        const envid = await deliveryEnvid(store, '0dup0001');
        await raw('retried', 'Message-ID: <retried@ext.org>\r\n', 'hello', envid);
        await store.setActiveSieveScript(ids.carl!, 'more');
        const box = (await store.getMailbox(ids.carl!, 'Lists'))!;
        for (const m of await store.listMessages(box.id))
          if ((await store.blobs.get(m.blobId)).toString().includes('Subject: retried'))
            await store.expungeMessages(box.id, [m.uid]);
        await raw('retried', 'Message-ID: <retried@ext.org>\r\n', 'hello', envid);
        assert.equal(
          (await mails('carl', 'retried', 'Lists')).length,
          1,
          'filed by the script, not as a duplicate',
        );
        assert.equal((await mails('carl', 'retried', 'Dups')).length, 0);
        // The score the MX wrote (X-Spam-Status), against its threshold.
        await raw(
          'scored',
          'Message-ID: <scored@ext.org>\r\nX-Spam-Status: No, score=9.00 required=15.00\r\n',
          'hello',
        );
        assert.equal((await mails('carl', 'scored', 'Suspect')).length, 1);
        await raw(
          'clean',
          'Message-ID: <clean@ext.org>\r\nX-Spam-Status: No, score=0.50 required=15.00\r\n',
          'hello',
        );
        assert.equal((await mails('carl', 'clean', 'Lists')).length, 1);
      } finally {
        t.close();
        await store.setActiveSieveScript(ids.carl!, null);
      }
    });

    it('stores the message as editheader left it: fields deleted and added, the rest byte for byte', async () => {
      await store.putSieveScript(
        ids.carl!,
        'edit',
        'require ["editheader"]; deleteheader "X-Remove-Me"; addheader "X-Filed" "by sieve"; addheader :last "X-Last" "Grüße";',
      );
      await store.setActiveSieveScript(ids.carl!, 'edit');
      await send('carl@example.org', 'edited', { 'X-Remove-Me': 'secret', 'X-Keep': 'kept' });
      const [text] = await mails('carl', 'edited');
      assert.ok(text);
      const head = text.slice(0, text.indexOf('\r\n\r\n') + 2);
      assert.match(
        head,
        /^Return-Path: <sender@ext\.org>\r\nDelivered-To: carl@example\.org\r\nX-Filed: by sieve\r\n/,
      );
      assert.doesNotMatch(text, /X-Remove-Me|secret/);
      assert.match(head, /X-Keep: kept\r\n/);
      assert.match(head, /\r\nX-Last: =\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?=\r\n$/);
      assert.match(text, /\r\n\r\nbody\r\n$/);
      await store.setActiveSieveScript(ids.carl!, null);
    });

    it('without an outbox, a redirect keeps the message and a vacation sends nothing, each with a log line', async () => {
      await store.putSieveScript(
        ids.carl!,
        'fwd',
        'require "vacation"; vacation "away"; redirect "x@elsewhere.net";',
      );
      await store.setActiveSieveScript(ids.carl!, 'fwd');
      const queued = (await store.listQueue()).length;
      await send('carl@example.org', 'no outbox');
      assert.equal((await mails('carl', 'no outbox')).length, 1);
      assert.equal((await store.listQueue()).length, queued);
      assert.ok(lines.some((l) => l.message.includes('redirect not carried out (no MTA')));
      assert.ok(lines.some((l) => l.message.includes('vacation: no MTA')));
      await store.setActiveSieveScript(ids.carl!, null);
    });
  });

  describe('Sieve redirect and vacation into the queue (queueOutbox, the real store queue)', () => {
    const lines: Array<{ message: string; fields: Record<string, unknown> }> = [];
    let outServer: SmtpServer;
    let outPort: number;
    before(async () => {
      outServer = createLmtpServer({
        store,
        bus,
        hostname: 'mda.test',
        maxMessageSize: 100_000,
        log: (_level, message, fields) => lines.push({ message, fields }),
        outbox: queueOutbox(store),
      });
      await new Promise<void>((r) => outServer.listen(0, '127.0.0.1', r));
      outPort = (outServer.server.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((r) => outServer.close(() => r())));

    /** Sends over LMTP with a header of our own: the fields, then the body. */
    async function raw(from: string, to: string, head: string, envid?: string) {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: outPort, lmtp: true, ignoreTLS: true });
      try {
        return await t.sendMail({
          envelope: { from, to: [to] },
          raw: `${head.trim().replace(/\n/g, '\r\n')}\r\n\r\nbody\r\n`,
          ...(envid ? { dsn: { envid } } : {}),
        } as SendMailOptions);
      } finally {
        t.close();
      }
    }
    /** The queue entries made since `since` (entry ids sort by time). */
    const queuedSince = async (since: Set<string>) => {
      const out = [];
      for (const e of await store.listQueue())
        if (!since.has(e.id)) out.push({ ...e, text: (await store.blobs.get(e.blobId)).toString() });
      return out;
    };
    const snapshot = async () => new Set((await store.listQueue()).map((e) => e.id));

    it('replies once per sender in the period, to the sender, with the RFC 3834 fields; never to lists, robots, <>, auto-replies or spam', async () => {
      await store.putSieveScript(
        ids.carl!,
        'away',
        'require "vacation"; vacation :days 2 :addresses ["c.arl@example.org"] "I am away until Monday.\nGrüße, Carl";',
      );
      await store.setActiveSieveScript(ids.carl!, 'away');
      const before = await snapshot();
      const head = (from: string, subject: string, extra = '') =>
        `From: <${from}>\nTo: Carl <carl@example.org>\nSubject: ${subject}\nMessage-ID: <m-${subject.replace(/\W/g, '')}@ext.org>\n${extra}`;
      await raw('ann@ext.org', 'carl@example.org', head('ann@ext.org', 'Lunch?'));
      const first = await queuedSince(before);
      assert.equal(first.length, 1);
      const reply = first[0]!;
      assert.equal(reply.sender, '', 'the null envelope sender (RFC 5230 §5.1)');
      assert.deepEqual(
        reply.recipients.map((r) => r.address),
        ['ann@ext.org'],
      );
      assert.match(reply.text, /^From: carl@example\.org\r$/m);
      assert.match(reply.text, /^To: <ann@ext\.org>\r$/m);
      assert.match(reply.text, /^Subject: Auto: Lunch\?\r$/m);
      assert.match(reply.text, /^In-Reply-To: <m-Lunch@ext\.org>\r$/m);
      assert.match(reply.text, /^References: <m-Lunch@ext\.org>\r$/m);
      assert.match(reply.text, /^Auto-Submitted: auto-replied/m);
      assert.match(reply.text, /I am away until Monday\.\r\nGr=C3=BC=C3=9Fe, Carl/);
      assert.equal((await mails('carl', 'Lunch?')).length, 1, 'the message itself is kept');
      // The same sender again within :days: no second reply; another sender gets one.
      await raw('ann@ext.org', 'carl@example.org', head('ann@ext.org', 'Lunch again'));
      await raw('ANN@ext.org', 'carl@example.org', head('ANN@ext.org', 'Lunch, shouting'));
      assert.equal((await queuedSince(before)).length, 1);
      assert.ok(lines.some((l) => l.message === 'sieve vacation: replied to this sender before'));
      // Each of these is delivered and answered by nobody.
      const quiet: Array<[string, string, string]> = [
        ['list@ext.org', 'list mail', 'List-Id: <news.ext.org>\n'],
        ['bulk@ext.org', 'bulk mail', 'Precedence: bulk\n'],
        ['robot@ext.org', 'an auto reply', 'Auto-Submitted: auto-replied\n'],
        ['exchange@ext.org', 'suppressed', 'X-Auto-Response-Suppress: OOF, AutoReply\n'],
        ['owner-news@ext.org', 'from a list owner', ''],
        ['MAILER-DAEMON@ext.org', 'a bounce by name', ''],
        ['carl@example.org', 'to myself', ''],
        ['spammer@ext.org', 'spam', 'X-Spam: Yes\n'],
      ];
      for (const [from, subject, extra] of quiet)
        await raw(from, 'carl@example.org', head(from, subject, extra));
      await raw('', 'carl@example.org', head('nobody@ext.org', 'null sender'));
      // Carl only as a Bcc (not in To or Cc): no reply (§4.5); named by :addresses: a reply.
      await raw('dan@ext.org', 'carl@example.org', 'From: <dan@ext.org>\nTo: <team@ext.org>\nSubject: bcc');
      assert.equal((await queuedSince(before)).length, 1, JSON.stringify(lines.slice(-12)));
      for (const [, subject] of quiet)
        assert.equal(
          (await mails('carl', subject, subject === 'spam' ? 'Junk' : 'INBOX')).length,
          1,
          subject,
        );
      await raw(
        'eve@ext.org',
        'carl@example.org',
        'From: <eve@ext.org>\nCc: <c.arl@example.org>\nSubject: via addresses\nAuto-Submitted: no',
      );
      const after = await queuedSince(before);
      assert.equal(after.length, 2);
      assert.deepEqual(
        after[1]!.recipients.map((r) => r.address),
        ['eve@ext.org'],
      );
      assert.ok(lines.some((l) => l.fields.why === "none of the user's addresses is in To, Cc or Bcc"));
      for (const e of after) await store.removeQueueEntry(e.id);
      await store.setActiveSieveScript(ids.carl!, null);
    });

    it('redirects outside with an SRS sender, the message as it came under one trace field, once however often retried', async () => {
      await store.putSieveScript(ids.carl!, 'fwd', 'redirect "out@elsewhere.net";');
      await store.setActiveSieveScript(ids.carl!, 'fwd');
      const before = await snapshot();
      const head =
        'From: <ann@ext.org>\nTo: <carl@example.org>\nSubject: forward me\nDKIM-Signature: v=1; d=ext.org; b=xyz';
      const envid = await deliveryEnvid(store, '0redir01');
      await raw('ann@ext.org', 'carl@example.org', head, envid);
      await raw('ann@ext.org', 'carl@example.org', head, envid);
      const out = await queuedSince(before);
      assert.equal(out.length, 1, 'a retried delivery redirects once');
      assert.match(out[0]!.sender, /^SRS0=[A-Z2-7]{6}=[A-Z2-7]{2}=ext\.org=ann@example\.org$/);
      assert.deepEqual(
        out[0]!.recipients.map((r) => r.address),
        ['out@elsewhere.net'],
      );
      assert.ok(
        out[0]!.text.startsWith('X-Sieve-Redirected-By: carl@example.org\r\nFrom: <ann@ext.org>\r\n'),
        out[0]!.text,
      );
      assert.deepEqual(await mails('carl', 'forward me'), [], 'redirect cancels the keep');
      // Marked as spam, or come round again: kept, not sent.
      await raw(
        'ann@ext.org',
        'carl@example.org',
        'From: <ann@ext.org>\nTo: <carl@example.org>\nSubject: spam fwd\nX-Spam: Yes',
      );
      await raw(
        'ann@ext.org',
        'carl@example.org',
        'X-Sieve-Redirected-By: carl@example.org\nFrom: <ann@ext.org>\nTo: <carl@example.org>\nSubject: looped',
      );
      assert.equal((await queuedSince(before)).length, 1);
      assert.equal((await mails('carl', 'spam fwd', 'Junk')).length, 1);
      assert.equal((await mails('carl', 'looped')).length, 1);
      assert.ok(lines.some((l) => l.message.includes('(a loop')));
      // To a local address the sender stays as it is.
      await store.putSieveScript(ids.carl!, 'fwd', 'require "copy"; redirect :copy "bob@example.org";');
      await raw(
        'ann@ext.org',
        'carl@example.org',
        'From: <ann@ext.org>\nTo: <carl@example.org>\nSubject: inside',
      );
      const inside = (await queuedSince(before)).filter(
        (e) => e.recipients[0]!.address === 'bob@example.org',
      );
      assert.equal(inside.length, 1);
      assert.equal(inside[0]!.sender, 'ann@ext.org');
      assert.equal((await mails('carl', 'inside')).length, 1, ':copy keeps it too');
      for (const e of await queuedSince(before)) await store.removeQueueEntry(e.id);
      await store.setActiveSieveScript(ids.carl!, null);
    });
  });
});

/** A store of its own in a temporary directory, with example.org and bob@example.org (the store's test helper). */
async function storeWithBob(): Promise<{ dir: string; store: MailStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-mda-'));
  const { store } = await sqliteStoreWithBob(join(dir, 'db.sqlite'));
  return { dir, store };
}

describe('MDA over LMTP: a store that fails', () => {
  it('answers RCPT 451 4.3.0 (try again), never a permanent 550, and reports the error', async () => {
    const { dir, store } = await storeWithBob();
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

describe('MDA over LMTP: the lookups a recipient costs', () => {
  it("takes an account's own address with one lookup; any other still has its domain checked", async () => {
    const { dir, store } = await storeWithBob();
    // The store's two lookups counted (the read count is what this is for).
    const calls: string[] = [];
    const counted = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (prop === 'getDomain' || prop === 'getAccountByAddress')
          return (arg: string) => {
            calls.push(`${prop} ${arg}`);
            return v.call(target, arg);
          };
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const server = createLmtpServer({
      store: counted,
      bus: new InProcessBus(),
      hostname: 'mda.test',
      maxMessageSize: 100_000,
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.server.address() as AddressInfo).port;
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, lmtp: true, ignoreTLS: true });
    const send = (to: string) =>
      t.sendMail({ envelope: { from: 'a@ext.org', to: [to] }, raw: 'Subject: x\r\n\r\nbody\r\n' });
    try {
      const sent = await send('Bob@example.org');
      assert.deepEqual(sent.accepted, ['Bob@example.org']);
      assert.deepEqual(calls, ['getAccountByAddress bob@example.org']);
      calls.length = 0;
      await assert.rejects(send('bob@elsewhere.org'), (err: Error & { response?: string }) => {
        assert.match(err.response ?? '', /^550 5\.1\.2 /);
        return true;
      });
      assert.ok(calls.includes('getDomain elsewhere.org'), calls.join(', '));
    } finally {
      t.close();
      await new Promise<void>((r) => server.close(() => r()));
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
