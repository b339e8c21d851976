// Real clients against the real server on loopback: mbsync (isync), mutt, curl and python3's imaplib, from
// Debian's packages (scripts/test-deps.sh installs them). Nothing here is mocked.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { count, PASSWORD, type Rig, rig, sample } from './harness.ts';

const run = promisify(execFile);

/** Files of a Maildir folder tree (new/ and cur/), whatever the folder. */
async function maildirFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\/(new|cur)\//.test(p)) out.push(p);
    }
  };
  await walk(dir);
  return out;
}

describe('IMAP with real clients', () => {
  let r: Rig;
  let dir: string;
  let certFile: string;
  before(async () => {
    r = await rig();
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-clients-'));
    certFile = join(dir, 'cert.pem');
    await writeFile(certFile, r.cert);
    const c = await r.client();
    for (let i = 0; i < 5; i++) await c.append('INBOX', sample(`hello ${i}`));
    await c.mailboxCreate('Work/Projects');
    await c.append('Work/Projects', sample('project'));
  });
  after(async () => {
    await r.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const [label, mode] of [
    ['993 with SNI', 'IMAPS'],
    ['143 with STARTTLS', 'STARTTLS'],
  ] as const) {
    it(`mbsync syncs down and back three times over ${label}, with no error and no duplicate`, async () => {
      const local = join(dir, `maildir-${mode}`);
      const rc = join(dir, `mbsyncrc-${mode}`);
      // Host "localhost", not an address: only a name is sent as SNI.
      await writeFile(
        rc,
        [
          'IMAPAccount test',
          'Host localhost',
          `Port ${mode === 'IMAPS' ? r.tlsPort : r.port}`,
          'User bob@example.org',
          `Pass "${PASSWORD}"`,
          `SSLType ${mode}`,
          `CertificateFile ${certFile}`,
          '',
          'IMAPStore remote',
          'Account test',
          '',
          'MaildirStore local',
          `Path ${local}/`,
          `Inbox ${local}/INBOX`,
          'SubFolders Verbatim',
          '',
          'Channel ch',
          'Far :remote:',
          'Near :local:',
          'Patterns *',
          'Create Both',
          'Expunge Both',
          'SyncState *',
          '',
        ].join('\n'),
      );
      await mkdir(local, { recursive: true });
      const client = await r.client();
      const before = await count(client, 'INBOX');
      for (let round = 1; round <= 3; round++) {
        if (round === 2) {
          // A message written locally goes up (APPEND, with LITERAL+).
          await writeFile(
            join(local, 'INBOX', 'new', `17000000${mode}.1.host`),
            'From: me@x.org\r\nSubject: local\r\n\r\nfrom maildir\r\n',
          );
        }
        const { stderr } = await run('mbsync', ['-c', rc, '-a'], { timeout: 30_000 });
        assert.doesNotMatch(stderr, /error|unexpected|EOF/i, `round ${round}: ${stderr}`);
      }
      assert.equal(await count(client, 'INBOX'), before + 1);
      assert.equal(await count(client, 'Work/Projects'), 1);
      const files = await maildirFiles(local);
      const inbox = files.filter((f) => f.includes('/INBOX/'));
      assert.equal(inbox.length, before + 1, `local INBOX: ${inbox.join(', ')}`);
      assert.equal(files.filter((f) => f.includes('/Work/Projects/')).length, 1);
      // The uploaded message was not fetched back as a second copy on the next rounds.
      const lock = await client.getMailboxLock('INBOX');
      try {
        const subjects: string[] = [];
        for await (const m of client.fetch('1:*', { envelope: true }))
          subjects.push(m.envelope?.subject ?? '');
        assert.equal(subjects.filter((s) => s === 'local').length, 1);
        // Leave INBOX as the next run expects it.
        await client.messageDelete({ subject: 'local' });
      } finally {
        lock.release();
      }
    });
  }

  it('mutt opens INBOX over TLS, flags a message and syncs the change', async () => {
    const rc = join(dir, 'muttrc');
    await writeFile(
      rc,
      [
        'set imap_user="bob@example.org"',
        `set imap_pass="${PASSWORD}"`,
        `set certificate_file=${certFile}`,
        'set ssl_verify_host=no',
        'set quit=yes',
        'set mail_check=0',
        // Nothing outside the test's folder: no ~/Mail to offer to create, no caches.
        `set folder="imaps://127.0.0.1:${r.tlsPort}/"`,
        'set spoolfile="+INBOX"',
        'set header_cache=""',
        'set message_cachedir=""',
        '',
      ].join('\n'),
    );
    const url = `imaps://127.0.0.1:${r.tlsPort}/INBOX`;
    // mutt needs a terminal: script(1) gives it one; the keys flag the first message, sync and quit.
    const { stdout } = await run(
      'script',
      ['-qec', `mutt -n -F ${rc} -f ${url} -e 'push <flag-message><sync-mailbox><quit>'`, '/dev/null'],
      { timeout: 30_000, env: { ...process.env, TERM: 'xterm' } },
    );
    assert.match(stdout, /kept/);
    const client = await r.client();
    const lock = await client.getMailboxLock('INBOX');
    try {
      const m = await client.fetchOne('1', { flags: true });
      const flags = m === false ? [] : [...(m.flags ?? [])];
      assert.ok(flags.includes('\\Flagged'), `flags: ${flags.join(' ')}`);
    } finally {
      lock.release();
    }
  });

  it('curl reads a message by UID over 993, and searches over 143 with STARTTLS', async () => {
    const user = `bob@example.org:${PASSWORD}`;
    const { stdout: msg } = await run('curl', [
      '-sSk',
      `imaps://127.0.0.1:${r.tlsPort}/INBOX;UID=2`,
      '-u',
      user,
    ]);
    assert.match(msg, /Subject: hello 1\r\n/);
    const { stdout: found } = await run('curl', [
      '-sSk',
      '--ssl-reqd',
      `imap://127.0.0.1:${r.port}/INBOX?SUBJECT%20%22hello%203%22`,
      '-u',
      user,
    ]);
    assert.match(found, /\* SEARCH 4\r\n/);
  });

  it('python3 imaplib signs in after STARTTLS, searches, fetches, appends and expunges', async () => {
    const script = `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4('127.0.0.1', ${r.port}); m.starttls(ssl_context=ctx)
m.login('bob@example.org', sys.argv[1])
typ, data = m.select('Work/Projects'); assert typ == 'OK' and data == [b'1'], data
typ, data = m.append('Work/Projects', '(\\\\Seen)', None, b'Subject: py\\r\\n\\r\\nfrom python\\r\\n'); assert typ == 'OK', data
typ, data = m.search(None, 'SUBJECT', '"py"'); assert data == [b'2'], data
typ, data = m.fetch('2', '(FLAGS BODY.PEEK[TEXT])'); assert b'from python' in data[0][1] and b'\\\\Seen' in data[0][0], data
typ, data = m.store('2', '+FLAGS', '(\\\\Deleted)'); assert typ == 'OK'
typ, data = m.expunge(); assert data == [b'2'], data
m.logout()
print('done')
`;
    const { stdout } = await run('python3', ['-c', script, PASSWORD], { timeout: 30_000 });
    assert.match(stdout, /done/);
  });
});
