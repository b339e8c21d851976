// The engine against RFC 3501 and its extensions, over loopback with exact bytes: each case is one of the
// faults found in imap-core or in our earlier FETCH data, and the hostile requests of the hardening issues.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MailStore } from '@mailwerk/store';
import { count, eventually, PASSWORD, RawImap, type Rig, rig, sample, storeMessage } from './harness.ts';

const login = `LOGIN bob@example.org "${PASSWORD}"`;

async function signedIn(r: Rig, user = 'bob'): Promise<RawImap> {
  const c = await RawImap.connect(r.tlsPort, true);
  assert.match(await c.cmd(`LOGIN ${user}@example.org "${PASSWORD}"`), /OK/);
  return c;
}

const put = (r: Rig, user: string, box: string, raw: Buffer, flags: string[] = []) =>
  storeMessage(r, user, box, raw, { flags });

const searchResult = (out: string) => /\* SEARCH([ \d]*)/.exec(out)?.[1]?.trim();

describe('IMAP engine: requests that stopped the server', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    for (let i = 0; i < 3; i++) await put(r, 'bob', 'INBOX', sample(`m${i}`));
  });
  after(() => r.close());

  it('SEARCH SUBJECT NIL is a search for "NIL", not a crash', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT INBOX');
    assert.match(await c.cmd('SEARCH SUBJECT NIL'), /\* SEARCH\r\nt3 OK/);
    assert.match(await c.cmd('NOOP'), /OK/);
    c.close();
  });

  it('answers SEARCH with 3,000 ORs and refuses NOT/OR nested deeper than the bound, and the session goes on', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT INBOX');
    assert.equal(searchResult(await c.cmd(`SEARCH ${'OR ALL '.repeat(3000)}ALL`)), '1 2 3');
    assert.match(await c.cmd(`SEARCH ${'NOT OR ALL '.repeat(300)}ALL`), /NO \[LIMIT\]/);
    assert.match(await c.cmd('NOOP'), /OK/);
    c.close();
  });

  it('matches LIST "*%*%…x" (200 pairs) at once', async () => {
    const c = await signedIn(r);
    const t = Date.now();
    assert.match(await c.cmd(`LIST "" "${'*%'.repeat(200)}x"`), /^t2 OK/);
    assert.ok(Date.now() - t < 1000, `${Date.now() - t} ms`);
    c.close();
  });

  it('FETCHes ENVELOPE of a Cc: with 100,000 addresses and BODYSTRUCTURE of 80,000 parts in bounded time, while another session is served', async () => {
    const cc = Array.from({ length: 100_000 }, (_, i) => `u${i}@example.org`).join(', ');
    await put(r, 'bob', 'Archive', Buffer.from(`From: a@b.org\r\nSubject: many\r\nCc: ${cc}\r\n\r\nhi\r\n`));
    const parts = Array.from({ length: 80_000 }, (_, i) => `--b\r\n\r\n${i}\r\n`).join('');
    await put(
      r,
      'bob',
      'Archive',
      Buffer.from(`Content-Type: multipart/mixed; boundary=b\r\n\r\n${parts}--b--\r\n`),
    );
    const c = await signedIn(r);
    const other = await signedIn(r);
    await c.cmd('SELECT Archive');
    const t = Date.now();
    c.socket.write('f1 UID FETCH 1:2 (ENVELOPE BODYSTRUCTURE)\r\n');
    // While it runs, another session is answered.
    assert.match(await other.cmd('NOOP'), /OK/);
    const out = await c.send('', /f1 (OK|NO|BAD)[^\r\n]*\r\n/);
    assert.match(out, /f1 OK/);
    assert.ok(Date.now() - t < 3000, `${Date.now() - t} ms`);
    assert.match(out, /"u999@example\.org"|\("?u999"? "?example\.org"?\)|"u999" "example\.org"/);
    c.close();
    other.close();
  });
});

describe('IMAP engine: syntax imap-core refused', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    for (let i = 0; i < 4; i++) await put(r, 'bob', 'INBOX', sample(`s${i}`));
    await r.store.createMailbox(r.accounts.bob!, 'foo/bar', { subscribed: true });
    await r.store.createMailbox(r.accounts.bob!, 'mytest', { subscribed: true });
  });
  after(() => r.close());

  it('takes unquoted wildcards in LIST and LSUB, FETCH 1,* UID and SEARCH *:3', async () => {
    const c = await signedIn(r);
    assert.match(await c.cmd('LIST "" foo/%'), /\* LIST \([^)]*\) "\/" "?foo\/bar"?\r\nt2 OK/);
    assert.match(await c.cmd('LSUB "" *test'), /\* LSUB \([^)]*\) "\/" "?mytest"?\r\nt3 OK/);
    await c.cmd('SELECT INBOX');
    const f = await c.cmd('FETCH 1,* UID');
    assert.match(f, /\* 1 FETCH \(UID 1\)\r\n\* 4 FETCH \(UID 4\)\r\n/);
    assert.equal(searchResult(await c.cmd('SEARCH *:3')), '3 4');
    assert.match(await c.cmd('FETCH 9 UID'), /BAD/);
    c.close();
  });
});

describe('IMAP engine: RFC 3501 state and responses', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('gives \\Recent to the first session that is shown a message, and SEARCH NEW/OLD/RECENT follow it', async () => {
    await r.store.createMailbox(r.accounts.bob!, 'R');
    await put(r, 'bob', 'R', sample('r1'));
    await put(r, 'bob', 'R', sample('r2'), ['\\Seen']);
    const a = await signedIn(r);
    const b = await signedIn(r);
    const selA = await a.cmd('SELECT R');
    assert.match(selA, /\* 2 RECENT/);
    assert.equal(searchResult(await a.cmd('SEARCH RECENT')), '1 2');
    assert.equal(searchResult(await a.cmd('SEARCH NEW')), '1');
    assert.equal(searchResult(await a.cmd('SEARCH OLD')), '');
    assert.match(await a.cmd('FETCH 1 FLAGS'), /FLAGS \(\\Recent\)/);
    assert.match(await b.cmd('SELECT R'), /\* 0 RECENT/);
    assert.match(await b.cmd('STATUS R (RECENT MESSAGES)'), /RECENT 0 MESSAGES 2/);
    // New mail while both are selected: \Recent for one of them only.
    await put(r, 'bob', 'R', sample('r3'));
    const na = await a.cmd('NOOP');
    const nb = await b.cmd('NOOP');
    assert.match(na, /\* 3 EXISTS/);
    assert.match(nb, /\* 3 EXISTS/);
    // The one that looked first (a) is shown it \Recent; the other is not.
    assert.match(na, /\* 3 RECENT/);
    assert.match(nb, /\* 0 RECENT/);
    a.close();
    b.close();
  });

  it('announces a new keyword in FLAGS and PERMANENTFLAGS before the FETCH that shows it', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT R');
    const out = await c.cmd('STORE 1 +FLAGS ($Project)');
    const flags = out.indexOf('* FLAGS (');
    const perm = out.indexOf('[PERMANENTFLAGS (');
    const fetch = out.indexOf('FETCH (');
    assert.ok(flags !== -1 && perm !== -1 && fetch !== -1 && flags < fetch && perm < fetch, out);
    assert.match(out, /\* FLAGS \([^)]*\$Project/);
    assert.match(out, /PERMANENTFLAGS \([^)]*\$Project[^)]*\\\*\)/);
    // A second session selecting later gets it from SELECT.
    const d = await signedIn(r);
    assert.match(await d.cmd('SELECT R'), /\* FLAGS \([^)]*\$Project/);
    c.close();
    d.close();
  });

  it('sends no EXPUNGE during SEARCH, FETCH or STORE, and does after NOOP', async () => {
    await r.store.createMailbox(r.accounts.bob!, 'E');
    for (let i = 0; i < 3; i++) await put(r, 'bob', 'E', sample(`e${i}`));
    const watcher = await signedIn(r);
    const worker = await signedIn(r);
    await watcher.cmd('SELECT E');
    await worker.cmd('SELECT E');
    await worker.cmd('STORE 2 +FLAGS.SILENT (\\Deleted)');
    assert.match(await worker.cmd('EXPUNGE'), /\* 2 EXPUNGE/);
    for (const cmd of [
      'SEARCH ALL',
      'FETCH 1:* (FLAGS)',
      'UID FETCH 1:* (FLAGS)',
      'STORE 1 +FLAGS (\\Flagged)',
      'UID SEARCH ALL',
    ]) {
      const out = await watcher.cmd(cmd);
      assert.doesNotMatch(out, /EXPUNGE/, cmd);
    }
    // The message is still numbered 2 for the watcher until it is told.
    assert.equal(searchResult(await watcher.cmd('SEARCH ALL')), '1 3');
    assert.match(await watcher.cmd('NOOP'), /\* 2 EXPUNGE/);
    assert.equal(searchResult(await watcher.cmd('SEARCH ALL')), '1 2');
    watcher.close();
    worker.close();
  });

  it('announces an APPEND to the selected mailbox before the tagged OK, so the APPENDUID can be fetched at once', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT INBOX');
    const msg = sample('appended');
    await c.send(`a1 APPEND INBOX {${msg.length}}\r\n`, /\+ /);
    const out = await c.send(Buffer.concat([msg, Buffer.from('\r\n')]), /a1 (OK|NO|BAD)[^\r\n]*\r\n/);
    assert.match(out, /\* 1 EXISTS\r\n[\s\S]*a1 OK \[APPENDUID \d+ 1\]/);
    assert.match(
      await c.cmd('UID FETCH 1 (UID RFC822.SIZE)'),
      new RegExp(`UID 1 RFC822\\.SIZE ${msg.length}`),
    );
    c.close();
  });

  it('lists unsubscribed parents of subscribed names as \\Noselect in LSUB with %', async () => {
    await r.store.createMailbox(r.accounts.bob!, 'P/Q');
    const pq = (await r.store.getMailbox(r.accounts.bob!, 'P/Q'))!;
    await r.store.setSubscribed(pq.id, true);
    const c = await signedIn(r);
    assert.match(await c.cmd('LSUB "" "%"'), /\* LSUB \(\\Noselect\) "\/" "?P"?\r\n/);
    assert.match(await c.cmd('LSUB "" "P/%"'), /\* LSUB \(\) "\/" "?P\/Q"?\r\n/);
    c.close();
  });

  it('answers STATUS (APPENDLIMIT SIZE), SEARCH MODSEQ with its MODSEQ, and GETQUOTAROOT without a made-up limit', async () => {
    const c = await signedIn(r);
    assert.match(
      await c.cmd('STATUS INBOX (APPENDLIMIT SIZE)'),
      /\* STATUS INBOX \(APPENDLIMIT 1048576 SIZE \d+\)/,
    );
    await c.cmd('SELECT INBOX');
    assert.match(await c.cmd('SEARCH MODSEQ 1'), /\* SEARCH 1 \(MODSEQ \d+\)/);
    const q = await c.cmd('GETQUOTAROOT INBOX');
    assert.match(q, /\* QUOTAROOT INBOX\r\n/);
    assert.doesNotMatch(q, /STORAGE/);
    assert.match(await c.cmd('GETQUOTA ""'), /NO \[NONEXISTENT\]/);
    c.close();
  });

  it("sends MOVE's COPYUID in an untagged OK before the EXPUNGEs (RFC 6851 §4.3)", async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT R');
    const out = await c.cmd('MOVE 1 Archive');
    assert.match(out, /^\* OK \[COPYUID \d+ 1 \d+\][^\r\n]*\r\n\* 1 EXPUNGE\r\nt3 OK/);
    c.close();
  });

  it('offers capabilities only where they work: no STARTTLS after TLS or sign-in, no AUTH= with LOGINDISABLED, nothing non-standard', async () => {
    const plain = await RawImap.connect(r.port, false);
    const pre = await plain.cmd('CAPABILITY');
    assert.match(pre, /STARTTLS/);
    assert.match(pre, /LOGINDISABLED/);
    assert.doesNotMatch(pre, /AUTH=/);
    await plain.starttls();
    const tls = await plain.cmd('CAPABILITY');
    assert.doesNotMatch(tls, /STARTTLS|LOGINDISABLED/);
    assert.match(tls, /AUTH=PLAIN/);
    plain.close();
    const open = await rig({ allowPlaintext: true });
    try {
      const c = await RawImap.connect(open.port, false);
      const out = await c.cmd(login);
      assert.doesNotMatch(out, /STARTTLS/);
      assert.doesNotMatch(await c.cmd('CAPABILITY'), /STARTTLS|AUTH=|XLIST|CLIENTTOKEN/);
      c.close();
    } finally {
      await open.close();
    }
  });

  it('refuses mailbox names starting with "/" or "~"', async () => {
    const c = await signedIn(r);
    assert.match(await c.cmd('CREATE "/etc"'), /NO \[CANNOT\]/);
    assert.match(await c.cmd('CREATE "~root"'), /NO \[CANNOT\]/);
    assert.match(await c.cmd('RENAME R "~R"'), /NO \[CANNOT\]/);
    c.close();
  });
});

describe('IMAP engine: FETCH data and SEARCH as RFC 3501 defines them', () => {
  let r: Rig;
  const forwarded = Buffer.from(
    'From: a@b.org\r\nSubject: fwd\r\nContent-Type: message/rfc822\r\n\r\n' +
      'From: inner@x.org\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\nfirst\r\n--z\r\n\r\nsecond\r\n--z--\r\n',
  );
  before(async () => {
    r = await rig();
    await put(r, 'bob', 'INBOX', forwarded);
    await put(
      r,
      'bob',
      'INBOX',
      Buffer.from(
        'From: <user (comment)@ (comment) domain.org>\r\nTo: <@route1,@route2:user@domain.org>\r\nCc: group2: (foo) ;\r\n' +
          'Date: Mon, 23 Nov 2026 23:30:00 -0500\r\nSubject: late\r\n\r\nbody\r\n',
      ),
    );
  });
  after(() => r.close());

  it('numbers the parts of a message/rfc822 body: BODY[1] is the inner message, 1.1 and 1.HEADER its parts', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT INBOX');
    assert.match(await c.cmd('FETCH 1 BODY.PEEK[1]'), /BODY\[1\] \{\d+\}\r\nFrom: inner@x\.org\r\n/);
    assert.match(await c.cmd('FETCH 1 BODY.PEEK[1.1]'), /BODY\[1\.1\] \{5\}\r\nfirst\)/);
    assert.match(await c.cmd('FETCH 1 BODY.PEEK[1.2]'), /BODY\[1\.2\] \{6\}\r\nsecond\)/);
    assert.match(
      await c.cmd('FETCH 1 BODY.PEEK[1.HEADER]'),
      /BODY\[1\.HEADER\] \{\d+\}\r\nFrom: inner@x\.org\r\nSubject: inner\r\n/,
    );
    c.close();
  });

  it('writes groups and source routes into ENVELOPE as RFC 3501 §7.4.2 says', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT INBOX');
    const env = await c.cmd('FETCH 2 ENVELOPE');
    assert.match(env, /\(\(NIL NIL "user" "domain\.org"\)\)/);
    assert.match(env, /\(\(NIL "@route1,@route2" "user" "domain\.org"\)\)/);
    assert.match(env, /\(\(NIL NIL "group2" NIL\)\(NIL NIL NIL NIL\)\)/);
    c.close();
  });

  it('compares SENT* with the date as written and finds an address written with comments', async () => {
    const c = await signedIn(r);
    await c.cmd('SELECT INBOX');
    // 23:30 -0500 on the 23rd is the 24th in UTC, but was sent on the 23rd.
    assert.equal(searchResult(await c.cmd('SEARCH SENTON 23-Nov-2026')), '2');
    assert.equal(searchResult(await c.cmd('SEARCH SENTSINCE 24-Nov-2026 SUBJECT late')), '');
    assert.equal(searchResult(await c.cmd('SEARCH SENTBEFORE 24-Nov-2026')), '2');
    assert.equal(searchResult(await c.cmd('SEARCH FROM user@domain.org')), '2');
    c.close();
  });
});

describe('IMAP engine: STARTTLS and COMPRESS', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('never answers a command sent in the same packet as STARTTLS', async () => {
    const c = await RawImap.connect(r.port, false);
    c.socket.write('a STARTTLS\r\nb ID NIL\r\n');
    const out = await c.send('', /a OK[^\r\n]*\r\n/);
    assert.doesNotMatch(out, /^b /m);
    const tls = await import('node:tls');
    c.socket.removeAllListeners('data');
    const secure = tls.connect({ socket: c.socket, rejectUnauthorized: false });
    let text = '';
    secure.on('data', (d) => {
      text += d.toString();
    });
    await new Promise((resolve) => secure.once('secureConnect', resolve));
    secure.write('c NOOP\r\n');
    await eventually(() => /c OK/.test(text));
    assert.doesNotMatch(text, /^b /m);
    secure.destroy();
  });

  it('answers LOGOUT after COMPRESS with BYE and OK through the compressor', async () => {
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
    deflate.write('z LOGOUT\r\n');
    deflate.flush();
    await eventually(() => /z OK/.test(text));
    assert.match(text, /\* BYE[^\r\n]*\r\nz OK/);
    raw.close();
  });
});

describe('IMAP engine: an error inside a command ends at most that command', () => {
  it('answers NO [SERVERBUG] when the store fails, logs it with the session id, and the session and others go on', async () => {
    let fail = false;
    const errors: string[] = [];
    const wrap = (s: MailStore): MailStore =>
      new Proxy(s, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver);
          if (prop === 'listMailboxes' && typeof v === 'function')
            return (...args: unknown[]) => {
              if (fail) throw new TypeError('simulated bug in the store');
              return v.apply(target, args);
            };
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
    const r = await rig({ wrapStore: wrap, onError: (_err, context) => errors.push(context) });
    try {
      const c = await signedIn(r);
      const other = await signedIn(r, 'ann');
      fail = true;
      assert.match(await c.cmd('LIST "" "*"'), /t2 NO \[SERVERBUG\]/);
      assert.match(errors[0] ?? '', /imap session \S+ \(LIST/);
      fail = false;
      assert.match(await c.cmd('LIST "" "INBOX"'), /\* LIST .*INBOX\r\nt3 OK/);
      assert.match(await other.cmd('NOOP'), /OK/);
      c.close();
      other.close();
      const client = await r.client();
      assert.equal(await count(client, 'INBOX'), 0);
    } finally {
      await r.close();
    }
  });
});

describe('IMAP engine: a message whose stored structure is damaged', () => {
  it('still lists, fetches and searches the mailbox: the structure is read again from the message, with one log line', async () => {
    const lines: string[] = [];
    const r = await rig({
      log: (_level, message, fields) => lines.push(`${message} ${JSON.stringify(fields)}`),
    });
    try {
      await put(r, 'bob', 'INBOX', sample('healthy'));
      const bad = await put(r, 'bob', 'INBOX', sample('damaged one'));
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(r.dbPath);
      db.prepare("UPDATE messages SET structure = '{not json' WHERE id = ?").run(Number(bad.id));
      db.close();
      const c = await signedIn(r);
      await c.cmd('SELECT INBOX');
      assert.match(await c.cmd('FETCH 1:* (FLAGS)'), /\* 2 FETCH \(FLAGS[^\r]*\r\nt3 OK/);
      const env = await c.cmd('FETCH 1:* (ENVELOPE BODYSTRUCTURE)');
      assert.match(env, /\* 2 FETCH \(ENVELOPE \([^)]*"damaged one"/);
      assert.match(env, /t4 OK/);
      assert.equal(searchResult(await c.cmd('SEARCH SUBJECT damaged')), '2');
      assert.equal(lines.filter((l) => l.startsWith('stored message structure damaged')).length, 1);
      c.close();
    } finally {
      await r.close();
    }
  });
});

describe('IMAP engine: ENVELOPE and BODYSTRUCTURE from the process cache', () => {
  /** A rig whose store counts the reads of whole messages (rows with their structure). */
  async function counted(fetchCacheBytes: number) {
    const reads = { n: 0, bytes: 0 };
    const r = await rig({
      fetchCacheBytes,
      wrapStore: (s) =>
        new Proxy(s, {
          get(target, key, receiver) {
            const v = Reflect.get(target, key, receiver);
            if (key === 'blobs') {
              const blobs = v as MailStore['blobs'];
              return new Proxy(blobs, {
                get(b, k) {
                  const f = Reflect.get(b, k);
                  if (k !== 'get') return typeof f === 'function' ? f.bind(b) : f;
                  return (id: string) => {
                    reads.bytes++;
                    return blobs.get(id);
                  };
                },
              });
            }
            if (key !== 'listMessages' && key !== 'getMessage')
              return typeof v === 'function' ? v.bind(target) : v;
            return (...args: unknown[]) => {
              reads.n++;
              return (v as (...a: unknown[]) => unknown).apply(target, args);
            };
          },
        }),
    });
    for (let i = 1; i <= 5; i++) await put(r, 'bob', 'INBOX', sample(`cached ${i}`));
    return { r, reads };
  }

  it('answers a repeated FETCH without reading a structure, and a cache that holds nothing gives the same answer', async () => {
    const big = await counted(1024 * 1024);
    const tiny = await counted(1);
    try {
      const answers: string[] = [];
      for (const { r, reads } of [big, tiny]) {
        const c = await signedIn(r);
        await c.cmd('SELECT INBOX');
        const first = await c.cmd('FETCH 1:* (UID ENVELOPE BODYSTRUCTURE BODY)');
        const before = reads.n;
        const second = await c.cmd('FETCH 1:* (UID ENVELOPE BODYSTRUCTURE BODY)');
        assert.equal(second.replace(/^t\d+ /m, ''), first.replace(/^t\d+ /m, ''));
        assert.equal((first.match(/^\* \d FETCH \(UID \d ENVELOPE \(/gm) ?? []).length, 5);
        assert.match(first, /"cached 5"/);
        // With the texts cached the rows of the cache are enough; with none cached every FETCH reads the messages.
        if (r === big.r) assert.equal(reads.n, before);
        else assert.ok(reads.n > before);
        // The envelopes a FETCH had at hand answer SEARCH SUBJECT too, without reading the messages again.
        const beforeSearch = reads.n;
        assert.equal(searchResult(await c.cmd('SEARCH SUBJECT "cached 3"')), '3');
        if (r === big.r) assert.equal(reads.n, beforeSearch);
        answers.push(second.replace(/^t\d+ /m, ''));
        c.close();
      }
      assert.equal(answers[0], answers[1]);
    } finally {
      await big.r.close();
      await tiny.r.close();
    }
  });

  it('answers header fields a client lists messages with from the cached header, byte for byte as from the message', async () => {
    const big = await counted(1024 * 1024);
    const tiny = await counted(1);
    try {
      const answers: string[] = [];
      const query =
        'FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[HEADER.FIELDS.NOT (Subject)] BODY.PEEK[HEADER])';
      for (const { r, reads } of [big, tiny]) {
        const c = await signedIn(r);
        await c.cmd('SELECT INBOX');
        const first = (await c.cmd(query)).replace(/^t\d+ /m, '');
        const before = reads.bytes;
        const second = (await c.cmd(query)).replace(/^t\d+ /m, '');
        assert.equal(second, first);
        assert.match(
          first,
          /\* 1 FETCH \(UID 1 BODY\[HEADER\.FIELDS \(Subject From\)\] \{50\}\r\nFrom: Ann <ann@example\.org>\r\nSubject: cached 1\r\n\r\n BODY\[HEADER\.FIELDS\.NOT \(Subject\)\] \{132\}\r\nFrom: /,
        );
        if (r === big.r) assert.equal(reads.bytes, before);
        else assert.equal(reads.bytes, before + 5);
        // The whole message is still read from the bytes.
        assert.match(await c.cmd('FETCH 2 (BODY.PEEK[])'), /cached 2/);
        answers.push(second);
        c.close();
      }
      assert.equal(answers[0], answers[1]);
    } finally {
      await big.r.close();
      await tiny.r.close();
    }
  });
});
