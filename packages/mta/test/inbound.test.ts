// The MX driven by real clients over loopback: raw SMTP (for exact reply
// codes and pipelining), nodemailer, and swaks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { eventually, RawClient, type Rig, rig } from './harness.ts';

const run = promisify(execFile);

async function transaction(c: RawClient, from: string, to: string[]): Promise<string[]> {
  const out = [await c.cmd(`MAIL FROM:<${from}>`)];
  for (const t of to) out.push(await c.cmd(`RCPT TO:<${t}>`));
  return out;
}

describe('MX: receiving mail', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('advertises the extensions and gives every reply an enhanced status code', async () => {
    const c = await RawClient.open(r.smtpPort);
    const ehlo = await c.cmd('EHLO client.example');
    for (const ext of [
      'PIPELINING',
      '8BITMIME',
      'SMTPUTF8',
      'SIZE 200000',
      'ENHANCEDSTATUSCODES',
      'STARTTLS',
      'DSN',
      'CHUNKING',
    ]) {
      assert.match(ehlo, new RegExp(`^250[ -]${ext}\\r?$`, 'm'));
    }
    assert.match(await c.cmd('HELO client.example'), /^250 /);
    const replies = [
      ...(await transaction(c, 'sender@ext.org', ['bob@example.org'])),
      await c.cmd('DATA'),
      await c.cmd('Subject: codes\r\n\r\nhi\r\n.'),
      await c.cmd('RSET'),
      await c.cmd('NOOP'),
      await c.cmd('BOGUS'),
      await c.cmd('QUIT'),
    ];
    for (const line of replies) {
      if (line.startsWith('354')) continue; // 3xx replies carry none (RFC 2034 §3)
      assert.match(line, /^\d{3} [245]\.\d{1,3}\.\d{1,3} /, line);
    }
  });

  it('delivers what nodemailer sends into the mailbox, byte for byte after our trace headers', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: r.smtpPort,
      secure: false,
      tls: { rejectUnauthorized: false },
    });
    const info = await transport.sendMail({
      from: 'Sender <sender@ext.org>',
      to: 'bob@example.org',
      subject: 'Hello Bob',
      text: 'First line\n.leading dot\n',
      messageId: '<m1@ext.org>',
    });
    // Delivered before the reply (deliverNow): in the mailbox by the time of the 250, never queued.
    const id = /^250 2\.0\.0 Ok: delivered as (\S+)$/.exec(info.response)?.[1];
    assert.ok(id, info.response);
    const msg = (await r.inbox('bob@example.org')).find((m) => m.includes('Hello Bob'));
    assert.ok(msg, 'in the mailbox when the 250 came');
    assert.equal(await r.store.getQueueEntry(id), null);
    const text = msg.toString();
    // The Received: field names the id of the 250 and the log lines (as Postfix's queue id).
    assert.match(text, new RegExp(`\\bid ${id}\\b`));
    assert.match(
      text,
      /^Return-Path: <sender@ext\.org>\r\nDelivered-To: bob@example\.org\r\nReceived: from \[127\.0\.0\.1\] \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.3/,
    );
    assert.match(text, /\r\n\.leading dot\r\n/);
    assert.match(text, /Message-ID: <m1@ext\.org>/);
    const inbox = (await r.store.getMailbox(r.users.bob!.id, 'INBOX'))!;
    const stored = (await r.store.listMessages(inbox.id)).find(
      (m) => m.structure.root.envelope?.subject === 'Hello Bob',
    );
    assert.equal(stored!.uid, 2, 'after the message of the first test');
    assert.deepEqual(stored!.flags, []);
    assert.equal(stored!.size, msg.length);
    assert.equal(stored!.structure.root.envelope?.subject, 'Hello Bob');
    assert.deepEqual(await r.store.listQueue(), []);
    transport.close();
  });

  it('takes a message in BDAT chunks (RFC 3030) as it is, and refuses an oversized one after reading it', async () => {
    const c = await RawClient.open(r.smtpPort);
    await c.cmd('EHLO client.example');
    await transaction(c, 'chunks@ext.org', ['carl@example.org']);
    const body = 'Subject: in chunks\r\n\r\n.no dot rule here\r\n';
    c.write(`BDAT 20\r\n${body.slice(0, 20)}`);
    assert.match(await c.read(), /^250 2\.0\.0 20 octets/);
    c.write(`BDAT ${body.length - 20} LAST\r\n${body.slice(20)}`);
    assert.match(await c.read(), /^250 2\.0\.0 Ok: delivered as /);
    const got = (await r.inbox('carl@example.org')).find((m) => m.includes('in chunks'));
    assert.ok(got?.toString().endsWith('\r\n\r\n.no dot rule here\r\n'), got?.toString());
    await transaction(c, 'chunks@ext.org', ['carl@example.org']);
    const big = 250_000;
    c.write(`BDAT ${big} LAST\r\n${'x'.repeat(big)}`);
    assert.match(await c.read(), /^552 5\.3\.4 /);
    assert.match(await c.cmd('NOOP'), /^250 /);
    c.close();
  });

  it('takes mail from swaks', async () => {
    const { stdout } = await run('swaks', [
      '--server',
      `127.0.0.1:${r.smtpPort}`,
      '--from',
      'swaks@ext.org',
      '--to',
      'carl@example.org',
      '--header',
      'Subject: from swaks',
      '--body',
      'swaks body',
    ]);
    assert.match(stdout, /<[-~] +250 2\.0\.0 Ok: delivered as/);
    await eventually(async () =>
      (await r.inbox('carl@example.org')).find((m) => m.includes('Subject: from swaks')),
    );
  });

  it('answers 451 4.3.0, never 250, when the message cannot be written', async () => {
    // A failing disk cannot be had on loopback: the store's writes of a message (into a mailbox, by the
    // MDA before the reply, and into the queue) are made to fail the way a full disk makes SQLite fail
    // (an I/O error), for this test only.
    const original = r.store.enqueue.bind(r.store);
    const append = r.store.appendMessage.bind(r.store);
    const ioError = async () => {
      throw Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR' });
    };
    r.store.enqueue = ioError;
    r.store.appendMessage = ioError;
    try {
      const c = await RawClient.open(r.smtpPort);
      await c.cmd('EHLO client.example');
      await transaction(c, 'a@ext.org', ['bob@example.org']);
      await c.cmd('DATA');
      assert.match(await c.cmd('Subject: lost?\r\n\r\nbody\r\n.'), /^451 4\.3\.0 /);
      c.close();
    } finally {
      r.store.enqueue = original;
      r.store.appendMessage = append;
    }
  });

  it('answers 451 4.3.0 at RCPT when the store fails the lookup, and the session goes on', async () => {
    // A store failing mid-session cannot be had on loopback: its lookups are made to throw, for this test only.
    const { getDomain, getAccountByAddress } = r.store;
    const locked = async () => {
      throw new Error('database is locked');
    };
    r.store.getDomain = locked;
    r.store.getAccountByAddress = locked;
    const c = await RawClient.open(r.smtpPort);
    try {
      await c.cmd('EHLO client.example');
      await c.cmd('MAIL FROM:<a@ext.org>');
      assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^451 4\.3\.0 /);
      // The account found, the domain's lookup failing: an alias's recipient still needs it.
      r.store.getAccountByAddress = getAccountByAddress;
      assert.match(await c.cmd('RCPT TO:<nobody@example.org>'), /^451 4\.3\.0 /);
    } finally {
      r.store.getDomain = getDomain;
      r.store.getAccountByAddress = getAccountByAddress;
    }
    assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^250 /);
    c.close();
  });

  it("takes an account's own address with one lookup, and still checks the domain of any other", async () => {
    // Counted by wrapping the store's two lookups (the read count is what this is for).
    const { getDomain, getAccountByAddress } = r.store;
    const calls: string[] = [];
    r.store.getDomain = (d) => {
      calls.push(`domain ${d}`);
      return getDomain.call(r.store, d);
    };
    r.store.getAccountByAddress = (a) => {
      calls.push(`account ${a}`);
      return getAccountByAddress.call(r.store, a);
    };
    const c = await RawClient.open(r.smtpPort);
    try {
      await c.cmd('EHLO client.example');
      await c.cmd('MAIL FROM:<a@ext.org>');
      assert.match(await c.cmd('RCPT TO:<Bob@Example.org>'), /^250 /);
      assert.deepEqual(calls, ['account bob@example.org']);
      calls.length = 0;
      assert.match(await c.cmd('RCPT TO:<bob+news@example.org>'), /^250 /);
      assert.ok(calls.includes('domain example.org'), calls.join(', '));
      assert.match(await c.cmd('RCPT TO:<bob@elsewhere.org>'), /^554 5\.7\.1 .*relay access denied/);
    } finally {
      r.store.getDomain = getDomain;
      r.store.getAccountByAddress = getAccountByAddress;
    }
    assert.match(await c.cmd('DATA'), /^354 /);
    assert.match(await c.cmd('Subject: one read\r\n\r\nhi\r\n.'), /^250 /);
    c.close();
  });

  it('refuses relaying, including routing tricks, with 554 5.7.1 at RCPT', async () => {
    const c = await RawClient.open(r.smtpPort);
    await c.cmd('EHLO client.example');
    await c.cmd('MAIL FROM:<spammer@ext.org>');
    for (const rcpt of [
      '<victim@elsewhere.org>',
      '<victim%elsewhere.org@example.org>',
      '<elsewhere.org!victim@example.org>',
      '<@example.org:victim@elsewhere.org>',
      '<"victim@elsewhere.org"@example.org>',
      '<victim@EXAMPLE.org.elsewhere.org>',
    ]) {
      assert.match(await c.cmd(`RCPT TO:${rcpt}`), /^554 5\.7\.1 .*relay access denied/, rcpt);
    }
    assert.match(await c.cmd('DATA'), /^503 /);
    c.close();
  });

  it('refuses unknown users, too many recipients, and a second recipient of a bounce', async () => {
    const c = await RawClient.open(r.smtpPort);
    await c.cmd('EHLO client.example');
    const [, unknown] = await transaction(c, 'a@ext.org', ['nobody@example.org']);
    assert.match(unknown!, /^550 5\.1\.1 /);
    await c.cmd('RSET');
    const many = await transaction(c, 'a@ext.org', [
      'bob@example.org',
      'ann@example.org',
      'carl@example.org',
      'bob+1@example.org',
      'bob+2@example.org',
      'bob+3@example.org',
    ]);
    assert.match(many[6]!, /^452 4\.5\.3 /);
    await c.cmd('RSET');
    const bounce = await transaction(c, '', ['bob@example.org', 'ann@example.org']);
    assert.match(bounce[1]!, /^250 /);
    assert.match(bounce[2]!, /^452 4\.5\.3 /);
    c.close();
  });

  it('refuses oversized mail at MAIL (SIZE=) and after DATA, and mail with too many hops', async () => {
    const c = await RawClient.open(r.smtpPort);
    await c.cmd('EHLO client.example');
    assert.match(await c.cmd('MAIL FROM:<a@ext.org> SIZE=200001'), /^552 5\.3\.4 /);
    await transaction(c, 'a@ext.org', ['bob@example.org']);
    assert.match(await c.cmd('DATA'), /^354/);
    const line = `${'x'.repeat(998)}\r\n`;
    c.write(`Subject: big\r\n\r\n${line.repeat(250)}.\r\n`);
    assert.match(await c.read(), /^552 5\.3\.4 /);
    await transaction(c, 'a@ext.org', ['bob@example.org']);
    await c.cmd('DATA');
    const hops = Array.from(
      { length: 51 },
      (_, i) => `Received: from hop${i}.example by hop${i + 1}.example; Mon, 23 Nov 2026 10:00:00 +0000\r\n`,
    );
    assert.match(await c.cmd(`${hops.join('')}Subject: loop\r\n\r\nloop\r\n.`), /^554 5\.4\.0 /);
    c.close();
    assert.equal((await r.store.listQueue()).length, 0);
  });

  const SMUGGLE = ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\r\n.\r', '\r.\r\n', '\r.\n', '\n.\r'];
  for (const variant of SMUGGLE) {
    it(`never lets ${JSON.stringify(variant)} end a message and smuggle a second one`, async () => {
      const c = await RawClient.open(r.smtpPort);
      await c.cmd('EHLO client.example');
      await transaction(c, 'a@ext.org', ['bob@example.org']);
      assert.match(await c.cmd('DATA'), /^354/);
      c.write(
        `Subject: first\r\n\r\nfirst${variant}MAIL FROM:<evil@ext.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n`,
      );
      assert.match(await c.read(), /^554 5\.6\.0 .*smuggling/);
      assert.match(await c.cmd('NOOP'), /^250 /);
      assert.deepEqual(c.drain(), []);
      c.close();
      assert.equal((await r.store.listQueue()).length, 0);
      assert.equal((await r.inbox('ann@example.org')).length, 0);
    });
  }

  it('discards plaintext pipelined after STARTTLS and starts the session over', async () => {
    const c = await RawClient.open(r.smtpPort);
    await c.cmd('EHLO client.example');
    c.write('STARTTLS\r\nMAIL FROM:<injected@ext.org>\r\n');
    assert.match(await c.read(), /^220 /);
    const tls = tlsConnect({ socket: c.socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    const lines: string[] = [];
    tls.setEncoding('latin1');
    tls.on('data', (d: string) => lines.push(d));
    // No reply to the injected MAIL: the next thing said is the answer to RCPT,
    // and without MAIL in the new session it must be 503.
    tls.write('RCPT TO:<bob@example.org>\r\n');
    await eventually(async () => lines.join('').includes('\r\n'));
    assert.match(lines.join(''), /^503 5\.5\.1 /);
    tls.write('EHLO client.example\r\n');
    // The whole EHLO reply (its last line has a space after the code), now without STARTTLS.
    await eventually(async () => /^250 [^\r\n]*\r\n/m.test(lines.join('')));
    assert.match(lines.join(''), /^250[ -]SIZE /m);
    assert.doesNotMatch(lines.join(''), /STARTTLS/);
    tls.destroy();
  });

  it('closes with 421 after too many errors', async () => {
    const c = await RawClient.open(r.smtpPort);
    await c.cmd('EHLO client.example');
    await c.cmd('MAIL FROM:<a@ext.org>');
    let last = '';
    for (let i = 0; i < 11; i++) last = await c.cmd(`RCPT TO:<nobody${i}@example.org>`);
    assert.match(last, /^421 4\.7\.0 /);
    await eventually(async () => c.closed);
  });

  it('refuses an over-long command line with 421', async () => {
    const c = await RawClient.open(r.smtpPort);
    assert.match(await c.cmd(`EHLO ${'x'.repeat(20_000)}`), /^421 /);
    await eventually(async () => c.closed);
  });
});

describe('MX: connection limits', () => {
  let r: Rig;
  before(async () => {
    r = await rig({ maxConnectionsPerIp: 2, idleTimeoutMs: 400 });
  });
  after(() => r.close());

  it('refuses a third connection from one address with 421, and lets one in when another leaves', async () => {
    const a = await RawClient.open(r.smtpPort);
    const b = await RawClient.open(r.smtpPort);
    const c = await RawClient.open(r.smtpPort);
    assert.match(c.greeting, /^421 4\.7\.0 /);
    await eventually(async () => c.closed);
    a.close();
    await new Promise((res) => setTimeout(res, 100));
    const d = await RawClient.open(r.smtpPort);
    assert.match(await d.cmd('NOOP'), /^250 /);
    b.close();
    d.close();
  });

  it('disconnects an idle client with 421', async () => {
    // The previous test's connections may still be counted for a moment after they closed.
    const c = await eventually(async () => {
      const x = await RawClient.open(r.smtpPort);
      if (x.greeting.startsWith('220')) return x;
      x.close();
      return null;
    });
    assert.match(await c.read(2000), /^421 /);
    await eventually(async () => c.closed);
  });

  it('ends a session that goes on too long with 421, however busy it is', async () => {
    const short = await rig({ sessionTimeoutMs: 500, idleTimeoutMs: 10_000 });
    try {
      const c = await RawClient.open(short.smtpPort);
      let last = '';
      const until = Date.now() + 3000;
      while (!c.closed && Date.now() < until) {
        last = await c.cmd('NOOP').catch(() => last);
        await new Promise((res) => setTimeout(res, 50));
      }
      // The 421 may have come in between two NOOPs.
      last = c.drain().at(-1) ?? last;
      assert.match(last, /^421 4\.4\.2 .*session time limit/);
      assert.equal(c.closed, true);
    } finally {
      await short.close();
    }
  });
});
