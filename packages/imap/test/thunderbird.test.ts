// Thunderbird's first contact with an account, replayed byte for byte (its command spelling, tags and
// order as in a Thunderbird 115 IMAP log), over 993 with SNI and over 143 with STARTTLS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { count, eventually, PASSWORD, RawImap, type Rig, rig, sample } from './harness.ts';

describe('Thunderbird first contact', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    const c = await r.client();
    for (let i = 0; i < 3; i++) await c.append('INBOX', sample(`welcome ${i}`));
    // A fresh account without Trash: Thunderbird creates and subscribes it.
    await c.mailboxDelete('Trash');
  });
  after(() => r.close());

  for (const [mode, uid] of [
    ['993 with SNI', 3],
    ['143 with STARTTLS', 2],
  ] as const) {
    it(`signs in, lists, creates Trash, reads INBOX, idles and saves to Sent over ${mode}`, async () => {
      const c =
        mode === '993 with SNI'
          ? await RawImap.connect(r.tlsPort, true, 'mail.example.org')
          : await RawImap.connect(r.port, false);
      const send = (line: string) =>
        c.send(`${line}\r\n`, new RegExp(`(^|\\r\\n)${line.split(' ')[0]} (OK|NO|BAD)[^\\r\\n]*\\r\\n`));
      assert.match(await send('1 capability'), /\* CAPABILITY IMAP4rev1 /);
      if (mode === '143 with STARTTLS') {
        assert.match(await c.starttls(), /OK/);
        assert.match(await send('3 capability'), /AUTH=PLAIN/);
      }
      const token = Buffer.from(`\0bob@example.org\0${PASSWORD}`).toString('base64');
      assert.match(await c.send('2 authenticate PLAIN\r\n', /\+ ?\r\n/), /^\+ ?\r\n$/);
      assert.match(await c.send(`${token}\r\n`, /2 (OK|NO|BAD)[^\r\n]*\r\n/), /2 OK \[CAPABILITY [^\]]*IDLE/);
      assert.match(await send('4 namespace'), /\* NAMESPACE \(\(""\s*"\/"\)\) NIL NIL/);
      assert.match(
        await send('5 ID ("name" "Thunderbird" "version" "115.4.1")'),
        /\* ID \("name" "Mailwerk"/,
      );
      const lsub = await send('6 lsub "" "*"');
      assert.match(lsub, /\* LSUB \(\) "\/" INBOX/);
      assert.match(await send('7 list "" "*"'), /\* LIST \(\\HasNoChildren \\Sent\) "\/" "Sent"/);
      const hasTrash = /Trash/.test(lsub);
      if (!hasTrash) {
        assert.match(await send('8 create "Trash"'), /8 OK/);
        assert.match(await send('9 subscribe "Trash"'), /9 OK/);
      }
      const sel = await send('10 select "INBOX"');
      assert.match(sel, /\* 3 EXISTS/);
      assert.match(sel, /\* OK \[UIDVALIDITY \d+\]/);
      assert.match(sel, /10 OK \[READ-WRITE\]/);
      assert.match(await send('11 UID fetch 1:* (FLAGS)'), /\* 3 FETCH \(UID 3 FLAGS \([^)]*\)\)/);
      const headers = await send(
        '12 UID fetch 1:3 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])',
      );
      assert.match(
        headers,
        /\* 2 FETCH \(UID 2 RFC822\.SIZE \d+ FLAGS \([^)]*\) BODY\[HEADER\.FIELDS \(From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To\)\] \{\d+\}\r\nFrom: Ann <ann@example\.org>\r\nTo: Bob <bob@example\.org>\r\nSubject: welcome 1\r\nDate: [^\r]+\r\nMessage-ID: <welcome1@example\.org>\r\n\r\n\)/,
      );
      // Each run reads (and marks read) a message the other has not.
      const body = await send(`13 UID fetch ${uid} (UID RFC822.SIZE BODY.PEEK[])`);
      const whole = sample(`welcome ${uid - 1}`);
      assert.ok(body.includes(`BODY[] {${whole.length}}\r\n${whole.toString('latin1')})`), body);
      assert.match(
        await send(`14 UID store ${uid} +Flags (\\Seen)`),
        new RegExp(`\\* ${uid} FETCH \\(UID ${uid} FLAGS \\(\\\\Seen[^)]*\\)\\)\\r\\n14 OK`),
      );
      // IDLE: new mail shows while idling; DONE ends it.
      assert.match(await c.send('15 IDLE\r\n', /\+ idling\r\n/), /\+ idling/);
      const other = await r.client();
      await other.append('INBOX', sample('while idling'));
      assert.match(await c.send('', /\* 4 EXISTS\r\n/), /\* 4 EXISTS/);
      assert.match(await c.send('DONE\r\n', /15 OK[^\r\n]*\r\n/), /15 OK/);
      // Saving a sent message: APPEND with a synchronising literal and APPENDUID.
      const sent = sample('my reply');
      assert.match(await c.send(`16 APPEND "Sent" (\\Seen) {${sent.length}}\r\n`, /\+ [^\r\n]*\r\n/), /^\+ /);
      assert.match(
        await c.send(Buffer.concat([sent, Buffer.from('\r\n')]), /16 (OK|NO|BAD)[^\r\n]*\r\n/),
        /16 OK \[APPENDUID \d+ \d+\]/,
      );
      // Thunderbird drops connections without LOGOUT; the server keeps serving.
      const sessionsBefore = r.service.sessions.size;
      c.close();
      await eventually(() => r.service.sessions.size < sessionsBefore);
      assert.ok((await count(other, 'Sent')) >= 1);
      const lock = await other.getMailboxLock('INBOX');
      try {
        await other.messageDelete({ subject: 'while idling' });
      } finally {
        lock.release();
      }
    });
  }
});
