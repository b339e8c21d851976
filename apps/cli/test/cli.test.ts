// Runs the real `mailwerk` binary (bin/mailwerk) against a temporary data directory.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, initialised, type Sandbox, sandbox } from './helpers.ts';

interface User {
  address: string;
  displayName: string;
  quotaBytes: number | null;
  usedBytes: number;
  disabled: boolean;
  mailboxes?: Array<{ name: string; specialUse: string | null }>;
  aliases?: string[];
}

const PASSWORD = 'correct horse battery\n';

describe('mailwerk CLI', () => {
  let sb: Sandbox;
  before(async () => {
    sb = await initialised();
  });
  after(() => sb.cleanup());

  /** A failed command: non-zero exit, exactly one line on stderr, nothing on stdout. */
  async function fails(args: string[], pattern: RegExp, input = '', status = 1) {
    const r = await sb.run(args, input);
    assert.equal(r.code, status, `exit status of ${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /^mailwerk: /);
    assert.match(r.stderr, pattern);
  }

  it('says its version, and takes global options before the command word', async () => {
    const v = await sb.run(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^mailwerk \d+\.\d+\.\d+ \(Node \d+\.\d+\.\d+, store schema \d+\)\n$/);
    const config = join(sb.dir, 'mailwerk.toml');
    const r = await sb.run(['--config', config, '--json', 'domain', 'list'], '', {
      MAILWERK_CONFIG: '/nonexistent.toml',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Array.isArray(JSON.parse(r.stdout)));
  });

  it('ends quietly when its output goes into a pipe closed early (mailwerk … | head -1)', async () => {
    const { execFile } = await import('node:child_process');
    // `true` reads nothing and is gone before mailwerk writes: every write fails with EPIPE.
    const out = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        'bash',
        ['-c', `set -o pipefail; "${BIN}" --json domain list | true`],
        { env: { PATH: process.env.PATH, HOME: sb.dir, MAILWERK_CONFIG: join(sb.dir, 'mailwerk.toml') } },
        (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }),
      ),
    );
    assert.equal(out.stderr, '');
    assert.equal(out.code, 0);
  });

  it('init as root creates the unprivileged user the services run as, and gives it the data directory', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root (CI runs as root)');
    const { execFileSync } = await import('node:child_process');
    const user = `mwtest${process.pid}`;
    const fresh = await sandbox();
    try {
      const r = await fresh.run(['init', '--data-dir', 'data', '--hostname', 'mail.example.org'], '', {
        MAILWERK_RUN_AS: user,
      });
      assert.equal(r.code, 0, r.stderr);
      const [, , uid, , , home, shell] = execFileSync('getent', ['passwd', user])
        .toString()
        .trim()
        .split(':');
      assert.equal(home, join(fresh.dir, 'data'));
      assert.equal(shell, '/usr/sbin/nologin');
      for (const f of ['data', 'data/mailwerk.sqlite', 'data/tls/key.pem'])
        assert.equal((await stat(join(fresh.dir, f))).uid, Number(uid), f);
      assert.equal((await stat(join(fresh.dir, 'mailwerk.toml'))).uid, Number(uid), 'the configuration');
      // Secrets stay owner-only, the owner now being that user.
      assert.equal((await stat(join(fresh.dir, 'data', 'tls', 'key.pem'))).mode & 0o777, 0o600);
    } finally {
      try {
        execFileSync('userdel', [user]);
      } catch {
        /* never created */
      }
      await fresh.cleanup();
    }
  });

  it('prints an Apple configuration profile for a user, with the ports this server serves', async () => {
    // A sandbox of its own: the others count this one's domains.
    const own = await initialised();
    after(() => own.cleanup());
    await own.run(['domain', 'add', 'profile.example']);
    await own.run(['user', 'add', 'pat@profile.example'], 'a password\n');
    const r = await own.run(['user', 'profile', 'pat@profile.example']);
    assert.equal(r.code, 0, r.stderr);
    const { execFileSync } = await import('node:child_process');
    const parsed = JSON.parse(
      execFileSync(
        'python3',
        ['-c', 'import sys, json, plistlib; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))'],
        {
          input: r.stdout,
        },
      ).toString(),
    ) as { PayloadContent: Array<Record<string, unknown>> };
    const mail = parsed.PayloadContent[0]!;
    // The sandbox was made with --unprivileged-ports.
    assert.deepEqual(
      [
        mail.EmailAddress,
        mail.IncomingMailServerHostName,
        mail.IncomingMailServerPortNumber,
        mail.OutgoingMailServerPortNumber,
      ],
      ['pat@profile.example', 'mail.example.org', 2993, 2465],
    );
    const missing = await own.run(['user', 'profile', 'nobody@profile.example']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^mailwerk: no such user: nobody@profile\.example\n$/);
  });

  it('init creates the config, the data directory, a certificate and the store, and says what it serves', async () => {
    const text = await readFile(sb.config, 'utf8');
    assert.match(text, /^hostname = "mail\.example\.org"$/m);
    assert.match(text, /^smtp_port = 2525$/m);
    assert.ok((await stat(join(sb.dir, 'data', 'tls', 'cert.pem'))).isFile());
    assert.ok((await stat(join(sb.dir, 'data', 'mailwerk.sqlite'))).isFile());
    const again = await sb.json<{
      createdConfig: boolean;
      tls: { generated: boolean; selfSigned: boolean };
      services: unknown[];
    }>(['init']);
    assert.equal(again.createdConfig, false);
    assert.equal(again.tls.generated, false);
    assert.equal(again.tls.selfSigned, true);
    assert.equal(again.services.length, 12);
    const text2 = await sb.run(['init']);
    assert.match(text2.stdout, /SMTP \(MX\)\s+0\.0\.0\.0:2525/);
    assert.match(text2.stdout, /IMAP \(TLS\)\s+0\.0\.0\.0:2993/);
    assert.match(text2.stdout, /Autoconfig \(HTTP\)\s+0\.0\.0\.0:2080\s+off \(access\.autoconfig\)/);
    // The sandbox turns the admin port off (helpers.ts).
    assert.match(text2.stdout, /Admin \(HTTP\)\s+127\.0\.0\.1:0\s+off \(admin\.port = 0\)/);
  });

  it('keeps secrets readable by their owner only, even in a world-readable directory, and in files of an older install', async () => {
    const { chmod, mkdir, readdir } = await import('node:fs/promises');
    const own = await sandbox();
    try {
      await mkdir(join(own.dir, 'data'), { mode: 0o777 });
      await chmod(join(own.dir, 'data'), 0o777);
      const r = await own.run(['init', '--data-dir', 'data', '--hostname', 'mail.example.org']);
      assert.equal(r.code, 0, r.stderr);
      // A second command (the store opened again) creates the WAL files.
      assert.equal((await own.run(['domain', 'add', 'example.org'])).code, 0);
      const mode = async (p: string) => (await stat(p)).mode & 0o777;
      const db = join(own.dir, 'data', 'mailwerk.sqlite');
      for (const f of [own.config, db, join(own.dir, 'data', 'tls', 'key.pem')])
        assert.equal((await mode(f)).toString(8), '600', f);
      // While the store is open (as the services keep it), its -wal and -shm files exist: owner only too.
      const { openSqliteStore } = await import('@mailwerk/store-sqlite');
      const store = openSqliteStore({ path: db, blobs: 'sqlite' });
      try {
        await store.addDomain('example.net');
        const wal = (await readdir(join(own.dir, 'data'))).filter((f) => f.startsWith('mailwerk.sqlite-'));
        assert.deepEqual(wal.sort(), ['mailwerk.sqlite-shm', 'mailwerk.sqlite-wal']);
        for (const f of wal) assert.equal((await mode(join(own.dir, 'data', f))).toString(8), '600', f);
      } finally {
        await store.close();
      }
      // A database left world-readable by an older version is made private when next opened.
      await chmod(db, 0o644);
      assert.equal((await own.run(['domain', 'list'])).code, 0);
      assert.equal((await mode(db)).toString(8), '600');
    } finally {
      await own.cleanup();
    }
  });

  it('manages domains, refusing bad input with one line and no change', async () => {
    assert.equal((await sb.run(['domain', 'add', 'Example.ORG'])).code, 0);
    await sb.run(['domain', 'add', 'other.example']);
    const list = await sb.json<Array<{ name: string; users: number }>>(['domain', 'list']);
    assert.deepEqual(
      list.map((d) => d.name),
      ['example.org', 'other.example'],
    );
    await fails(['domain', 'add', 'example.org'], /exists already/);
    await fails(['domain', 'add', 'not a domain'], /invalid domain/);
    await fails(['domain', 'remove', 'missing.example'], /no domain/);
    assert.equal((await sb.run(['domain', 'remove', 'other.example'])).code, 0);
    assert.deepEqual(
      (await sb.json<Array<{ name: string }>>(['domain', 'list'])).map((d) => d.name),
      ['example.org'],
    );
  });

  it('adds users with argon2id passwords from stdin and the six standard mailboxes', async () => {
    const r = await sb.run(
      ['user', 'add', 'Bob@Example.org', '--name', 'Bob Builder', '--quota', '2 GiB'],
      PASSWORD,
    );
    assert.equal(r.code, 0, r.stderr);
    const bob = await sb.json<User>(['user', 'show', 'bob@example.org']);
    assert.equal(bob.address, 'bob@example.org');
    assert.equal(bob.displayName, 'Bob Builder');
    assert.equal(bob.quotaBytes, 2 * 1024 ** 3);
    assert.deepEqual(bob.mailboxes?.map((m) => [m.name, m.specialUse]).sort(), [
      ['Archive', '\\Archive'],
      ['Drafts', '\\Drafts'],
      ['INBOX', null],
      ['Junk', '\\Junk'],
      ['Sent', '\\Sent'],
      ['Trash', '\\Trash'],
    ]);
    assert.equal((await sb.run(['user', 'check-password', 'bob@example.org'], PASSWORD)).code, 0);
    const wrong = await sb.run(['user', 'check-password', 'bob@example.org'], 'nope\n');
    assert.equal(wrong.code, 1);
    // The hash in the store is argon2id; no password ever appears in output.
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(sb.dir, 'data', 'mailwerk.sqlite'), { readOnly: true });
    const row = db.prepare('SELECT password_hash FROM accounts WHERE address = ?').get('bob@example.org') as {
      password_hash: string;
    };
    db.close();
    assert.match(row.password_hash, /^\$argon2id\$/);
    assert.doesNotMatch(r.stdout + r.stderr, /correct horse/);
  });

  it('refuses a user with bad input, changing nothing', async () => {
    const before = await sb.json<User[]>(['user', 'list']);
    await fails(['user', 'add', 'bob@example.org'], /exists already/, PASSWORD);
    await fails(['user', 'add', 'ann@unknown.example'], /not a local domain/, PASSWORD);
    await fails(['user', 'add', 'not-an-address'], /invalid address/, PASSWORD);
    await fails(['user', 'add', 'Jo\u0308rg@example.org'], /NFC/, PASSWORD);
    await fails(['user', 'add', '"quoted"@example.org'], /invalid address/, PASSWORD);
    await fails(
      ['user', 'add', 'ann@example.org', '--quota', '12 parsecs'],
      /invalid size "12 parsecs"/,
      PASSWORD,
    );
    await fails(['user', 'add', 'ann@example.org'], /no password given/, '');
    await fails(['user', 'add', 'ann@example.org'], /at least 8 characters/, 'short\n');
    await fails(
      ['user', 'add', 'ann@example.org', '--password-hash', '{PLAIN}secret'],
      /unsupported password hash/,
    );
    // A password is never taken as an argument.
    await fails(
      ['user', 'add', 'ann@example.org', '--password', 'secret123'],
      /Unknown option '--password'/,
      '',
      2,
    );
    await fails(['user', 'frobnicate'], /unknown command/, '', 2);
    assert.deepEqual(await sb.json<User[]>(['user', 'list']), before);
  });

  it('imports bcrypt and SHA-512-crypt hashes that then verify', async () => {
    const sha =
      '$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/';
    const bcrypt = '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW';
    assert.equal(
      (await sb.run(['user', 'add', 'old1@example.org', '--password-hash', `{SHA512-CRYPT}${sha}`])).code,
      0,
    );
    assert.equal((await sb.run(['user', 'add', 'old2@example.org', '--password-hash', bcrypt])).code, 0);
    assert.equal((await sb.run(['user', 'check-password', 'old1@example.org'], 'pw\n')).code, 0);
    assert.equal((await sb.run(['user', 'check-password', 'old2@example.org'], 'U*U\n')).code, 0);
    assert.equal((await sb.run(['user', 'check-password', 'old2@example.org'], 'U*V\n')).code, 1);
  });

  it('changes passwords, quotas and the disabled state', async () => {
    assert.equal((await sb.run(['user', 'passwd', 'bob@example.org'], 'a brand new password\n')).code, 0);
    assert.equal(
      (await sb.run(['user', 'check-password', 'bob@example.org'], 'a brand new password\n')).code,
      0,
    );
    assert.equal((await sb.run(['user', 'check-password', 'bob@example.org'], PASSWORD)).code, 1);
    assert.equal(
      (await sb.json<User>(['user', 'quota', 'bob@example.org', '500M'])).quotaBytes,
      500 * 1024 ** 2,
    );
    assert.equal((await sb.json<User>(['user', 'quota', 'bob@example.org', 'unlimited'])).quotaBytes, null);
    await fails(['user', 'quota', 'bob@example.org', '12 parsecs'], /invalid size/);
    await fails(['user', 'quota', 'nobody@example.org', '1G'], /no user nobody@example\.org/);
    assert.equal((await sb.json<User>(['user', 'disable', 'bob@example.org'])).disabled, true);
    assert.equal((await sb.json<User>(['user', 'enable', 'bob@example.org'])).disabled, false);
    const list = await sb.run(['user', 'list']);
    assert.match(list.stdout, /^USER\s+NAME\s+QUOTA\s+STATE$/m);
    assert.match(list.stdout, /bob@example\.org\s+Bob Builder\s+0 B of unlimited\s+active/);
  });

  it('manages aliases and catch-alls', async () => {
    assert.equal(
      (await sb.run(['alias', 'add', 'Sales@example.org', 'bob@example.org', 'partner@elsewhere.net'])).code,
      0,
    );
    // What the MX would accept and only bounce later (backscatter) is refused, and nothing is added.
    await fails(
      ['alias', 'add', 'y@example.org', 'ghost@example.org'],
      /ghost@example\.org does not exist here/,
    );
    await fails(['alias', 'add', 'z@example.org', 'bob@example.org', 'z@example.org'], /alias loop/);
    await fails(['alias', 'add', '@example.org', 'nobody@example.org'], /alias loop/);
    assert.equal((await sb.json<unknown[]>(['alias', 'list', '--domain', 'example.org'])).length, 1);
    assert.equal((await sb.run(['alias', 'add', '@example.org', 'bob@example.org'])).code, 0);
    await fails(['alias', 'add', 'sales@example.org', 'bob@example.org'], /exists already/);
    await fails(['alias', 'add', 'bob@example.org', 'old1@example.org'], /is an account already/);
    await fails(['alias', 'add', 'x@unknown.example', 'bob@example.org'], /not a local domain/);
    await fails(['alias', 'add', 'y@example.org', 'not an address'], /invalid address/);
    await fails(['alias', 'add', 'y@example.org'], /expected/, '', 2);
    const list = await sb.json<Array<{ address: string; targets: string[] }>>([
      'alias',
      'list',
      '--domain',
      'example.org',
    ]);
    assert.deepEqual(list, [
      {
        address: '@example.org',
        domain: 'example.org',
        targets: ['bob@example.org'],
        createdAt: (list[0] as { createdAt: string } & (typeof list)[0]).createdAt,
      },
      {
        address: 'sales@example.org',
        domain: 'example.org',
        targets: ['bob@example.org', 'partner@elsewhere.net'],
        createdAt: (list[1] as { createdAt: string } & (typeof list)[1]).createdAt,
      },
    ]);
    assert.deepEqual((await sb.json<User>(['user', 'show', 'bob@example.org'])).aliases, [
      '@example.org',
      'sales@example.org',
    ]);
    assert.equal((await sb.run(['alias', 'remove', 'sales@example.org'])).code, 0);
    await fails(['alias', 'remove', 'sales@example.org'], /no alias/);
  });

  it("manages a user's Sieve scripts: checked on the way in, one active, the active one kept from removal", async () => {
    const script = 'require "fileinto";\nif header :contains "subject" "[list]" { fileinto "Lists"; }\n';
    await fails(
      ['sieve', 'put', 'bob@example.org', 'rules'],
      /stdin: line 2, column 1: unknown command "fileinot"/,
      'keep;\nfileinot "x";\n',
    );
    await fails(
      ['sieve', 'check'],
      /line 1, column 1: fileinto: needs require "fileinto"/,
      'fileinto "x";\n',
    );
    assert.match((await sb.run(['sieve', 'check'], script)).stdout, /^stdin: ok/);
    await fails(['sieve', 'check'], /a script is at most 262144 octets/, `# ${'x'.repeat(262_144)}\nkeep;\n`);
    assert.equal((await sb.run(['sieve', 'put', 'bob@example.org', 'rules'], script)).code, 0);
    assert.equal((await sb.run(['sieve', 'put', 'bob@example.org', 'spare'], 'keep;\n')).code, 0);
    assert.equal((await sb.run(['sieve', 'activate', 'bob@example.org', 'rules'])).code, 0);
    await fails(['sieve', 'activate', 'bob@example.org', 'ghost'], /has no script "ghost"/);
    assert.deepEqual(await sb.json(['sieve', 'list', 'bob@example.org']), [
      { name: 'rules', active: true, bytes: Buffer.byteLength(script) },
      { name: 'spare', active: false, bytes: 6 },
    ]);
    assert.equal((await sb.run(['sieve', 'show', 'bob@example.org', 'rules'])).stdout, script);
    await fails(['sieve', 'remove', 'bob@example.org', 'rules'], /active/);
    assert.equal((await sb.run(['sieve', 'deactivate', 'bob@example.org'])).code, 0);
    assert.equal((await sb.run(['sieve', 'remove', 'bob@example.org', 'rules'])).code, 0);
    assert.deepEqual(
      (await sb.json<Array<{ name: string }>>(['sieve', 'list', 'bob@example.org'])).map((x) => x.name),
      ['spare'],
    );
  });

  it('turns an out-of-office reply on and off as a Sieve script, with the script active before still running', async () => {
    assert.equal((await sb.run(['sieve', 'activate', 'bob@example.org', 'spare'])).code, 0);
    await fails(['vacation', 'bob@example.org', 'on'], /--message-file/);
    await fails(
      ['vacation', 'bob@example.org', 'on', '--message-file', '-', '--days', '0'],
      /--days: a whole number of days from 1 to 60/,
      'away',
    );
    await fails(
      ['vacation', 'bob@example.org', 'on', '--message-file', '-', '--until', '2026-02-30'],
      /--until: a date as YYYY-MM-DD/,
      'away',
    );
    await fails(
      ['vacation', 'bob@example.org', 'on', '--message-file', '-', '--until', '2000-01-01'],
      /in the past/,
      'away',
    );
    await fails(['vacation', 'bob@example.org', 'maybe'], /"on" or "off"/);
    const on = await sb.run(
      [
        'vacation',
        'bob@example.org',
        'on',
        '--message-file',
        '-',
        '--subject',
        'Out "until" Monday',
        '--days',
        '3',
        '--until',
        '2099-12-31',
      ],
      'I am away.\nBack on Monday.\n',
    );
    assert.equal(on.code, 0, on.stderr);
    assert.match(
      on.stdout,
      /on for bob@example\.org until 2099-12-31: one reply per sender every 3 days; "spare" still runs after it/,
    );
    const text = (await sb.run(['sieve', 'show', 'bob@example.org', 'vacation'])).stdout;
    assert.match(text, /^require \["vacation", "date", "relational", "include"\];$/m);
    assert.match(text, /^if currentdate :value "le" "date" "2099-12-31" \{$/m);
    assert.match(text, /vacation :days 3 :subject "Out \\"until\\" Monday" "I am away\.\nBack on Monday\.";/);
    assert.match(text, /^include :personal :optional "spare";$/m);
    assert.match((await sb.run(['sieve', 'check'], text)).stdout, /ok/, 'what it writes checks');
    assert.deepEqual(await sb.json(['vacation', 'bob@example.org']), {
      user: 'bob@example.org',
      on: true,
      until: '2099-12-31',
      after: 'spare',
    });
    // On again (a new text): still "spare" after it, not the vacation script itself.
    assert.equal(
      (await sb.run(['vacation', 'bob@example.org', 'on', '--message-file', '-'], 'Still away.')).code,
      0,
    );
    assert.match(
      (await sb.run(['sieve', 'show', 'bob@example.org', 'vacation'])).stdout,
      /include :personal :optional "spare";/,
    );
    const off = await sb.run(['vacation', 'bob@example.org', 'off']);
    assert.match(off.stdout, /off for bob@example\.org; "spare" is the active script again/);
    assert.deepEqual(
      (await sb.json<Array<{ name: string; active: boolean }>>(['sieve', 'list', 'bob@example.org']))
        .filter((x) => x.active)
        .map((x) => x.name),
      ['spare'],
    );
    assert.match((await sb.run(['vacation', 'bob@example.org'])).stdout, /^off for bob@example\.org/);
    // With no script active before, off leaves none active.
    assert.equal((await sb.run(['sieve', 'deactivate', 'bob@example.org'])).code, 0);
    assert.equal(
      (await sb.run(['vacation', 'bob@example.org', 'on', '--message-file', '-'], 'Away.')).code,
      0,
    );
    assert.doesNotMatch((await sb.run(['sieve', 'show', 'bob@example.org', 'vacation'])).stdout, /^include/m);
    assert.equal((await sb.run(['vacation', 'bob@example.org', 'off'])).code, 0);
    assert.equal(
      (await sb.json<Array<{ active: boolean }>>(['sieve', 'list', 'bob@example.org'])).filter(
        (x) => x.active,
      ).length,
      0,
    );
  });

  it('generates, lists, rotates and removes DKIM keys, and prints the DNS records to publish', async () => {
    await fails(['dkim', 'generate', 'unknown.example'], /no domain unknown\.example/);
    await fails(['dkim', 'generate', 'example.org', '--algorithm', 'dsa'], /unknown algorithm "dsa"/);
    const made = await sb.json<
      Array<{ selector: string; algorithm: string; state: string; record: { name: string; value: string } }>
    >(['dkim', 'generate', 'example.org', '--algorithm', 'both']);
    const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    assert.deepEqual(
      made.map((k) => [k.selector, k.algorithm, k.state]),
      [
        [day, 'rsa-sha256', 'active'],
        [`${day}e`, 'ed25519-sha256', 'active'],
      ],
    );
    assert.equal(made[0]!.record.name, `${day}._domainkey.example.org.`);
    assert.match(made[0]!.record.value, /^v=DKIM1; k=rsa; p=MII[A-Za-z0-9+/=]{380,}$/);
    assert.match(made[1]!.record.value, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    // A rotation: the new RSA key signs, the old one stays published until removed.
    const rotated = await sb.json<Array<{ selector: string }>>(['dkim', 'generate', 'example.org']);
    assert.equal(rotated[0]!.selector, `${day}-2`);
    const listed = await sb.json<Array<{ selector: string; state: string }>>(['dkim', 'list', 'example.org']);
    assert.deepEqual(
      listed.map((k) => [k.selector, k.state]),
      [
        [day, 'published'],
        [`${day}e`, 'active'],
        [`${day}-2`, 'active'],
      ],
    );
    const records = await sb.json<Array<{ name: string; type: string; value: string }>>([
      'dns',
      'example.org',
    ]);
    // The sandbox was made with --unprivileged-ports: the SRV records name the ports really served.
    const find = (name: string, type: string) =>
      records.filter((r) => r.name === name && r.type === type).map((r) => r.value);
    assert.deepEqual(find('example.org.', 'MX'), ['10 mail.example.org.']);
    assert.deepEqual(find('example.org.', 'TXT'), ['v=spf1 mx ~all']);
    assert.equal(records.filter((r) => r.name.endsWith('._domainkey.example.org.')).length, 3);
    assert.match(find('_dmarc.example.org.', 'TXT')[0]!, /^v=DMARC1; p=quarantine/);
    assert.deepEqual(find('_submission._tcp.example.org.', 'SRV'), ['0 1 2587 mail.example.org.']);
    assert.deepEqual(find('_imaps._tcp.example.org.', 'SRV'), ['0 1 2993 mail.example.org.']);
    assert.deepEqual(find('_pop3s._tcp.example.org.', 'SRV'), ['0 1 2995 mail.example.org.']);
    assert.deepEqual(find('_sieve._tcp.example.org.', 'SRV'), ['0 1 24190 mail.example.org.']);
    assert.deepEqual(find('autoconfig.example.org.', 'CNAME'), ['mail.example.org.']);
    assert.deepEqual(find('autodiscover.example.org.', 'CNAME'), ['mail.example.org.']);
    assert.deepEqual(find('_autodiscover._tcp.example.org.', 'SRV'), ['0 1 2443 mail.example.org.']);
    // MTA-STS (testing by default) and TLS reporting.
    assert.match(find('_mta-sts.example.org.', 'TXT')[0]!, /^v=STSv1; id=[0-9a-f]{20}$/);
    assert.deepEqual(find('mta-sts.example.org.', 'CNAME'), ['mail.example.org.']);
    assert.deepEqual(find('_smtp._tls.example.org.', 'TXT'), [
      'v=TLSRPTv1; rua=mailto:postmaster@example.org',
    ]);
    const text = await sb.run(['dns', 'example.org']);
    assert.equal(text.code, 0);
    // A 2048-bit key is longer than one TXT string may be: it is split into quoted pieces.
    assert.match(
      text.stdout,
      new RegExp(
        `^${day}\\._domainkey\\.example\\.org\\. IN TXT "v=DKIM1; k=rsa; p=[^"]{200,}" "[^"]+"$`,
        'm',
      ),
    );
    await fails(['dkim', 'remove', 'example.org', `${day}-2`], /is the one signing/);
    assert.equal((await sb.run(['dkim', 'remove', 'example.org', day])).code, 0);
    await fails(['dkim', 'remove', 'example.org', day], /has no DKIM key with selector/);
    assert.equal((await sb.json<unknown[]>(['dkim', 'list'])).length, 2);
    // A new key the same day does not take the removed key's selector, which resolvers may still cache.
    assert.equal((await sb.run(['dkim', 'generate', 'example.org'])).code, 0);
    const selectors = (await sb.json<Array<{ selector: string }>>(['dkim', 'list'])).map((k) => k.selector);
    assert.equal(selectors.length, 3);
    assert.ok(!selectors.includes(day), selectors.join(' '));
    await fails(['dkim', 'generate', 'example.org', '--selector', day], /removed; resolvers may still hold/);
    await fails(['dns', 'unknown.example'], /no domain unknown\.example/);
  });

  it('lists and removes a damaged queue entry and lists a mailbox with a damaged message, without dying', async (t) => {
    // A sandbox of its own: the other tests count this one's domains and users.
    const sb = await sandbox();
    t.after(() => sb.cleanup());
    assert.equal((await sb.run(['init', '--data-dir', 'data', '--hostname', 'mail.example.org'])).code, 0);
    const { openSqliteStore } = await import('@mailwerk/store-sqlite');
    const { parseMessage } = await import('@mailwerk/mime');
    const { contentId } = await import('@mailwerk/store');
    const { DatabaseSync } = await import('node:sqlite');
    const db = join(sb.dir, 'data', 'mailwerk.sqlite');
    await sb.run(['domain', 'add', 'damage.example']);
    await sb.run(['user', 'add', 'dora@damage.example'], PASSWORD);
    const store = openSqliteStore({ path: db, blobs: 'sqlite' });
    const raw = Buffer.from('From: a@b.org\r\nSubject: broken row\r\n\r\nhi\r\n');
    let queueId: string;
    let messageId: string;
    try {
      const account = (await store.getAccountByAddress('dora@damage.example'))!;
      const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
      const m = await store.appendMessage({
        accountId: account.id,
        mailboxId: inbox.id,
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
        structure: parseMessage(raw),
      });
      messageId = m.id;
      const e = await store.enqueue({
        sender: 'a@b.org',
        recipients: [{ address: 'x@y.org' }],
        blobId: contentId(raw),
        data: raw,
        size: raw.length,
      });
      queueId = e.id;
    } finally {
      await store.close();
    }
    const raw2 = new DatabaseSync(db);
    raw2.prepare("UPDATE queue SET recipients = 'garbage' WHERE id = ?").run(queueId);
    raw2.prepare("UPDATE messages SET structure = 'garbage' WHERE id = ?").run(Number(messageId));
    raw2.close();
    const list = await sb.run(['queue', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`${queueId} \\(quarantined\\)`));
    const show = await sb.run(['queue', 'show', queueId]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /problem: +unreadable/);
    const mail = await sb.run(['mail', 'list', 'dora@damage.example']);
    assert.equal(mail.code, 0, mail.stderr);
    assert.match(mail.stdout, /broken row/);
    assert.match(mail.stderr, /stored structure damaged/);
    assert.equal((await sb.run(['queue', 'delete', queueId])).code, 0);
    assert.match((await sb.run(['queue', 'list'])).stdout, /the queue is empty/);
  });

  it('refuses to remove a domain that still has users unless forced', async () => {
    await fails(['domain', 'remove', 'example.org'], /still has .*--force/);
    assert.equal((await sb.json<User[]>(['user', 'list'])).length, 3);
    assert.equal((await sb.run(['user', 'remove', 'old2@example.org'])).code, 0);
    await fails(['user', 'remove', 'old2@example.org'], /no user/);
    assert.equal((await sb.run(['domain', 'remove', 'example.org', '--force'])).code, 0);
    assert.deepEqual(await sb.json(['user', 'list']), []);
    assert.deepEqual(await sb.json(['alias', 'list']), []);
  });

  it('prints the documented sample and refuses an invalid config file with every problem', async () => {
    const sample = await sb.run(['config', 'sample']);
    assert.equal(sample.code, 0);
    assert.match(sample.stdout, /^\[limits\]$/m);
    const { writeFile } = await import('node:fs/promises');
    const bad = join(sb.dir, 'bad.toml');
    await writeFile(bad, '[mta]\nsmtp_port = "twenty-five"\n[limits]\nmessage_size = "12 parsecs"\n');
    const r = await sb.run(['--config', bad, 'domain', 'list']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.toml/);
    assert.match(r.stderr, /mta\.smtp_port/);
    assert.match(r.stderr, /limits\.message_size: invalid size "12 parsecs"/);
  });
});
