// The MRA with the real binary against a private Dovecot (dovecot-imapd, dovecot-pop3d) on loopback:
// `mailwerk fetch add` and `fetch run` over IMAP and over POP3 with keep and delete, each message once
// however often it runs, a refused password stopping the account, and a server that closes in the
// middle of a message (a bare POP3 server of the test's own) leaving nothing half stored.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DovecotImap, dovecotImapMissing, startDovecotImap } from '../../../packages/mta/test/peers.ts';
import { contents, freePort, type Sandbox, sandbox } from './helpers.ts';

const msg = (subject: string) =>
  `Return-Path: <ann@example.net>\nFrom: Ann <ann@example.net>\nTo: alice@old.example\nSubject: ${subject}\nMessage-ID: <${subject.replace(/\W/g, '')}@example.net>\n\nHello.\n`;

describe('mailwerk fetch (a private Dovecot on loopback)', { skip: dovecotImapMissing() ?? false }, () => {
  let sb: Sandbox;
  let dovecot: DovecotImap;
  let n = 0;
  /** Puts a message into a remote user's INBOX, as the remote server's own delivery would. */
  const deliverRemote = async (user: string, subject: string) => {
    const dir = dovecot.maildir(user);
    for (const s of ['cur', 'new', 'tmp']) await mkdir(join(dir, s), { recursive: true });
    await writeFile(join(dir, 'new', `17000000${++n}.M${n}P1.old`), msg(subject));
    dovecot.chown();
  };
  const remoteCount = (user: string) =>
    ['new', 'cur'].reduce((k, s) => {
      const d = join(dovecot.maildir(user), s);
      return k + (existsSync(d) ? readdirSync(d).length : 0);
    }, 0);
  const subjects = async (user: string) =>
    (await contents(sb, user)).map((m) => `${m.folder}:${m.subject}`).sort();
  const add = async (args: string[], password: string) => {
    const r = await sb.run(['fetch', 'add', ...args], `${password}\n`);
    assert.equal(r.code, 0, r.stderr);
    return /\(id (\S+)\)/.exec(r.stdout)![1]!;
  };

  before(async () => {
    sb = await sandbox();
    assert.equal((await sb.run(['init', '--data-dir', 'data', '--hostname', 'mail.example.org'])).code, 0);
    await sb.run(['domain', 'add', 'example.org']);
    for (const u of ['erin', 'fred', 'gus', 'hal', 'ida'])
      await sb.run(['user', 'add', `${u}@example.org`], 'a password\n');
    dovecot = await startDovecotImap({ alice: 'alice pw', bob: 'bob pw', carl: 'carl pw', dan: 'dan pw' });
  });
  after(async () => {
    await dovecot?.stop();
    await sb?.cleanup();
  });

  it('fetches over IMAP each message once, with a Received: line naming the source; the password is kept encrypted', async () => {
    await deliverRemote('alice', 'first');
    await deliverRemote('alice', 'second');
    const id = await add(
      ['erin@example.org', `127.0.0.1:${dovecot.port}`, '--imap', '--no-tls', '--user', 'alice'],
      'alice pw',
    );
    const run = await sb.run(['fetch', 'run', 'erin@example.org']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^imap:\/\/alice@127\.0\.0\.1:\d+: 2 fetched$/m);
    assert.deepEqual(await subjects('erin@example.org'), ['INBOX:first', 'INBOX:second']);
    const raw = (await contents(sb, 'erin@example.org'))[0]!.raw;
    assert.match(
      raw,
      /^Return-Path: <ann@example\.net>\r\nDelivered-To: erin@example\.org\r\nReceived: from 127\.0\.0\.1 by mail\.example\.org with IMAP \(Mailwerk fetch of alice\) for <erin@example\.org>;/,
    );
    assert.equal(
      raw.match(/^Return-Path:/gm)?.length,
      1,
      'the remote Return-Path became the envelope sender',
    );
    assert.match(
      (await sb.run(['fetch', 'run', 'erin@example.org', id])).stdout,
      /: 0 fetched$/m,
      'nothing twice',
    );
    await deliverRemote('alice', 'third');
    assert.match((await sb.run(['fetch', 'run', 'erin@example.org'])).stdout, /: 1 fetched$/m);
    assert.deepEqual(await subjects('erin@example.org'), ['INBOX:first', 'INBOX:second', 'INBOX:third']);
    assert.equal(remoteCount('alice'), 3, '--keep is the default');
    // Listed with its state, never with the password; the store holds only ciphertext.
    const [listed] = await sb.json<Array<Record<string, unknown>>>(['fetch', 'list', 'erin@example.org']);
    assert.equal(listed!.host, '127.0.0.1');
    assert.equal(listed!.secret, undefined);
    assert.ok(listed!.lastFetchAt);
    assert.doesNotMatch((await sb.run(['fetch', 'show', 'erin@example.org', id])).stdout, /alice pw|secret/);
    const { openSqliteStore } = await import('@mailwerk/store-sqlite');
    const store = openSqliteStore({ path: join(sb.dir, 'data', 'mailwerk.sqlite'), blobs: 'sqlite' });
    try {
      const r = (await store.getRemoteAccount(id))!;
      assert.ok(r.secret.length > 20 && !r.secret.includes('alice pw'));
    } finally {
      await store.close();
    }
  });

  it('fetches over POP3, keeping the mail there or deleting it once stored', async () => {
    await deliverRemote('bob', 'pop one');
    await deliverRemote('bob', 'pop two');
    await add(
      ['fred@example.org', `127.0.0.1:${dovecot.pop3Port}`, '--pop3', '--no-tls', '--user', 'bob'],
      'bob pw',
    );
    assert.match(
      (await sb.run(['fetch', 'run', 'fred@example.org'])).stdout,
      /^pop3:\/\/bob@127\.0\.0\.1:\d+: 2 fetched$/m,
    );
    assert.match((await sb.run(['fetch', 'run', 'fred@example.org'])).stdout, /: 0 fetched$/m);
    assert.deepEqual(await subjects('fred@example.org'), ['INBOX:pop one', 'INBOX:pop two']);
    assert.equal(remoteCount('bob'), 2);

    await deliverRemote('carl', 'gone one');
    await deliverRemote('carl', 'gone two');
    await add(
      [
        'gus@example.org',
        `127.0.0.1:${dovecot.pop3Port}`,
        '--pop3',
        '--no-tls',
        '--user',
        'carl',
        '--delete',
      ],
      'carl pw',
    );
    assert.match((await sb.run(['fetch', 'run', 'gus@example.org'])).stdout, /: 2 fetched$/m);
    assert.deepEqual(await subjects('gus@example.org'), ['INBOX:gone one', 'INBOX:gone two']);
    assert.equal(remoteCount('carl'), 0, 'deleted at the server after they were stored');
  });

  it('stops an account whose password the server refuses, with the reason, and exits 1', async () => {
    const id = await add(
      ['hal@example.org', `127.0.0.1:${dovecot.port}`, '--imap', '--no-tls', '--user', 'alice'],
      'wrong',
    );
    const r = await sb.run(['fetch', 'run', 'hal@example.org']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mailwerk: imap:\/\/alice@127\.0\.0\.1:\d+: the server refused the password/);
    const shown = await sb.json<{ stopped: boolean; errors: number }>([
      'fetch',
      'show',
      'hal@example.org',
      id,
    ]);
    assert.equal(shown.stopped, true);
    assert.equal(shown.errors, 1);
    assert.match((await sb.run(['fetch', 'list'])).stdout, /stopped: the server refused the password/);
    assert.deepEqual(await contents(sb, 'hal@example.org'), []);
  });

  it('stores nothing of a message the server breaks off, says why, and takes it whole at the next run', async () => {
    // A POP3 server that sends half a message and hangs up, the first time; the whole message after.
    let retrs = 0;
    const broken: Server = createServer((s) => {
      s.write('+OK hello\r\n');
      s.on('data', (d) => {
        const cmd = d.toString().trim().split(' ')[0]!.toUpperCase();
        if (cmd === 'UIDL') s.write('+OK\r\n1 abc\r\n.\r\n');
        else if (cmd === 'RETR' && ++retrs === 1) {
          s.write('+OK\r\nSubject: half\r\n\r\nthe first part of');
          s.destroy();
        } else if (cmd === 'RETR')
          s.write('+OK\r\nSubject: half\r\n\r\nthe first part of it, and the rest\r\n.\r\n');
        else if (cmd === 'QUIT') s.end('+OK\r\n');
        else s.write('+OK\r\n');
      });
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (broken.address() as { port: number }).port;
      await add(['ida@example.org', `127.0.0.1:${port}`, '--pop3', '--no-tls', '--user', 'x'], 'y');
      const r = await sb.run(['fetch', 'run', 'ida@example.org']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /closed the connection/);
      assert.deepEqual(await contents(sb, 'ida@example.org'), []);
      // Not stopped (only a refused password stops an account): the next run takes the message, once.
      const [shown] = await sb.json<Array<{ stopped: boolean; errors: number }>>([
        'fetch',
        'list',
        'ida@example.org',
      ]);
      assert.deepEqual([shown!.stopped, shown!.errors], [false, 1]);
      const again = await sb.run(['fetch', 'run', 'ida@example.org']);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(
        (await contents(sb, 'ida@example.org')).map((m) => m.subject),
        ['half'],
      );
    } finally {
      broken.close();
    }
  });

  it('mailwerk start fetches each remote account when its time comes (one lock per account), what arrives in an IMAP INBOX at once through IDLE, and not a stopped one', async () => {
    await deliverRemote('dan', 'for the service');
    await sb.run(['user', 'add', 'jo@example.org'], 'a password\n');
    await add(
      ['jo@example.org', `127.0.0.1:${dovecot.port}`, '--imap', '--no-tls', '--user', 'dan'],
      'dan pw',
    );
    const env: Record<string, string> = {
      MAILWERK_MTA__LISTEN: '127.0.0.1',
      MAILWERK_ACCESS__LISTEN: '127.0.0.1',
    };
    for (const k of [
      'MAILWERK_MTA__SMTP_PORT',
      'MAILWERK_MTA__SUBMISSION_PORT',
      'MAILWERK_MTA__SUBMISSIONS_PORT',
      'MAILWERK_ACCESS__IMAP_PORT',
      'MAILWERK_ACCESS__IMAPS_PORT',
      'MAILWERK_ACCESS__POP3_PORT',
      'MAILWERK_ACCESS__POP3S_PORT',
    ])
      env[k] = String(await freePort());
    const svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    try {
      const until = Date.now() + 20_000;
      // Stored, and the line that says so written (it follows the store's commit).
      while (
        !(await subjects('jo@example.org')).includes('INBOX:for the service') ||
        !/"msg":"fetched".*"messages":1/.test(svc.output())
      ) {
        assert.ok(Date.now() < until, `not fetched: ${svc.output().slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      // The interval is 5 minutes: a message put there now arrives through IDLE, within seconds.
      const sent = Date.now();
      await deliverRemote('dan', 'pushed by idle');
      while (!(await subjects('jo@example.org')).includes('INBOX:pushed by idle')) {
        assert.ok(
          Date.now() - sent < 20_000,
          `not pushed: ${svc
            .output()
            .split('\n')
            .filter((l) => l.includes('"component"') && !l.includes('listening'))
            .join('\n')}`,
        );
        await new Promise((r) => setTimeout(r, 200));
      }
      // hal's account was stopped by its refused password: the service leaves it alone.
      assert.doesNotMatch(svc.output(), /alice@127\.0\.0\.1.*refused/);
    } finally {
      await svc.kill();
    }
    // A restart between fetches: what came meanwhile arrives once, and nothing fetched before again.
    await deliverRemote('dan', 'while stopped');
    const again = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    try {
      const until = Date.now() + 20_000;
      while (!(await subjects('jo@example.org')).includes('INBOX:while stopped')) {
        assert.ok(Date.now() < until, `not fetched after the restart: ${again.output().slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(await subjects('jo@example.org'), [
        'INBOX:for the service',
        'INBOX:pushed by idle',
        'INBOX:while stopped',
      ]);
    } finally {
      await again.kill();
    }
  });

  it('fetch passwd sets the password kept for an account, and one stopped by a refused password fetches again', async () => {
    const [stopped] = await sb.json<Array<{ id: string; stopped: boolean }>>([
      'fetch',
      'list',
      'hal@example.org',
    ]);
    assert.equal(stopped!.stopped, true);
    const set = await sb.run(['fetch', 'passwd', 'hal@example.org', stopped!.id], 'alice pw\n');
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^password set for imap:\/\/alice@127\.0\.0\.1:\d+; fetching again$/m);
    const shown = await sb.json<{ stopped: boolean; errors: number; lastError: string | null }>([
      'fetch',
      'show',
      'hal@example.org',
      stopped!.id,
    ]);
    assert.deepEqual([shown.stopped, shown.errors, shown.lastError], [false, 0, null]);
    const run = await sb.run(['fetch', 'run', 'hal@example.org']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /: 3 fetched$/m);
  });

  it('says which key is missing when the password was kept with another fetch.key', async () => {
    const keyPath = join(sb.dir, 'data', 'fetch.key');
    const key = await readFile(keyPath);
    await writeFile(keyPath, randomBytes(32));
    try {
      const r = await sb.run(['fetch', 'run', 'erin@example.org']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /the password cannot be read with this host's fetch\.key/);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1);
    } finally {
      await writeFile(keyPath, key);
    }
    assert.equal(
      (await sb.run(['fetch', 'run', 'erin@example.org'])).code,
      0,
      'the right key reads it again',
    );
  });

  it('refuses what it cannot take, with one line and a non-zero exit', async () => {
    for (const [args, why] of [
      [['fetch', 'add', 'erin@example.org', 'h.example', '--user', 'u'], /--imap or --pop3/],
      [['fetch', 'add', 'erin@example.org', 'h.example', '--imap'], /--user U is needed/],
      [
        ['fetch', 'add', 'erin@example.org', 'h.example', '--imap', '--user', 'u', '--every', '5s'],
        /from 1m to 1d/,
      ],
      [
        ['fetch', 'add', 'erin@example.org', 'h.example:99999', '--imap', '--user', 'u'],
        /not a host\[:port\]/,
      ],
      [['fetch', 'run', 'nobody@example.org'], /no user|no such user/],
      [['fetch', 'show', 'erin@example.org', '424242'], /has no remote account 424242/],
    ] as const) {
      const r = await sb.run([...args], 'pw\n');
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, why);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1);
    }
  });
});
