// The IMAP service against imapflow (the card's IMAP client) and a raw line client, over loopback TLS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { count, PASSWORD, RawImap, type Rig, rig, sample, storeMessage } from './harness.ts';

const login = `LOGIN bob@example.org "${PASSWORD}"`;

describe('IMAP: session, capabilities and authentication', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('offers the capabilities clients look for, STARTTLS and LOGINDISABLED before TLS', async () => {
    const c = await RawImap.connect(r.port, false);
    const caps = await c.cmd('CAPABILITY');
    assert.match(caps, /STARTTLS/);
    assert.match(caps, /LOGINDISABLED/);
    // RFC 5530: a password refused for want of TLS is NO [PRIVACYREQUIRED] (imap-core answered BAD).
    assert.match(await c.cmd(login), /^t2 NO \[PRIVACYREQUIRED\] .*STARTTLS/m);
    assert.match(await c.starttls(), /t3 OK/);
    const tlsCaps = await c.cmd('CAPABILITY');
    assert.doesNotMatch(tlsCaps, /LOGINDISABLED/);
    assert.match(tlsCaps, /AUTH=PLAIN/);
    // After sign-in the server lists everything it does.
    const after = await c.cmd(login);
    assert.match(after, /t5 OK/);
    for (const cap of [
      'IDLE',
      'CONDSTORE',
      'QUOTA',
      'NAMESPACE',
      'ID',
      'ENABLE',
      'UNSELECT',
      'MOVE',
      'UIDPLUS',
      'SPECIAL-USE',
      'COMPRESS=DEFLATE',
      'APPENDLIMIT=1048576',
    ])
      assert.match(after, new RegExp(`[ (]${cap.replace(/[=.]/g, '\\$&')}[ )\\r]`), cap);
    c.close();
  });

  it('takes a password in the clear only when the admin allows it', async () => {
    const open = await rig({ allowPlaintext: true });
    try {
      const c = await RawImap.connect(open.port, false);
      const caps = await c.cmd('CAPABILITY');
      assert.match(caps, /STARTTLS/);
      assert.doesNotMatch(caps, /LOGINDISABLED/);
      assert.match(await c.cmd(login), /t2 OK/);
      c.close();
    } finally {
      await open.close();
    }
  });

  it('takes implicit-TLS clients that send SNI, as Thunderbird, mbsync and mutt do', async () => {
    const c = await RawImap.connect(r.tlsPort, true, 'imap.example.org');
    assert.match(await c.cmd(login), /t1 OK/);
    c.close();
  });

  it('signs in with AUTHENTICATE PLAIN over implicit TLS, and answers ID and NAMESPACE', async () => {
    const c = await RawImap.connect(r.tlsPort, true);
    const token = Buffer.from(`\0bob@example.org\0${PASSWORD}`).toString('base64');
    assert.match(await c.cmd(`AUTHENTICATE PLAIN ${token}`), /t1 OK/);
    assert.match(await c.cmd('ID ("name" "test")'), /\* ID \(.*"name" "Mailwerk"/);
    assert.match(await c.cmd('NAMESPACE'), /\* NAMESPACE \(\(""\s*"\/"\)\) NIL NIL/);
    assert.match(await c.cmd('ENABLE CONDSTORE'), /\* ENABLED CONDSTORE/);
    c.close();
  });

  it('gives the same answer for an unknown user and a wrong password, and throttles repeated failures', async () => {
    // Delays well above what a password check may take on a busy machine (argon2: tens to a hundred ms),
    // so the doubling shows whatever the load.
    const { AuthThrottle } = await import('@mailwerk/auth');
    const r = await rig({ throttle: new AuthThrottle({ baseDelayMs: 400, maxDelayMs: 1600 }) });
    const c = await RawImap.connect(r.tlsPort, true);
    const wrong = await c.cmd('LOGIN bob@example.org "nope"');
    const unknown = await c.cmd('LOGIN nobody@example.org "nope"');
    const strip = (s: string) => s.replace(/^t\d+ /, '');
    assert.match(wrong, /NO \[AUTHENTICATIONFAILED\]/);
    assert.equal(strip(wrong), strip(unknown));
    // Past the free failures each attempt waits longer before the answer.
    await c.cmd('LOGIN bob@example.org "nope"');
    let t = Date.now();
    await c.cmd('LOGIN bob@example.org "nope"');
    const first = Date.now() - t;
    t = Date.now();
    await c.cmd('LOGIN bob@example.org "nope"');
    const second = Date.now() - t;
    // 400 ms, then 800 (the password check itself takes some ms too).
    assert.ok(first >= 395, `delay ${first} ms`);
    assert.ok(second >= first + 250, `delays ${first} then ${second} ms`);
    c.close();
    // The real user, from their own address, gets in once the account's count is cleared by a success.
    const ok = await r.client('ann');
    assert.ok(ok.authenticated);
    await r.close();
  });
});

describe('IMAP: COMPRESS=DEFLATE', () => {
  it('switches the stream to raw DEFLATE both ways after COMPRESS DEFLATE', async () => {
    const r = await rig();
    try {
      const raw = await RawImap.connect(r.tlsPort, true);
      await raw.cmd(login);
      assert.match(await raw.cmd('COMPRESS DEFLATE'), /OK/);
      const zlib = await import('node:zlib');
      const deflate = zlib.createDeflateRaw();
      const inflate = zlib.createInflateRaw();
      deflate.pipe(raw.socket);
      raw.socket.removeAllListeners('data');
      raw.socket.pipe(inflate);
      let text = '';
      inflate.on('data', (d: Buffer) => {
        text += d.toString();
      });
      deflate.write('c1 STATUS INBOX (MESSAGES)\r\n');
      deflate.flush();
      const end = Date.now() + 3000;
      while (!/c1 OK/.test(text)) {
        if (Date.now() > end) throw new Error(`no compressed answer: ${text}`);
        await new Promise((res) => setTimeout(res, 20));
      }
      assert.match(text, /\* STATUS "?INBOX"? \(MESSAGES 0\)/);
      raw.close();
    } finally {
      await r.close();
    }
  });
});

describe('IMAP: large messages out over TLS (PacedWriter)', () => {
  it('sends a 3 MB message whole and in order over 993, with and without COMPRESS, and the session goes on', async () => {
    const r = await rig({ maxMessageSize: 4 * 1024 * 1024 });
    try {
      // Bytes that do not compress, so the compressed stream is as large as the message.
      const body = (await import('node:crypto'))
        .randomBytes(2_250_000)
        .toString('base64')
        .replace(/.{76}/g, '$&\r\n');
      const raw = Buffer.from(`From: ann@example.org\r\nSubject: big\r\n\r\n${body}\r\n`);
      const writer = await r.client('bob');
      await writer.append('INBOX', raw);
      for (const disableCompression of [false, true]) {
        const c = await r.client('bob', { disableCompression });
        await c.mailboxOpen('INBOX');
        const { content } = await c.download('1', undefined, { uid: false });
        assert.ok(content);
        const chunks: Buffer[] = [];
        for await (const chunk of content) chunks.push(chunk as Buffer);
        const got = Buffer.concat(chunks);
        assert.equal(got.length, raw.length, `compression ${!disableCompression}`);
        assert.ok(got.equals(raw));
        const status = await c.status('INBOX', { messages: true });
        assert.ok(status, 'the session answers after it');
        assert.equal(status.messages, 1);
        await c.logout();
      }
    } finally {
      await r.close();
    }
  });
});

describe('IMAP: connection limits', () => {
  it('turns away connections beyond the per-address limit with BYE, and takes new ones once others close', async () => {
    const r = await rig({ maxConnectionsPerIp: 2 });
    try {
      const a = await RawImap.connect(r.tlsPort, true);
      const b = await RawImap.connect(r.tlsPort, true);
      const { connect } = await import('node:tls');
      const third = connect({ host: '127.0.0.1', port: r.tlsPort, rejectUnauthorized: false });
      const greeting = await new Promise<string>((resolve) => {
        let text = '';
        third.on('data', (d) => {
          text += d.toString();
        });
        third.on('close', () => resolve(text));
      });
      assert.match(greeting, /^\* BYE Too many connections from your address/);
      a.close();
      await new Promise((res) => setTimeout(res, 100));
      const c = await RawImap.connect(r.tlsPort, true);
      assert.match(await c.cmd(login), /OK/);
      b.close();
      c.close();
    } finally {
      await r.close();
    }
  });
});

describe('IMAP: mailboxes', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('lists the special-use mailboxes', async () => {
    const c = await r.client();
    const list = await c.list();
    const byPath = new Map(list.map((m) => [m.path, m]));
    assert.equal(byPath.get('Sent')?.specialUse, '\\Sent');
    assert.equal(byPath.get('Junk')?.specialUse, '\\Junk');
    assert.equal(byPath.get('Trash')?.specialUse, '\\Trash');
    assert.ok(byPath.has('INBOX'));
  });

  it('creates hierarchies, renames a parent with its children, deletes, subscribes', async () => {
    const c = await r.client();
    await c.mailboxCreate('Projects/2026/Q4');
    let paths = (await c.list()).map((m) => m.path);
    assert.ok(
      paths.includes('Projects') && paths.includes('Projects/2026') && paths.includes('Projects/2026/Q4'),
    );
    await c.append('Projects/2026/Q4', sample('Filed'));
    await c.mailboxRename('Projects', 'Work');
    paths = (await c.list()).map((m) => m.path);
    assert.ok(paths.includes('Work/2026/Q4'));
    assert.ok(!paths.some((p) => p.startsWith('Projects')));
    assert.equal(await count(c, 'Work/2026/Q4'), 1);
    await c.mailboxSubscribe('Work');
    await c.mailboxUnsubscribe('Work/2026');
    await c.mailboxDelete('Work/2026/Q4');
    paths = (await c.list()).map((m) => m.path);
    assert.ok(!paths.includes('Work/2026/Q4'));
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.cmd('CREATE Work'), /NO \[ALREADYEXISTS\]/);
    // LSUB lists only what is subscribed; a subscription outlives its mailbox (RFC 3501 §6.3.6): Q4,
    // subscribed by imapflow when it made it, is listed as a name that cannot be selected.
    const lsub = await raw.cmd('LSUB "" "*"');
    assert.match(lsub, /"\/" "?Work"?\r\n/);
    assert.doesNotMatch(lsub, /"Work\/2026"\r\n/);
    assert.match(lsub, /^\* LSUB \(\\Noselect\) "\/" "Work\/2026\/Q4"\r$/m);
    raw.close();
  });

  it('refuses to delete INBOX and to rename a mailbox into itself; renaming INBOX moves its mail', async () => {
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.cmd('DELETE INBOX'), /t2 NO/);
    assert.match(await raw.cmd('CREATE Parent'), /t3 OK/);
    assert.match(await raw.cmd('RENAME Parent Parent/Child'), /t4 NO/);
    assert.match(await raw.cmd('RENAME Nothing Else'), /t5 NO \[NONEXISTENT\]/);
    // RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves INBOX empty.
    const c = await r.client();
    await c.append('INBOX', sample('Old inbox'));
    assert.match(await raw.cmd('RENAME INBOX "Old mail"'), /t6 OK/);
    assert.equal(await count(c, 'INBOX'), 0);
    assert.equal(await count(c, 'Old mail'), 1);
    assert.match(await raw.cmd('RENAME INBOX "Old mail"'), /t7 NO \[ALREADYEXISTS\]/);
    assert.match(await raw.cmd('RENAME INBOX INBOX'), /t8 NO \[CANNOT\]/);
    raw.close();
  });

  it('refuses traversal, empty components and control characters, and never reaches another user', async () => {
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.cmd('CREATE "a/../b"'), /NO \[CANNOT\]/);
    assert.match(await raw.cmd('CREATE ".."'), /NO \[CANNOT\]/);
    assert.match(await raw.cmd('CREATE "a//b"'), /NO/);
    assert.match(await raw.cmd('CREATE "bad\x01name"'), /(NO|BAD)/);
    assert.match(await raw.cmd('SELECT "../ann@example.org/INBOX"'), /NO \[NONEXISTENT\]/);
    assert.match(await raw.cmd('SELECT "ann@example.org/INBOX"'), /NO \[NONEXISTENT\]/);
    const ann = await r.client('ann');
    await ann.mailboxCreate('Secret');
    assert.match(await raw.cmd('SELECT Secret'), /NO \[NONEXISTENT\]/);
    assert.match(await raw.cmd('STATUS Secret (MESSAGES)'), /NO \[NONEXISTENT\]/);
    raw.close();
  });

  it('decodes modified UTF-7 names and lists them encoded', async () => {
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.cmd('CREATE "Entw&APw-rfe"'), /OK/);
    assert.ok(await r.store.getMailbox(r.accounts.bob!, 'Entwürfe'));
    assert.match(await raw.cmd('LIST "" "Entw*"'), /\* LIST \([^)]*\) "\/" "?Entw&APw-rfe"?/);
    // Not valid modified UTF-7: unterminated, non-canonical (ASCII encoded), raw 8-bit.
    assert.match(await raw.cmd('CREATE "Bad&Jjo"'), /NO \[CANNOT\]/);
    assert.match(await raw.cmd('CREATE "&AGE-"'), /NO \[CANNOT\]/);
    assert.match(await raw.send(Buffer.from('t99 CREATE "Entwürfe2"\r\n'), /t99 (OK|NO|BAD)/), /t99 NO/);
    assert.match(await raw.cmd('SELECT "Entw&APw-rfe"'), /OK/);
    assert.match(await raw.cmd('SELECT "Entw&APw-rfe&"'), /NO \[NONEXISTENT\]/);
    raw.close();
  });
});

describe('IMAP: messages', () => {
  let r: Rig;
  const mime = Buffer.from(
    [
      'From: =?UTF-8?Q?J=C3=BCrgen?= <jurgen@example.net>',
      'To: bob@example.org',
      'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and a report',
      'Date: Tue, 10 Nov 2026 08:00:00 +0100',
      'Message-ID: <report@example.net>',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="XX"',
      '',
      '--XX',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Die Zahlen f=C3=BCr das Quartal sind da.',
      '--XX',
      'Content-Type: application/pdf; name="r.pdf"',
      'Content-Disposition: attachment; filename="r.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      'JVBERi0xLjQK',
      '--XX--',
      '',
    ].join('\r\n'),
  );

  before(async () => {
    r = await rig({ quota: 20_000 });
  });
  after(() => r.close());

  it('says HIGHESTMODSEQ once when a command turns CONDSTORE on in a selected mailbox (RFC 7162 §3.1)', async () => {
    const c = await r.client();
    await c.append('Drafts', sample('modseq'));
    await c.logout();
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    const sel = await raw.cmd('SELECT Drafts');
    const highest = /HIGHESTMODSEQ (\d+)/.exec(sel)![1];
    assert.match(
      await raw.cmd('FETCH 1 (MODSEQ)'),
      new RegExp(`^\\* OK \\[HIGHESTMODSEQ ${highest}\\][^\\r]*\\r\\n\\* 1 FETCH`, 'm'),
    );
    assert.doesNotMatch(await raw.cmd('FETCH 1 (MODSEQ)'), /HIGHESTMODSEQ/);
    // Turned on before a mailbox is selected: nothing to say then.
    const other = await RawImap.connect(r.tlsPort, true);
    await other.cmd(login);
    assert.doesNotMatch(await other.cmd('ENABLE CONDSTORE'), /HIGHESTMODSEQ/);
    // By SELECT … (CONDSTORE) from another mailbox: only the new mailbox's, once.
    const third = await RawImap.connect(r.tlsPort, true);
    await third.cmd(login);
    await third.cmd('SELECT INBOX');
    const reselect = await third.cmd('SELECT Drafts (CONDSTORE)');
    assert.equal(reselect.match(/HIGHESTMODSEQ/g)?.length, 1, reselect);
    assert.match(reselect, new RegExp(`HIGHESTMODSEQ ${highest}\\]`));
    third.close();
    raw.close();
    other.close();
  });

  it('FETCH returns every item exactly, and BODY[] byte for byte', async () => {
    const c = await r.client();
    const appended = await c.append('INBOX', mime, ['$Important'], new Date('2026-11-11T12:00:00Z'));
    assert.ok(appended);
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    const sel = await raw.cmd('SELECT INBOX (CONDSTORE)');
    assert.match(sel, /\* 1 EXISTS/);
    assert.match(sel, /\[UIDVALIDITY \d+\]/);
    assert.match(sel, /\[HIGHESTMODSEQ \d+\]/);
    const meta = await raw.cmd('FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ)');
    assert.match(meta, new RegExp(`RFC822\\.SIZE ${mime.length}`));
    assert.match(meta, /INTERNALDATE "11-Nov-2026 12:00:00 \+0000"/);
    // The first session shown the message sees it \Recent (RFC 3501 §2.3.2).
    assert.match(meta, /FLAGS \(\$Important \\Recent\)/);
    assert.match(meta, /MODSEQ \(\d+\)/);
    const env = await raw.cmd('FETCH 1 (ENVELOPE)');
    assert.match(env, /"Tue, 10 Nov 2026 08:00:00 \+0100" "=\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?= and a report"/);
    assert.match(env, /"<report@example\.net>"/);
    const bs = await raw.cmd('FETCH 1 (BODYSTRUCTURE)');
    assert.match(bs, /\("text" "plain" \("charset" "utf-8"\) NIL NIL "quoted-printable" \d+ \d+/i);
    assert.match(bs, /"mixed" \("boundary" "XX"\)/i);
    const peek = await raw.cmd('FETCH 1 (BODY.PEEK[])');
    const literal = `BODY[] {${mime.length}}\r\n${mime.toString('latin1')})`;
    assert.ok(peek.includes(literal), peek);
    assert.doesNotMatch(peek, /\\Seen/);
    assert.match(
      await raw.cmd('FETCH 1 (BODY.PEEK[1])'),
      /BODY\[1\] \{\d+\}\r\nDie Zahlen f=C3=BCr das Quartal sind da\.\)/,
    );
    assert.match(await raw.cmd('FETCH 1 (BODY.PEEK[2.MIME])'), /Content-Type: application\/pdf/);
    assert.match(
      await raw.cmd('FETCH 1 (BODY.PEEK[HEADER.FIELDS (Message-ID)])'),
      /BODY\[HEADER\.FIELDS \("?Message-ID"?\)\] \{\d+\}\r\nMessage-ID: <report@example\.net>\r\n\r\n\)/i,
    );
    assert.match(await raw.cmd('FETCH 1 (BODY.PEEK[]<6.6>)'), /BODY\[\]<6> \{6\}\r\n=\?UTF-\)/);
    assert.match(await raw.cmd('FETCH 1 (RFC822.HEADER)'), /RFC822\.HEADER \{\d+\}\r\nFrom:/);
    assert.doesNotMatch(await raw.cmd('FETCH 1 (FLAGS)'), /\\Seen/);
    // BODY[] (not PEEK) marks the message \Seen and says so; so do RFC822 and RFC822.TEXT (RFC 3501 §6.4.5).
    assert.match(await raw.cmd('FETCH 1 (BODY[TEXT])'), /FLAGS \([^)]*\\Seen/);
    assert.match(await raw.cmd('FETCH 1 (FLAGS)'), /\\Seen/);
    for (const item of ['RFC822.TEXT', 'RFC822']) {
      assert.match(await raw.cmd('STORE 1 -FLAGS.SILENT (\\Seen)'), /OK/);
      const r = await raw.cmd(`FETCH 1 (RFC822.SIZE ${item})`);
      assert.match(r, /FLAGS \([^)]*\\Seen/, item);
      if (item === 'RFC822') assert.ok(r.includes(`RFC822 {${mime.length}}\r\n${mime.toString('latin1')}`));
      else assert.match(r, /RFC822\.TEXT \{\d+\}\r\n--XX\r\n/);
    }
    // The client's view agrees: imapflow parses the same structure.
    const lock = await c.getMailboxLock('INBOX');
    try {
      const msg = await c.fetchOne('1', { source: true, envelope: true, bodyStructure: true });
      assert.ok(msg);
      assert.deepEqual(msg.source, mime);
      assert.equal(msg.envelope?.subject, 'Grüße and a report');
      assert.equal(msg.envelope?.from?.[0]?.name, 'Jürgen');
      assert.equal(msg.bodyStructure?.childNodes?.[1]?.dispositionParameters?.filename, 'r.pdf');
    } finally {
      lock.release();
    }
    raw.close();
  });

  it('STORE +FLAGS, -FLAGS, FLAGS, .SILENT and UNCHANGEDSINCE', async () => {
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    await raw.cmd('SELECT INBOX (CONDSTORE)');
    assert.match(
      await raw.cmd('STORE 1 +FLAGS (\\Flagged)'),
      /\* 1 FETCH \(FLAGS \([^)]*\\Flagged[^)]*\) MODSEQ \(\d+\)\)/,
    );
    assert.match(await raw.cmd('STORE 1 -FLAGS (\\Flagged)'), /\* 1 FETCH \(FLAGS \((?![^)]*Flagged)/);
    const silent = await raw.cmd('STORE 1 +FLAGS.SILENT (\\Answered)');
    assert.doesNotMatch(silent, /FLAGS \(/);
    const set = await raw.cmd('STORE 1 FLAGS (\\Seen $Label1)');
    assert.match(set, /FLAGS \(\\Seen \$Label1\)/);
    const modseq = Number(/MODSEQ \((\d+)\)/.exec(set)![1]);
    assert.match(
      await raw.cmd(`STORE 1 (UNCHANGEDSINCE ${modseq - 1}) +FLAGS (\\Draft)`),
      /OK \[MODIFIED 1\]/,
    );
    assert.match(await raw.cmd(`STORE 1 (UNCHANGEDSINCE ${modseq}) +FLAGS (\\Draft)`), /\\Draft/);
    assert.match(await raw.cmd(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq})`), /\* 1 FETCH/);
    assert.match(await raw.cmd('STORE 1 +FLAGS (\\Bogus)'), /(NO|BAD)/);
    raw.close();
  });

  it('SEARCH by flags, headers, body, text, dates, sizes, sequence sets, NOT and OR', async () => {
    const c = await r.client();
    await c.mailboxCreate('S');
    const texts = [
      sample('Alpha meeting', 'Agenda for Monday.\r\n'),
      sample('Beta release', 'The build is green.\r\n'),
      mime,
    ];
    for (const t of texts) await c.append('S', t, [], new Date('2026-11-20T10:00:00Z'));
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    await raw.cmd('SELECT S');
    await raw.cmd('STORE 2 +FLAGS (\\Flagged)');
    const s = async (q: string) => {
      const out = await raw.cmd(`SEARCH ${q}`);
      const m = /\* SEARCH([ \d]*)\r\n/.exec(out);
      assert.ok(m, out);
      return m[1]!.trim();
    };
    assert.equal(await s('ALL'), '1 2 3');
    assert.equal(await s('FLAGGED'), '2');
    assert.equal(await s('UNFLAGGED'), '1 3');
    assert.equal(await s('SUBJECT beta'), '2');
    assert.equal(await s('HEADER Message-ID report@example.net'), '3');
    assert.equal(await s('FROM jurgen'), '3');
    assert.equal(await s('BODY quartal'), '3');
    assert.equal(await s('BODY agenda'), '1');
    assert.equal(await s('TEXT "Beta release"'), '2');
    assert.equal(await s('TEXT green'), '2');
    assert.equal(await s('NOT BODY agenda'), '2 3');
    assert.equal(await s('OR SUBJECT alpha SUBJECT beta'), '1 2');
    assert.equal(await s('2:3'), '2 3');
    assert.equal(await s('UID 1:*'), '1 2 3');
    assert.equal(await s(`LARGER ${mime.length - 1}`), '3');
    assert.equal(await s('SMALLER 100'), '');
    assert.equal(await s('SMALLER 300'), '1 2');
    assert.equal(await s('SENTBEFORE 24-Nov-2026'), '1 2 3');
    assert.equal(await s('SENTON 10-Nov-2026'), '3');
    assert.equal(await s('ON 20-Nov-2026'), '1 2 3');
    assert.equal(await s('SINCE 21-Nov-2026'), '');
    assert.equal(await s('BEFORE 21-Nov-2026 NOT SEEN'), '1 2 3');
    // A UTF-8 search term with CHARSET, as Thunderbird sends it, matches the decoded subject.
    const lock = await c.getMailboxLock('S');
    try {
      assert.deepEqual(await c.search({ subject: 'Grüße' }), [3]);
      assert.deepEqual(await c.search({ body: 'für das' }), [3]);
    } finally {
      lock.release();
    }
    raw.close();
  });

  it('COPY, MOVE, EXPUNGE and UID EXPUNGE, with COPYUID', async () => {
    const c = await r.client();
    await c.mailboxCreate('M');
    for (const n of ['one', 'two', 'three', 'four']) await c.append('M', sample(n));
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    await raw.cmd('SELECT M');
    assert.match(await raw.cmd('COPY 1:2 Archive'), /OK \[COPYUID \d+ 1:2 \d+(:\d+)?\]/);
    assert.match(await raw.cmd('COPY 1 Nowhere'), /NO \[TRYCREATE\]/);
    const moved = await raw.cmd('MOVE 1 Trash');
    assert.match(moved, /COPYUID \d+ 1 \d+/);
    assert.match(moved, /\* 1 EXPUNGE/);
    assert.match(await raw.cmd('STORE 1:2 +FLAGS.SILENT (\\Deleted)'), /OK/);
    const uidExp = await raw.cmd('UID EXPUNGE 3');
    assert.match(uidExp, /\* 2 EXPUNGE/);
    assert.doesNotMatch(uidExp, /\* 1 EXPUNGE/);
    assert.match(await raw.cmd('EXPUNGE'), /\* 1 EXPUNGE/);
    assert.match(await raw.cmd('SEARCH ALL'), /\* SEARCH 4\r\n|\* SEARCH 1\r\n/);
    assert.match(await raw.cmd('UID SEARCH ALL'), /\* SEARCH 4\r\n/);
    assert.equal(await count(c, 'Archive'), 2);
    assert.equal(await count(c, 'Trash'), 1);
    // CLOSE expunges what is marked \Deleted, without EXPUNGE responses, and leaves the mailbox.
    assert.match(await raw.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)'), /OK/);
    const closed = await raw.cmd('CLOSE');
    assert.match(closed, /OK/);
    assert.doesNotMatch(closed, /EXPUNGE/);
    assert.equal(await count(c, 'M'), 0);
    assert.match(await raw.cmd('SELECT M'), /\* 0 EXISTS/);
    assert.match(await raw.cmd('UNSELECT'), /OK/);
    assert.match(await raw.cmd('FETCH 1 (FLAGS)'), /BAD|NO/);
    raw.close();
  });

  it('EXAMINE is read-only: no \\Seen from BODY[], no STORE', async () => {
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.cmd('EXAMINE Archive'), /\* 2 EXISTS[\s\S]*OK \[READ-ONLY\]/);
    assert.doesNotMatch(await raw.cmd('FETCH 1 (BODY[])'), /\\Seen/);
    assert.match(await raw.cmd('STORE 1 +FLAGS (\\Flagged)'), /OK STORE ignored/);
    assert.doesNotMatch(await raw.cmd('FETCH 1 (FLAGS)'), /\\Flagged|\\Seen/);
    raw.close();
  });

  it('APPEND over quota is refused with [OVERQUOTA] and stores nothing; QUOTA reports usage', async () => {
    const c = await r.client();
    const before = await count(c, 'INBOX');
    const big = sample('Big', `${'x'.repeat(76)}\r\n`.repeat(300));
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    const res = await raw.send(`t9 APPEND INBOX {${big.length}}\r\n`, /\+ /);
    assert.match(res, /\+ /);
    assert.match(
      await raw.send(Buffer.concat([big, Buffer.from('\r\n')]), /t9 (OK|NO)/),
      /t9 NO \[OVERQUOTA\]/,
    );
    assert.equal(await count(c, 'INBOX'), before);
    const q = await raw.cmd('GETQUOTAROOT INBOX');
    assert.match(q, /\* QUOTAROOT "?INBOX"? ""/);
    assert.match(q, /\* QUOTA "" \(STORAGE \d+ 20\)/);
    const quota = await c.getQuota('INBOX');
    assert.ok(quota);
    assert.equal(quota.storage?.limit, 20 * 1024);
    assert.ok((quota.storage?.usage ?? 0) > 0);
    raw.close();
  });

  it('bounds literals before taking them: a huge APPEND is refused with [TOOBIG]', async () => {
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.send('t1 APPEND INBOX {999999999}\r\n', /t1 (NO|BAD)/), /t1 NO \[TOOBIG\]/);
    // A literal for a command not allowed now (LOGIN after sign-in) is refused before it is read.
    assert.match(await raw.send('t2 LOGIN {5000}\r\n', /t2 (NO|BAD)/), /t2 BAD/);
    const fresh = await RawImap.connect(r.tlsPort, true);
    assert.match(await fresh.send('t1 LOGIN {5000}\r\n', /t1 (NO|BAD)/), /t1 NO \[TOOBIG\]/);
    fresh.close();
    // A command line without end is cut off at 64 KiB, before sign-in too.
    const endless = await RawImap.connect(r.tlsPort, true);
    endless.socket.write(`t1 LOGIN ${'x'.repeat(70 * 1024)}`);
    assert.match(await endless.send('', /\* BYE/), /\* BYE Line too long/);
    endless.close();
    raw.close();
  });
});

describe('IMAP: live updates between sessions', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('a session away while the change journal was pruned past it is told the truth from the mailbox itself', async () => {
    const rr = await rig();
    try {
      for (const subject of ['one', 'two', 'three']) await storeMessage(rr, 'bob', 'Drafts', sample(subject));
      const away = await RawImap.connect(rr.tlsPort, true);
      await away.cmd(login);
      assert.match(await away.cmd('SELECT Drafts'), /\* 3 EXISTS/);
      const other = await RawImap.connect(rr.tlsPort, true);
      await other.cmd(login);
      await other.cmd('SELECT Drafts');
      await other.cmd('UID STORE 1 +FLAGS.SILENT (\\Flagged)');
      await other.cmd('UID STORE 2 +FLAGS.SILENT (\\Deleted)');
      await other.cmd('UID EXPUNGE 2');
      await storeMessage(rr, 'bob', 'Drafts', sample('four'));
      // Nothing of it is left in the journal.
      assert.ok((await rr.store.pruneJournal(0)) > 0);
      const told = await away.cmd('NOOP');
      assert.match(told, /^\* 2 EXPUNGE\r$/m);
      assert.match(told, /^\* 3 EXISTS\r$/m);
      assert.match(told, /^\* 1 FETCH \(UID 1 FLAGS \(\\Flagged[^)]*\)\)\r$/m);
      assert.match(
        await away.cmd('UID FETCH 1:* (UID)'),
        /\* 1 FETCH \(UID 1\)\r\n\* 2 FETCH \(UID 3\)\r\n\* 3 FETCH \(UID 4\)/,
      );
      away.close();
      other.close();
    } finally {
      await rr.close();
    }
  });

  it('a session in IDLE sees new mail, flag changes and expunges made by another session', async () => {
    const watcher = await r.client();
    const worker = await r.client();
    const lock = await watcher.getMailboxLock('INBOX');
    const events: string[] = [];
    watcher.on('exists', (e) => events.push(`exists ${e.count}`));
    watcher.on('flags', (e) => events.push(`flags ${e.seq} ${[...e.flags].join(',')}`));
    watcher.on('expunge', (e) => events.push(`expunge ${e.seq}`));
    const idle = watcher.idle();
    try {
      await worker.append('INBOX', sample('Live'));
      const wait = async (re: RegExp) => {
        const end = Date.now() + 1000;
        while (!events.some((e) => re.test(e))) {
          if (Date.now() > end) throw new Error(`no ${re} within 1 s; saw ${events.join('; ')}`);
          await new Promise((res) => setTimeout(res, 10));
        }
      };
      await wait(/^exists 1$/);
      const wl = await worker.getMailboxLock('INBOX');
      try {
        await worker.messageFlagsAdd('1', ['\\Flagged']);
        await wait(/^flags 1 .*\\Flagged/);
        await worker.messageDelete('1');
        await wait(/^expunge 1$/);
      } finally {
        wl.release();
      }
    } finally {
      lock.release();
      await watcher.noop();
      await idle.catch(() => undefined);
    }
  });

  it('a session whose selected mailbox another session deletes is told with BYE', async () => {
    const worker = await r.client();
    await worker.mailboxCreate('Doomed');
    const raw = await RawImap.connect(r.tlsPort, true);
    await raw.cmd(login);
    assert.match(await raw.cmd('SELECT Doomed'), /OK/);
    await worker.mailboxDelete('Doomed');
    const bye = await raw.send('', /\* BYE/);
    assert.match(bye, /\* BYE Selected mailbox was deleted/);
    raw.close();
  });

  it('a message delivered by the MDA (the bus) reaches an IDLE-ing session within a second', async () => {
    const watcher = await r.client('ann');
    const lock = await watcher.getMailboxLock('INBOX');
    let count = 0;
    watcher.on('exists', (e) => {
      count = e.count;
    });
    watcher.idle().catch(() => undefined);
    try {
      const raw = sample('From the MDA');
      const inbox = (await r.store.getMailbox(r.accounts.ann!, 'INBOX'))!;
      const { contentId } = await import('@mailwerk/store');
      const { parseMessage } = await import('@mailwerk/mime');
      const t = Date.now();
      const m = await r.store.appendMessage({
        accountId: r.accounts.ann!,
        mailboxId: inbox.id,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
      });
      // What the MDA publishes after its write commits.
      await r.bus.publish({
        type: 'message.new',
        accountId: r.accounts.ann!,
        mailboxId: inbox.id,
        uid: m.uid,
        modseq: m.modseq,
      });
      while (count < 1) {
        if (Date.now() - t > 1000) throw new Error('no EXISTS within 1 s');
        await new Promise((res) => setTimeout(res, 10));
      }
    } finally {
      lock.release();
    }
  });

  it('over Redis, mail stored by another process reaches an IDLE-ing session within a second, without polling', async () => {
    const { startRedis } = await import('../../limits/test/redis-server.ts');
    const { RedisBus } = await import('@mailwerk/bus/redis');
    const redis = await startRedis();
    const accessBus = new RedisBus(redis.url);
    const mdaBus = new RedisBus(redis.url);
    const p = await rig({ bus: accessBus, pollMs: 3000 });
    try {
      const watcher = await p.client();
      const lock = await watcher.getMailboxLock('INBOX');
      let count = 0;
      watcher.on('exists', (e) => {
        count = e.count;
      });
      watcher.idle().catch(() => undefined);
      await accessBus.ready();
      const raw = sample('Across processes');
      const inbox = (await p.store.getMailbox(p.accounts.bob!, 'INBOX'))!;
      const { contentId } = await import('@mailwerk/store');
      const { parseMessage } = await import('@mailwerk/mime');
      const m = await p.store.appendMessage({
        accountId: p.accounts.bob!,
        mailboxId: inbox.id,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
      });
      const t = Date.now();
      await mdaBus.publish({
        type: 'message.new',
        accountId: p.accounts.bob!,
        mailboxId: inbox.id,
        uid: m.uid,
        modseq: m.modseq,
      });
      while (count < 1) {
        if (Date.now() - t > 1000) throw new Error('no EXISTS within 1 s');
        await new Promise((res) => setTimeout(res, 10));
      }
      lock.release();
    } finally {
      await p.close();
      await mdaBus.close();
      await accessBus.close();
      await redis.stop();
    }
  });

  it('with Redis, an event lost while the pub/sub connection is down still reaches the session: on NOOP, on the reconnect, at the latest on the poll', async () => {
    const { startRedis } = await import('../../limits/test/redis-server.ts');
    const { RedisBus } = await import('@mailwerk/bus/redis');
    const { connect: tcp } = await import('node:net');
    const redis = await startRedis();
    const accessBus = new RedisBus(redis.url);
    const mdaBus = new RedisBus(redis.url);
    /** CLIENT KILL TYPE pubsub, over the wire (RESP), as an admin or a network fault would cut the subscribers. */
    const killSubscribers = () =>
      new Promise<void>((resolve, reject) => {
        const s = tcp(Number(new URL(redis.url).port), '127.0.0.1');
        s.on('error', reject);
        s.on('data', (d) => {
          s.destroy();
          return /^:[1-9]/.test(d.toString()) ? resolve() : reject(new Error(`CLIENT KILL: ${d}`));
        });
        s.write('*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$4\r\nTYPE\r\n$6\r\npubsub\r\n');
      });
    const p = await rig({ bus: accessBus, pollMs: 3000 });
    try {
      const deliver = async (subject: string) => {
        const raw = sample(subject);
        const inbox = (await p.store.getMailbox(p.accounts.bob!, 'INBOX'))!;
        const { contentId } = await import('@mailwerk/store');
        const { parseMessage } = await import('@mailwerk/mime');
        const m = await p.store.appendMessage({
          accountId: p.accounts.bob!,
          mailboxId: inbox.id,
          blobId: contentId(raw),
          data: raw,
          size: raw.length,
          structure: parseMessage(raw),
        });
        // Published while the access process's subscription is cut: nobody hears it.
        await mdaBus.publish({
          type: 'message.new',
          accountId: p.accounts.bob!,
          mailboxId: inbox.id,
          uid: m.uid,
          modseq: m.modseq,
        });
      };
      const raw = await RawImap.connect(p.tlsPort, true);
      await raw.cmd(login);
      await raw.cmd('SELECT INBOX');
      await accessBus.ready();
      // NOOP reads the journal whatever the bus said.
      await killSubscribers();
      await deliver('lost event 1');
      assert.match(await raw.cmd('NOOP'), /\* 1 EXISTS/);
      // In IDLE: the reconnect (or the poll) makes the session look.
      assert.match(await raw.send('i1 IDLE\r\n', /\+ idling\r\n/), /idling/);
      // ioredis has reconnected and subscribed again after the first cut.
      await accessBus.ready();
      await killSubscribers();
      await deliver('lost event 2');
      const t = Date.now();
      assert.match(await raw.send('', /\* 2 EXISTS\r\n/), /\* 2 EXISTS/);
      assert.ok(Date.now() - t < 4000, `${Date.now() - t} ms`);
      raw.close();
    } finally {
      await p.close();
      await mdaBus.close();
      await accessBus.close();
      await redis.stop();
    }
  });

  it('without bus events (a writer in another process), polling finds the change', async () => {
    const p = await rig({ pollMs: 200 });
    try {
      const watcher = await p.client();
      const lock = await watcher.getMailboxLock('INBOX');
      let count = 0;
      watcher.on('exists', (e) => {
        count = e.count;
      });
      watcher.idle().catch(() => undefined);
      const raw = sample('Silent');
      const inbox = (await p.store.getMailbox(p.accounts.bob!, 'INBOX'))!;
      const { contentId } = await import('@mailwerk/store');
      const { parseMessage } = await import('@mailwerk/mime');
      await p.store.appendMessage({
        accountId: p.accounts.bob!,
        mailboxId: inbox.id,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
      });
      const t = Date.now();
      while (count < 1) {
        if (Date.now() - t > 2000) throw new Error('poll did not find the message');
        await new Promise((res) => setTimeout(res, 20));
      }
      lock.release();
    } finally {
      await p.close();
    }
  });
});
