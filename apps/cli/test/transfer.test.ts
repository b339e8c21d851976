// mailwerk import / export with the real binary: a Maildir written by hand with Dovecot's naming rules
// (Maildir++ folders, modified UTF-7 names, flags and keywords in the file names, dovecot-keywords, dates
// from the files, LF line ends), an mbox file (mboxrd quoting, Status: flags), idempotent runs, and an
// export that imports back to the same mailboxes.
import assert from 'node:assert/strict';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DovecotImap, dovecotImapMissing, startDovecotImap } from '../../../packages/mta/test/peers.ts';
import { contents, type Sandbox, sandbox } from './helpers.ts';

const msg = (subject: string, body = 'Hello.\n') =>
  `From: Ann <ann@example.net>\nTo: bob@example.org\nSubject: ${subject}\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <${subject.replace(/\W/g, '')}@example.net>\n\n${body}`;

describe('mailwerk import and export', () => {
  let sb: Sandbox;
  before(async () => {
    sb = await sandbox();
    assert.equal((await sb.run(['init', '--data-dir', 'data', '--hostname', 'mail.example.org'])).code, 0);
    await sb.run(['domain', 'add', 'example.org']);
    for (const u of ['bob', 'carl', 'dora'])
      await sb.run(['user', 'add', `${u}@example.org`], 'a password\n');
  });
  after(() => sb.cleanup());

  it('imports a Dovecot Maildir with its folders, flags, keywords and dates, once however often it runs', async () => {
    const md = join(sb.dir, 'Maildir');
    const put = async (folder: string, sub: 'cur' | 'new', name: string, text: string, when: number) => {
      const dir = join(md, folder, sub);
      await mkdir(dir, { recursive: true });
      for (const s of ['cur', 'new', 'tmp']) await mkdir(join(md, folder, s), { recursive: true });
      await writeFile(join(dir, name), text);
      await utimes(join(dir, name), when, when);
    };
    await put('', 'cur', '1700000001.M1P1.old:2,S', msg('seen one'), 1_700_000_001);
    await put('', 'cur', '1700000002.M2P1.old:2,FRab', msg('flagged answered with keywords'), 1_700_000_002);
    await put('', 'new', '1700000003.M3P1.old', msg('new one'), 1_700_000_003);
    await writeFile(join(md, 'dovecot-keywords'), '0 $Work\n1 Later\n');
    await put('.Work.Projects', 'cur', '1700000004.M4P1.old:2,T', msg('in a subfolder'), 1_700_000_004);
    await put('.Entw&APw-rfe', 'cur', '1700000005.M5P1.old:2,D', msg('a draft'), 1_700_000_005);
    const first = await sb.run(['import', 'bob@example.org', md]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      /^imported into bob@example\.org: 5 messages \(5 read, [\d.]+ MiB\); 0 there already\n$/,
    );
    // Not a terminal here: plain progress lines, one per folder at least.
    assert.match(first.stderr, /^importing INBOX: \d+ messages so far/m);
    const again = await sb.run(['import', 'bob@example.org', md]);
    assert.match(again.stdout, /: 0 messages \(5 read, [\d.]+ MiB\); 5 there already\n$/);
    const got = await contents(sb, 'bob@example.org');
    assert.deepEqual(
      got.map((m) => [m.folder, m.subject, m.flags, m.date]),
      [
        ['Entwürfe', 'a draft', '\\Draft', 1_700_000_005],
        ['INBOX', 'flagged answered with keywords', '$Work Later \\Answered \\Flagged', 1_700_000_002],
        ['INBOX', 'new one', '', 1_700_000_003],
        ['INBOX', 'seen one', '\\Seen', 1_700_000_001],
        ['Work/Projects', 'in a subfolder', '\\Deleted', 1_700_000_004],
      ],
    );
    // Stored with CRLF line ends (what IMAP serves), the text unchanged.
    assert.ok(got.every((m) => !/[^\r]\n/.test(m.raw)));
  });

  it('imports an mbox file, unquoting mboxrd ">From " lines and taking Status: flags, once', async () => {
    const mbox = join(sb.dir, 'Archive.mbox');
    await writeFile(
      mbox,
      [
        'From ann@example.net Mon Nov 23 10:00:00 2026',
        'Subject: first',
        'Status: RO',
        '',
        'body one',
        '>From the quoted line',
        '>>From twice quoted',
        '',
        'From ann@example.net Tue Nov 24 10:00:00 2026',
        'Subject: second',
        'X-Status: AF',
        '',
        'body two',
        '',
      ].join('\n'),
    );
    const r = await sb.run(['import', 'carl@example.org', mbox]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: 2 messages \(2 read/);
    assert.match(
      (await sb.run(['import', 'carl@example.org', mbox])).stdout,
      /: 0 messages \(2 read.*2 there already/,
    );
    const got = (await contents(sb, 'carl@example.org')).filter((m) => m.folder === 'Archive');
    assert.deepEqual(
      got.map((m) => [m.subject, m.flags]),
      [
        ['first', '\\Seen'],
        ['second', '\\Answered \\Flagged'],
      ],
    );
    assert.match(got[0]!.raw, /\r\nbody one\r\nFrom the quoted line\r\n>From twice quoted\r\n$/);
    assert.equal(got[0]!.date, Math.floor(Date.parse('Mon Nov 23 10:00:00 2026') / 1000));
  });

  it('exports to a Maildir that imports back to the same mailboxes, and a second export adds nothing', async () => {
    const out = join(sb.dir, 'export');
    const r = await sb.run(['export', 'bob@example.org', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^exported bob@example\.org to .*: 5 messages/);
    assert.match(
      (await sb.run(['export', 'bob@example.org', out])).stdout,
      /: 0 messages \(5 read.*5 there already/,
    );
    assert.equal((await sb.run(['import', 'dora@example.org', out])).code, 0);
    const strip = (list: Awaited<ReturnType<typeof contents>>) =>
      list
        .filter((m) => m.subject)
        .map(({ folder, subject, flags, date, raw }) => ({ folder, subject, flags, date, raw }));
    assert.deepEqual(
      strip(await contents(sb, 'dora@example.org')),
      strip(await contents(sb, 'bob@example.org')),
    );
  });

  it('refuses what it cannot read, with one line and a non-zero exit', async () => {
    const missing = await sb.run(['import', 'bob@example.org', join(sb.dir, 'nothing')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^mailwerk: .*nothing does not exist\n$/);
    const junk = join(sb.dir, 'junk.txt');
    await writeFile(junk, 'not a mailbox\n');
    const notMbox = await sb.run(['import', 'bob@example.org', junk]);
    assert.equal(notMbox.code, 1);
    assert.match(notMbox.stderr, /neither a Maildir directory nor an mbox file/);
    const nobody = await sb.run(['export', 'nobody@example.org', join(sb.dir, 'x')]);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /^mailwerk: no such user: nobody@example\.org\n$/);
  });
});

describe('mailwerk import from IMAP (a private Dovecot on loopback)', {
  skip: dovecotImapMissing() ?? false,
}, () => {
  let sb: Sandbox;
  let dovecot: DovecotImap;
  const write = async (folder: string, name: string, text: string, when: number) => {
    const dir = join(dovecot.maildir('alice'), folder);
    for (const s of ['cur', 'new', 'tmp']) await mkdir(join(dir, s), { recursive: true });
    await writeFile(join(dir, 'cur', name), text);
    await utimes(join(dir, 'cur', name), when, when);
  };
  /** What Dovecot serves: folder (ours), flags, date, bytes; read with imapflow. */
  async function served() {
    const { ImapFlow } = await import('imapflow');
    const c = new ImapFlow({
      host: '127.0.0.1',
      port: dovecot.port,
      secure: false,
      auth: { user: 'alice', pass: 'old secret' },
      logger: false,
    });
    await c.connect();
    const out: Array<{ folder: string; subject: string; flags: string; date: number; raw: string }> = [];
    try {
      for (const box of await c.list()) {
        if (box.flags.has('\\Noselect') || box.flags.has('\\NonExistent')) continue;
        const lock = await c.getMailboxLock(box.path, { readOnly: true });
        try {
          if (c.mailbox === false || !c.mailbox.exists) continue;
          for await (const m of c.fetch('1:*', {
            flags: true,
            internalDate: true,
            source: true,
            envelope: true,
          }))
            out.push({
              folder: box.path,
              subject: m.envelope?.subject ?? '',
              flags: [...(m.flags ?? [])]
                .filter((f) => f !== '\\Recent')
                .sort()
                .join(' '),
              date: Math.floor(new Date(m.internalDate!).getTime() / 1000),
              raw: m.source!.toString('latin1'),
            });
        } finally {
          lock.release();
        }
      }
    } finally {
      await c.logout();
    }
    return out.sort((a, b) => `${a.folder} ${a.subject}`.localeCompare(`${b.folder} ${b.subject}`));
  }

  before(async () => {
    sb = await sandbox();
    assert.equal((await sb.run(['init', '--data-dir', 'data', '--hostname', 'mail.example.org'])).code, 0);
    await sb.run(['domain', 'add', 'example.org']);
    for (const u of ['erin', 'fred']) await sb.run(['user', 'add', `${u}@example.org`], 'a password\n');
    dovecot = await startDovecotImap({ alice: 'old secret' });
    await write('', '1700000001.M1P1.old:2,S', msg('seen one'), 1_700_000_001);
    await write('', '1700000002.M2P1.old:2,FRab', msg('flagged answered with keywords'), 1_700_000_002);
    await writeFile(join(dovecot.maildir('alice'), 'dovecot-keywords'), '0 $Work\n1 Later\n');
    await write('.Sent', '1700000003.M3P1.old:2,S', msg('sent by alice'), 1_700_000_003);
    await write('.Work.Projects', '1700000004.M4P1.old:2,', msg('in a subfolder'), 1_700_000_004);
    await write('.Trash', '1700000005.M5P1.old:2,ST', msg('thrown away'), 1_700_000_005);
    dovecot.chown();
  });
  after(async () => {
    await dovecot?.stop();
    await sb?.cleanup();
  });
  const url = () => `imap://127.0.0.1:${dovecot.port}`;

  it('copies every folder, each message byte for byte with flags, keywords and date; again only what is new', async () => {
    const dry = await sb.run(
      ['import', 'erin@example.org', url(), '--user', 'alice', '--no-tls', '--dry-run'],
      'old secret\n',
    );
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^INBOX -> INBOX: 2 to copy$/m);
    assert.match(dry.stdout, /^Work\/Projects -> Work\/Projects: 1 to copy$/m);
    assert.deepEqual(await contents(sb, 'erin@example.org'), [], 'a dry run copies nothing');

    const first = await sb.run(
      ['import', 'erin@example.org', url(), '--user', 'alice', '--no-tls'],
      'old secret\n',
    );
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      /^imported into erin@example\.org: 5 messages \(5 read, [\d.]+ MiB\); 0 there already\n$/,
    );
    // Progress per folder, of what the folder holds (stderr is not a terminal here: a line each).
    assert.match(first.stderr, /^importing INBOX: 0\/2 messages, 0\.0 MiB of 0\.0 MiB; 0 messages so far/m);
    assert.match(first.stderr, /^importing INBOX: 2\/2 messages/m);
    assert.match(
      first.stderr,
      /^importing Work\/Projects: 1\/1 messages, [\d.]+ MiB of [\d.]+ MiB; \d messages so far/m,
    );
    const remote = await served();
    assert.equal(remote.length, 5);
    assert.deepEqual(
      await contents(sb, 'erin@example.org'),
      remote,
      'the same folders, flags, dates and bytes',
    );

    const again = await sb.run(
      ['import', 'erin@example.org', url(), '--user', 'alice', '--no-tls'],
      'old secret\n',
    );
    assert.match(again.stdout, /: 0 messages \(5 read, [\d.]+ MiB\); 5 there already\n$/);
    assert.match(again.stderr, /^importing INBOX: 2\/2 messages/m);
    await write('', '1700000006.M6P1.old:2,', msg('arrived later'), 1_700_000_006);
    dovecot.chown();
    const third = await sb.run(
      ['import', 'erin@example.org', url(), '--user', 'alice', '--no-tls'],
      'old secret\n',
    );
    assert.match(third.stdout, /: 1 messages \(6 read, [\d.]+ MiB\); 5 there already\n$/);
    assert.deepEqual(await contents(sb, 'erin@example.org'), await served());
  });

  it('maps special-use folders onto ours, and --into puts everything under one folder', async () => {
    const r = await sb.run(
      ['import', 'fred@example.org', url(), '--user', 'alice', '--no-tls', '--into', 'Old'],
      'old secret\n',
    );
    assert.equal(r.code, 0, r.stderr);
    const folders = [...new Set((await contents(sb, 'fred@example.org')).map((m) => m.folder))].sort();
    assert.deepEqual(folders, ['Old', 'Old/Sent', 'Old/Trash', 'Old/Work/Projects']);
  });

  it('refuses a wrong password and a missing --user with one line and a non-zero exit, copying nothing', async () => {
    const wrong = await sb.run(
      ['import', 'fred@example.org', url(), '--user', 'alice', '--no-tls'],
      'not it\n',
    );
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^mailwerk: 127\.0\.0\.1:\d+: the sign-in as alice was refused\n$/);
    const noUser = await sb.run(['import', 'fred@example.org', url()], 'x\n');
    assert.equal(noUser.code, 1);
    assert.match(noUser.stderr, /--user U is needed/);
    // Without --no-tls, a server that offers no STARTTLS is not given the password.
    const plain = await sb.run(['import', 'fred@example.org', url(), '--user', 'alice'], 'old secret\n');
    assert.equal(plain.code, 1);
    assert.doesNotMatch(plain.stderr, /sign-in/);
  });
});
