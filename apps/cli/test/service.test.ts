// `mailwerk start` as a real process: mail sent to it lands in the mailbox,
// survives SIGKILL right after the 250, waits in the queue while the MDA
// (a separate process here) is down, reaches an IMAP client in IDLE and a
// POP3 client (curl).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { children, freePort, type Sandbox, sandbox } from './helpers.ts';

interface Listing {
  messages: Array<{ uid: number; subject: string }>;
}

async function eventually<T>(check: () => Promise<T | null | undefined | false>, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('mailwerk start', () => {
  let sb: Sandbox;
  let env: Record<string, string>;
  let port: number;
  let imapsPort: number;
  let pop3sPort: number;
  let submissionPort: number;
  before(async () => {
    sb = await sandbox();
    port = await freePort();
    imapsPort = await freePort();
    pop3sPort = await freePort();
    submissionPort = await freePort();
    env = {
      MAILWERK_MTA__SMTP_PORT: String(port),
      MAILWERK_MTA__LISTEN: '127.0.0.1',
      // SPF/DKIM/DMARC would ask the real DNS about the test senders' domains; tests stay on loopback.
      MAILWERK_CHECKS__AUTHENTICATION: 'false',
      MAILWERK_MTA__SUBMISSION_PORT: String(submissionPort),
      MAILWERK_MTA__SUBMISSIONS_PORT: String(await freePort()),
      MAILWERK_ACCESS__LISTEN: '127.0.0.1',
      MAILWERK_ACCESS__IMAP_PORT: String(await freePort()),
      MAILWERK_ACCESS__IMAPS_PORT: String(imapsPort),
      MAILWERK_ACCESS__POP3_PORT: String(await freePort()),
      MAILWERK_ACCESS__POP3S_PORT: String(pop3sPort),
    };
    assert.equal((await sb.run(['init', '--data-dir', 'data', '--hostname', 'mx.example.org'])).code, 0);
    await sb.run(['domain', 'add', 'example.org']);
    assert.equal((await sb.run(['user', 'add', 'bob@example.org'], 'a good password\n')).code, 0);
  });
  after(() => sb.cleanup());

  const send = async (subject: string, text = 'hello\n') => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true });
    try {
      return await t.sendMail({ from: 'a@ext.org', to: 'bob@example.org', subject, text });
    } finally {
      t.close();
    }
  };
  /** bob signed in on submission (587's role, STARTTLS required). */
  const bobSubmission = () =>
    nodemailer.createTransport({
      host: '127.0.0.1',
      port: submissionPort,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.org', pass: 'a good password' },
    });
  /** bob signed in over 993's role (imapflow). */
  const bobImap = () =>
    new ImapFlow({
      host: '127.0.0.1',
      port: imapsPort,
      secure: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.org', pass: 'a good password' },
      logger: false,
    });
  /** An IMAP sign-in over 993's role with a wrong password, refused (imapflow signs in with AUTHENTICATE PLAIN). */
  const refusedImap = async (user: string) => {
    const imap = new ImapFlow({
      host: '127.0.0.1',
      port: imapsPort,
      secure: true,
      tls: { rejectUnauthorized: false },
      auth: { user, pass: 'wrong' },
      logger: false,
    });
    await assert.rejects(imap.connect());
    imap.close();
  };
  const subjects = async () =>
    (await sb.json<Listing>(['mail', 'list', 'bob@example.org'])).messages.map((m) => m.subject);

  it('delivers mail sent to the MX into the mailbox', async () => {
    const svc = await sb.spawn(['start'], /SMTP \(MX\)\s+127\.0\.0\.1:\d+\s+running/, env);
    try {
      const info = await send('first');
      // Into the mailbox before the reply, or queued when the MDA was not up yet (the MX listens first).
      assert.match(info.response, /^250 2\.0\.0 Ok: (delivered|queued) as/);
      await eventually(async () => (await subjects()).includes('first'));
    } finally {
      await svc.kill();
    }
  });

  it('delivers a message acknowledged just before SIGKILL exactly once after a restart', async () => {
    const svc = await sb.spawn(['start'], /SMTP \(MX\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const info = await send('killed');
    await svc.kill('SIGKILL');
    assert.match(info.response, /^250 /);
    const again = await sb.spawn(['start'], /SMTP \(MX\)\s+127\.0\.0\.1:\d+\s+running/, env);
    try {
      await eventually(async () => (await subjects()).includes('killed'));
      await eventually(async () => (await sb.json<unknown[]>(['queue', 'list'])).length === 0);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await subjects()).filter((s) => s === 'killed').length, 1);
    } finally {
      await again.kill();
    }
  });

  it('runs the MTA in two processes sharing the MX port with mta.processes = 2: each message delivered once, one killed started again while the other serves', async () => {
    const adminPort = await freePort();
    const shared = { ...env, MAILWERK_MTA__PROCESSES: '2', MAILWERK_ADMIN__PORT: String(adminPort) };
    const svc = await sb.spawn(['start'], /Admin \(HTTP\)\s+127\.0\.0\.1:\d+\s+running/, shared);
    type Row = { service: string; instance?: number; pid: number | null; state: string };
    const mtas = async () =>
      (
        (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as { services: Row[] }
      ).services.filter((r) => r.service === 'mta');
    try {
      const first = await mtas();
      assert.deepEqual(
        first.map((r) => [r.instance, r.state]),
        [
          [1, 'running'],
          [2, 'running'],
        ],
      );
      assert.notEqual(first[0]!.pid, first[1]!.pid);
      // Both listen on the MX port itself (SO_REUSEPORT): read from /proc, the sockets each process holds.
      const { readFile, readdir, readlink } = await import('node:fs/promises');
      const listeningInodes = new Set(
        (await readFile('/proc/net/tcp', 'utf8'))
          .split('\n')
          .slice(1)
          .map((l) => l.trim().split(/\s+/))
          .filter(
            (f) => f[1]?.endsWith(`:${port.toString(16).toUpperCase().padStart(4, '0')}`) && f[3] === '0A',
          )
          .map((f) => f[9]),
      );
      for (const { pid } of first) {
        const fds = await readdir(`/proc/${pid}/fd`);
        const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
        assert.ok(
          links.some((l) => listeningInodes.has(/^socket:\[(\d+)\]$/.exec(l)?.[1] ?? '')),
          `process ${pid} does not listen on ${port}`,
        );
      }
      const status = await sb.run(['status'], '', shared);
      assert.match(status.stdout, /^mta #1 +running/m);
      assert.match(status.stdout, /^mta #2 +running/m);
      // Twenty connections at once, spread by the kernel over both processes; every message once.
      await Promise.all(Array.from({ length: 20 }, (_, i) => send(`shared ${i}`)));
      await eventually(async () => (await subjects()).filter((x) => x.startsWith('shared ')).length >= 20);
      await eventually(async () => (await sb.json<unknown[]>(['queue', 'list'])).length === 0);
      assert.equal(new Set((await subjects()).filter((x) => x.startsWith('shared '))).size, 20);
      assert.equal((await subjects()).filter((x) => x.startsWith('shared ')).length, 20);
      // One process killed: the other takes the mail meanwhile, and the supervisor starts it again.
      process.kill(first[0]!.pid!, 'SIGKILL');
      await eventually(async () => (await mtas())[0]!.state !== 'running');
      const info = await send('while one is down');
      assert.match(info.response, /^250 /);
      await eventually(async () => {
        const now = await mtas();
        return now.every((r) => r.state === 'running') && now[0]!.pid !== first[0]!.pid;
      });
      await eventually(async () => (await subjects()).includes('while one is down'));
    } finally {
      await svc.kill();
    }
  });

  it('keeps mail queued while the MDA process is down, then delivers it', async () => {
    const mta = await sb.spawn(
      ['start', '--service', 'mta'],
      /SMTP \(MX\)\s+127\.0\.0\.1:\d+\s+running/,
      env,
    );
    try {
      await send('mda down');
      const queued = await eventually(async () => {
        const q = await sb.json<
          Array<{
            attempts: number;
            recipients: Array<{ lastReply?: { code: number; enhanced: string; text: string } }>;
          }>
        >(['queue', 'list']);
        return q.find((e) => e.attempts >= 1);
      });
      assert.equal(queued.recipients[0]!.lastReply!.code, 451);
      assert.equal(queued.recipients[0]!.lastReply!.enhanced, '4.4.1');
      assert.ok(!(await subjects()).includes('mda down'));
      // The admin looks at it, holds it, releases it; a second one is deleted.
      const [entry] = await sb.json<Array<{ id: string }>>(['queue', 'list']);
      const shown = await sb.json<{
        sender: string;
        header: string;
        recipients: Array<{ address: string; state: string }>;
      }>(['queue', 'show', entry!.id]);
      assert.equal(shown.sender, 'a@ext.org');
      assert.match(shown.header, /Subject: mda down/);
      assert.deepEqual(
        shown.recipients.map((x) => [x.address, x.state]),
        [['bob@example.org', 'pending']],
      );
      assert.deepEqual(await sb.json(['queue', 'hold', entry!.id]), { held: [entry!.id] });
      assert.equal((await sb.json<Array<{ held: boolean }>>(['queue', 'list']))[0]!.held, true);
      assert.deepEqual(await sb.json(['queue', 'release', entry!.id]), { released: [entry!.id] });
      await send('to be deleted');
      const all = await sb.json<Array<{ id: string }>>(['queue', 'list']);
      const doomed = all.find((e) => e.id !== entry!.id)!;
      assert.equal((await sb.run(['queue', 'delete', doomed.id])).code, 0);
      assert.equal((await sb.run(['queue', 'delete', doomed.id])).code, 1);
      assert.equal((await sb.json<unknown[]>(['queue', 'list'])).length, 1);
      const mda = await sb.spawn(['start', '--service', 'mda'], /LMTP \(MDA\)\s+unix:\S+\s+running/, env);
      try {
        // The next try comes when the MTA's pause for the unreachable MDA ends (up to a minute by now); the admin asks for it now.
        assert.equal((await sb.run(['queue', 'retry', 'all'])).code, 0);
        await eventually(async () => (await subjects()).includes('mda down'));
        await eventually(async () => (await sb.json<unknown[]>(['queue', 'list'])).length === 0);
      } finally {
        await mda.kill();
      }
    } finally {
      await mta.kill();
    }
  });

  it('serves IMAP: a client in IDLE sees mail sent through the MTA within a second of its delivery', async () => {
    const svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const client = bobImap();
    try {
      await client.connect();
      const lock = await client.getMailboxLock('INBOX');
      const before = client.mailbox ? client.mailbox.exists : 0;
      let exists = before;
      client.on('exists', (e) => {
        exists = e.count;
      });
      client.idle().catch(() => undefined);
      await send('over imap');
      // From the SMTP reply to the EXISTS: the queue hands it to the MDA, the bus wakes the session.
      await eventually(async () => exists > before, 5000);
      lock.release();
      const got = await client.fetchOne('*', { envelope: true, source: true });
      assert.ok(got);
      assert.equal(got.envelope?.subject, 'over imap');
      assert.match(
        got.source!.toString(),
        /^Return-Path: <a@ext\.org>\r\nDelivered-To: bob@example\.org\r\n/,
      );
      const wrong = new ImapFlow({
        host: '127.0.0.1',
        port: imapsPort,
        secure: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'bob@example.org', pass: 'not it' },
        logger: false,
      });
      await assert.rejects(
        wrong.connect(),
        (err: { authenticationFailed?: boolean; serverResponseCode?: string }) => {
          assert.equal(err.serverResponseCode, 'AUTHENTICATIONFAILED');
          return true;
        },
      );
    } finally {
      await client.logout().catch(() => client.close());
      await svc.kill();
    }
  });

  it('serves POP3: curl lists and retrieves over pop3s what the MTA delivered', async () => {
    const svc = await sb.spawn(['start'], /POP3 \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    try {
      await send('over pop3');
      await eventually(async () => (await subjects()).includes('over pop3'));
      const { execFile } = await import('node:child_process');
      const curl = (url: string) =>
        new Promise<string>((resolve, reject) =>
          execFile('curl', ['-sSk', '--user', 'bob@example.org:a good password', url], (err, out, errOut) =>
            err ? reject(new Error(errOut)) : resolve(out),
          ),
        );
      const list = await curl(`pop3s://127.0.0.1:${pop3sPort}/`);
      const n = list.trim().split('\r\n').length;
      assert.ok(n >= 1);
      assert.match(await curl(`pop3s://127.0.0.1:${pop3sPort}/${n}`), /Subject: over pop3\r\n/);
    } finally {
      await svc.kill();
    }
  });

  it("takes a signed-in user's mail on submission and delivers it; a spoofed From is refused", async () => {
    const svc = await sb.spawn(['start'], /Submission \(STARTTLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const t = bobSubmission();
    try {
      const info = await t.sendMail({
        from: 'bob@example.org',
        to: 'bob@example.org',
        subject: 'note to self',
        text: 'x\n',
      });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as/);
      await eventually(async () => (await subjects()).includes('note to self'));
      await assert.rejects(
        t.sendMail({
          envelope: { from: 'bob@example.org', to: ['bob@example.org'] },
          from: 'boss@example.org',
          to: 'bob@example.org',
          subject: 'spoof',
          text: 'x\n',
        }),
        /553 5\.7\.1/,
      );
    } finally {
      t.close();
      await svc.kill();
    }
  });

  it('logs every refused sign-in on submission, IMAP and POP3 in the one format the fail2ban filter of infra/fail2ban matches', async () => {
    const svc = await sb.spawn(['start'], /Submission \(STARTTLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const { execFile } = await import('node:child_process');
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { connect } = await import('node:tls');
    try {
      // Submission: AUTH with a wrong password (nodemailer, after STARTTLS).
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: submissionPort,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'bob@example.org', pass: 'wrong' },
      });
      await assert.rejects(t.verify(), /535/);
      t.close();
      // IMAP: a wrong password (imapflow over 993's role).
      await refusedImap('nobody@example.org');
      // POP3: USER/PASS with a user name that tries to smuggle another address into the line.
      const pop = connect({ host: '127.0.0.1', port: pop3sPort, rejectUnauthorized: false });
      let said = '';
      pop.on('data', (d: Buffer) => {
        said += d.toString();
      });
      await eventually(async () => said.includes('+OK'));
      pop.write('USER x","ip":"10.9.8.7\r\nPASS wrong\r\n');
      await eventually(async () => /-ERR/.test(said));
      pop.destroy();
      const lines = await eventually(async () => {
        const found = svc
          .output()
          .split('\n')
          .filter((l) => l.includes('"authentication failed"'));
        return found.length >= 3 && found;
      });
      const parsed = lines.map((l) => JSON.parse(l) as Record<string, string>);
      assert.deepEqual(parsed.map((l) => l.service).sort(), ['imap', 'pop3', 'submission']);
      for (const l of parsed) {
        assert.deepEqual(Object.keys(l).slice(0, 8), [
          'time',
          'level',
          'component',
          'msg',
          'service',
          'ip',
          'user',
          'reason',
        ]);
        assert.equal(l.ip, '127.0.0.1');
        assert.equal(l.reason, 'invalid');
      }
      assert.deepEqual(parsed.map((l) => l.user).sort(), [
        'bob@example.org',
        'nobody@example.org',
        'x","ip":"10.9.8.7',
      ]);
      // fail2ban's own tool, with the filter as shipped, against the service's whole output.
      const log = join(sb.dir, 'mailwerk.log');
      await writeFile(log, svc.output());
      const filter = join(
        import.meta.dirname,
        '..',
        '..',
        '..',
        'infra',
        'fail2ban',
        'filter.d',
        'mailwerk.conf',
      );
      const ips = await new Promise<string>((resolve, reject) =>
        execFile('fail2ban-regex', ['--out', 'ip', log, filter], (err, out, errOut) =>
          err ? reject(new Error(`${errOut}${out}`)) : resolve(out),
        ),
      );
      assert.deepEqual(ips.trim().split('\n'), ['127.0.0.1', '127.0.0.1', '127.0.0.1']);
    } finally {
      await svc.kill();
    }
  });

  it('sends outside mail through a relay host with AUTH when mta.relay_host is set (the password from a 0600 file)', async () => {
    const { remoteServer } = await import('../../../packages/mta/test/remote.ts');
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const signIns: string[] = [];
    const relay = await remoteServer({
      disabledCommands: [],
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth(auth, session, cb) {
        signIns.push(`${auth.username}:${auth.password}:${session.secure ? 'tls' : 'plain'}`);
        cb(null, { user: auth.username });
      },
    });
    const secret = join(sb.dir, 'relay-password');
    await writeFile(secret, 'relay secret\n', { mode: 0o600 });
    const svc = await sb.spawn(['start'], /Submission \(STARTTLS\)\s+127\.0\.0\.1:\d+\s+running/, {
      ...env,
      MAILWERK_MTA__RELAY_HOST__HOST: '127.0.0.1',
      MAILWERK_MTA__RELAY_HOST__PORT: String(relay.port),
      MAILWERK_MTA__RELAY_HOST__VERIFY_CERTIFICATE: 'false',
      MAILWERK_MTA__RELAY_HOST__USER: 'relay-user',
      MAILWERK_MTA__RELAY_HOST__PASSWORD_FILE: secret,
    });
    const t = bobSubmission();
    try {
      await t.sendMail({
        from: 'bob@example.org',
        to: 'ann@outside.example',
        subject: 'to the world',
        text: 'x\n',
      });
      const got = await eventually(async () =>
        relay.received.find((m) => m.to.includes('ann@outside.example')),
      );
      assert.equal(got.from, 'bob@example.org');
      assert.match(got.data.toString(), /Subject: to the world/);
      assert.equal(got.secure, true);
      assert.deepEqual(signIns, ['relay-user:relay secret:tls']);
    } finally {
      t.close();
      await svc.kill();
      await relay.close();
    }
  });

  it('takes log_level and mta.routes from the file on mailwerk reload, without a restart, and names the changes that wait for the next start', async () => {
    const { remoteServer } = await import('../../../packages/mta/test/remote.ts');
    const { readFile, writeFile } = await import('node:fs/promises');
    const routed = await remoteServer();
    const original = await readFile(sb.config, 'utf8');
    const svc = await sb.spawn(['start'], /Submission \(STARTTLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const t = bobSubmission();
    try {
      const pids = children(svc.child.pid!);
      const edited = original
        .replace(/^log_level = "info"$/m, 'log_level = "debug"')
        .replace(/^\[mta\.routes\]$/m, `[mta.routes]\n"routed.example" = "127.0.0.1:${routed.port}"`)
        .replace(/^max_connections = 1000$/m, 'max_connections = 77');
      assert.notEqual(edited, original);
      await writeFile(sb.config, edited);
      assert.equal((await sb.run(['config', 'check'], '', env)).code, 0, 'the edited file checks');
      assert.equal((await sb.run(['reload'], '', env)).code, 0);
      const line = await eventually(async () =>
        svc
          .output()
          .split('\n')
          .find((l) => l.includes('"msg":"configuration reloaded"')),
      );
      const logged = JSON.parse(line) as { applied: string[]; atNextStart: string[] };
      assert.deepEqual(logged.applied, ['log_level', 'mta.routes.routed.example']);
      assert.deepEqual(logged.atNextStart, ['limits.max_connections']);
      // The route is taken at once: bob's mail to routed.example goes to the loopback server.
      await t.sendMail({ from: 'bob@example.org', to: 'x@routed.example', subject: 'routed', text: 'x\n' });
      const got = await eventually(async () =>
        routed.received.find((m) => m.to.includes('x@routed.example')),
      );
      assert.match(got.data.toString(), /Subject: routed/);
      // And every service writes debug lines now.
      await eventually(async () => {
        const debug = svc
          .output()
          .split('\n')
          .filter((l) => l.includes('"msg":"reloaded settings taken"'));
        return debug.length === 3 && debug.every((l) => l.includes('"level":"debug"'));
      });
      assert.deepEqual(children(svc.child.pid!), pids, 'no service restarted');
      // A file that does not check changes nothing: one line says why, mail goes on as configured.
      // mailwerk reload says so itself and signals nothing; kill -HUP gets it to the server anyway.
      await writeFile(sb.config, edited.replace('log_level = "debug"', 'log_level = "loud"'));
      const refused = await sb.run(['reload'], '', env);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /log_level/);
      process.kill(svc.child.pid!, 'SIGHUP');
      await eventually(async () =>
        /"msg":"configuration not reloaded: the file does not check; the settings in use stay".*log_level/.test(
          svc.output(),
        ),
      );
      await t.sendMail({ from: 'bob@example.org', to: 'y@routed.example', subject: 'still', text: 'x\n' });
      await eventually(async () => routed.received.find((m) => m.to.includes('y@routed.example')));
      assert.deepEqual(children(svc.child.pid!), pids);
    } finally {
      t.close();
      await svc.kill();
      await routed.close();
      await writeFile(sb.config, original);
    }
  });

  it("files mail as the user's Sieve script says: swaks through the MX, imapflow reads the folder and its flags", async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const script =
      'require ["fileinto", "imap4flags", "mailbox"];\nif header :contains "subject" "[list]" { fileinto :create :flags "\\\\Flagged" "Lists"; }\n';
    assert.equal((await sb.run(['sieve', 'put', 'bob@example.org', 'rules'], script)).code, 0);
    assert.equal((await sb.run(['sieve', 'activate', 'bob@example.org', 'rules'])).code, 0);
    const svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const imap = bobImap();
    try {
      const swaks = (subject: string) =>
        promisify(execFile)('swaks', [
          '--server',
          `127.0.0.1:${port}`,
          '--from',
          'ann@ext.org',
          '--to',
          'bob@example.org',
          '--header',
          `Subject: ${subject}`,
          '--body',
          'hello',
        ]);
      await swaks('[list] weekly news');
      await swaks('just for you');
      await imap.connect();
      const inLists = await eventually(async () => {
        if (!(await imap.list()).some((m) => m.path === 'Lists')) return null;
        const lock = await imap.getMailboxLock('Lists');
        try {
          const found = [];
          for await (const m of imap.fetch('1:*', { envelope: true, flags: true })) found.push(m);
          return found.length ? found : null;
        } finally {
          lock.release();
        }
      });
      assert.equal(inLists.length, 1);
      assert.equal(inLists[0]!.envelope?.subject, '[list] weekly news');
      assert.ok(inLists[0]!.flags?.has('\\Flagged'));
      const lock = await imap.getMailboxLock('INBOX');
      try {
        const subjects = [];
        for await (const m of imap.fetch('1:*', { envelope: true })) subjects.push(m.envelope?.subject);
        assert.ok(subjects.includes('just for you'));
        assert.ok(!subjects.includes('[list] weekly news'));
      } finally {
        lock.release();
      }
    } finally {
      await imap.logout().catch(() => imap.close());
      await svc.kill();
      await sb.run(['sieve', 'deactivate', 'bob@example.org']);
    }
  });

  it('answers with mailwerk vacation once per sender, redirects outside with SRS, and returns a bounce to that SRS address (swaks through the MX, a loopback MX outside)', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { remoteServer } = await import('../../../packages/mta/test/remote.ts');
    const outside = await remoteServer();
    if (!(await sb.json<unknown[]>(['dkim', 'list', 'example.org'])).length)
      assert.equal((await sb.run(['dkim', 'generate', 'example.org'])).code, 0);
    const svc = await sb.spawn(['start'], /Submission \(STARTTLS\)\s+127\.0\.0\.1:\d+\s+running/, {
      ...env,
      MAILWERK_MTA__RELAY_HOST__HOST: '127.0.0.1',
      MAILWERK_MTA__RELAY_HOST__PORT: String(outside.port),
      MAILWERK_MTA__RELAY_HOST__VERIFY_CERTIFICATE: 'false',
    });
    const swaks = (from: string, to: string, subject: string, ...extra: string[]) =>
      promisify(execFile)(
        'swaks',
        [
          '--server',
          `127.0.0.1:${port}`,
          '--from',
          from,
          '--to',
          to,
          '--header',
          `Subject: ${subject}`,
          ...extra.flatMap((h) => ['--header', h]),
          '--body',
          'hello',
        ],
        { timeout: 30_000 },
      );
    /** Waits for the log line of a delivery, then for the queue to be empty: whatever it generated has gone out. */
    const settled = async (line: RegExp) => {
      await eventually(async () => line.test(svc.output()));
      await eventually(async () => (await sb.json<unknown[]>(['queue', 'list'])).length === 0);
    };
    try {
      const on = await sb.run(
        ['vacation', 'bob@example.org', 'on', '--message-file', '-', '--days', '2'],
        'Away until Monday.\n',
        env,
      );
      assert.equal(on.code, 0, on.stderr);
      await swaks('ann@ext.org', 'bob@example.org', 'first');
      const reply = await eventually(async () => outside.received.find((m) => m.to.includes('ann@ext.org')));
      assert.equal(reply.from, '', 'sent with the null sender (RFC 5230 §5.1)');
      const text = reply.data.toString();
      assert.match(text, /^Subject: Auto: first\r$/m);
      assert.match(text, /^Auto-Submitted: auto-replied/m);
      assert.match(text, /^From: bob@example\.org\r$/m);
      assert.match(text, /Away until Monday\./);
      assert.match(text, /^DKIM-Signature: .*d=example\.org/m, "signed with the user's domain's key");
      // Within :days, the same sender gets no second reply; neither does a list, nor <>.
      await swaks('ann@ext.org', 'bob@example.org', 'second');
      await settled(/"msg":"sieve vacation: replied to this sender before"/);
      await swaks('news@lists.example', 'bob@example.org', 'newsletter', 'List-Id: <news.lists.example>');
      await settled(/"why":"the message comes from a mailing list \(list-id\)"/);
      await swaks('<>', 'bob@example.org', 'a bounce');
      await settled(/"why":"the sender is <>"/);
      assert.equal(outside.received.length, 1, outside.received.map((m) => m.to).join(' '));
      assert.equal((await sb.run(['vacation', 'bob@example.org', 'off'], '', env)).code, 0);

      // A redirect outside: the envelope sender rewritten by SRS at example.org.
      assert.equal(
        (
          await sb.run(
            ['sieve', 'put', 'bob@example.org', 'fwd'],
            'redirect "carol@elsewhere.example";\n',
            env,
          )
        ).code,
        0,
      );
      assert.equal((await sb.run(['sieve', 'activate', 'bob@example.org', 'fwd'], '', env)).code, 0);
      await swaks('ann@ext.org', 'bob@example.org', 'pass it on');
      const forwarded = await eventually(async () =>
        outside.received.find((m) => m.to.includes('carol@elsewhere.example')),
      );
      assert.match(forwarded.from, /^SRS0=[A-Z2-7]{6}=[A-Z2-7]{2}=ext\.org=ann@example\.org$/);
      assert.match(forwarded.data.toString(), /^Subject: pass it on\r$/m);
      // carol's server bounces it: the bounce to the SRS address goes back to ann; a forged one is refused.
      await swaks('<>', forwarded.from, 'Undelivered Mail Returned to Sender');
      const returned = await eventually(async () =>
        outside.received.find(
          (m) => m.to.includes('ann@ext.org') && m.data.toString().includes('Undelivered Mail'),
        ),
      );
      assert.equal(returned.from, '');
      const forged = await promisify(execFile)(
        'swaks',
        [
          '--server',
          `127.0.0.1:${port}`,
          '--from',
          '<>',
          '--to',
          'SRS0=AAAAAA=AA=ext.org=ann@example.org',
          '--quit-after',
          'RCPT',
        ],
        { timeout: 30_000 },
      ).catch((err: { stdout: string }) => err);
      assert.match(forged.stdout, /<\*\* 550 5\.1\.1 .*not a valid forwarding address/);
    } finally {
      await svc.kill();
      await outside.close();
      await sb.run(['sieve', 'deactivate', 'bob@example.org'], '', env);
    }
  });

  it("imports a whole account from Mailwerk's own IMAP over TLS (mailwerk import imaps://…), byte for byte", async () => {
    assert.equal((await sb.run(['user', 'add', 'carol@example.org'], 'another password\n')).code, 0);
    const svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const imap = bobImap();
    try {
      await send('to be moved 1');
      await send('to be moved 2');
      await imap.connect();
      const bob = await eventually(async () => {
        const lock = await imap.getMailboxLock('INBOX');
        try {
          const all: Array<{ subject: string; raw: string; flags: string[] }> = [];
          for await (const m of imap.fetch('1:*', { envelope: true, source: true, flags: true }))
            all.push({
              subject: m.envelope?.subject ?? '',
              raw: m.source!.toString('latin1'),
              flags: [...(m.flags ?? [])],
            });
          return all.filter((m) => m.subject.startsWith('to be moved')).length === 2 ? all : null;
        } finally {
          lock.release();
        }
      });
      await imap.messageFlagsAdd({ all: true }, ['$Moved']);
      const r = await sb.run(
        [
          'import',
          'carol@example.org',
          `imaps://127.0.0.1:${imapsPort}`,
          '--user',
          'bob@example.org',
          '--insecure',
        ],
        'a good password\n',
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      // Every folder of bob's comes along (earlier tests left mail in more than INBOX); INBOX is compared here.
      assert.match(
        r.stdout,
        /^imported into carol@example\.org: \d+ messages \(\d+ read, [\d.]+ MiB\); 0 there already\n$/,
      );
      const carol = new ImapFlow({
        host: '127.0.0.1',
        port: imapsPort,
        secure: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'carol@example.org', pass: 'another password' },
        logger: false,
      });
      await carol.connect();
      try {
        const lock = await carol.getMailboxLock('INBOX');
        try {
          const got: string[] = [];
          for await (const m of carol.fetch('1:*', { source: true, flags: true })) {
            assert.ok(m.flags?.has('$Moved'), 'keywords come along');
            got.push(m.source!.toString('latin1'));
          }
          assert.deepEqual(got.sort(), bob.map((m) => m.raw).sort());
        } finally {
          lock.release();
        }
      } finally {
        await carol.logout();
      }
    } finally {
      await imap.logout().catch(() => imap.close());
      await svc.kill();
    }
  });

  it("fetches from Mailwerk's own IMAP and POP3 over TLS (mailwerk fetch), each message once", async () => {
    assert.equal((await sb.run(['user', 'add', 'dave@example.org'], 'dave password\n')).code, 0);
    assert.equal((await sb.run(['user', 'add', 'erik@example.org'], 'erik password\n')).code, 0);
    const svc = await sb.spawn(['start'], /POP3 \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    const imap = bobImap();
    try {
      await send('to be fetched');
      await imap.connect();
      const inbox = await eventually(async () => {
        const st = await imap.status('INBOX', { messages: true });
        const lock = await imap.getMailboxLock('INBOX');
        try {
          const found = await imap.search({ subject: 'to be fetched' });
          return found && found.length === 1 && st ? st.messages! : null;
        } finally {
          lock.release();
        }
      });
      const add = async (user: string, args: string[]) => {
        const r = await sb.run(
          ['fetch', 'add', user, ...args, '--user', 'bob@example.org', '--insecure'],
          'a good password\n',
          env,
        );
        assert.equal(r.code, 0, r.stderr);
      };
      await add('dave@example.org', [`127.0.0.1:${imapsPort}`, '--imap']);
      await add('erik@example.org', [`127.0.0.1:${pop3sPort}`, '--pop3', '--keep']);
      for (const user of ['dave@example.org', 'erik@example.org']) {
        const first = await sb.run(['fetch', 'run', user], '', env);
        assert.equal(first.code, 0, first.stderr);
        assert.match(first.stdout, new RegExp(`: ${inbox} fetched$`, 'm'));
        assert.match(
          (await sb.run(['fetch', 'run', user], '', env)).stdout,
          /: 0 fetched$/m,
          'nothing twice',
        );
        const listed = await sb.json<Listing>(['mail', 'list', user]);
        assert.equal(listed.messages.filter((m) => m.subject === 'to be fetched').length, 1);
      }
    } finally {
      await imap.logout().catch(() => imap.close());
      await svc.kill();
    }
  });

  it('with rspamd and Redis configured, scans mail on the MX and shares its counters', async () => {
    const { startRspamd } = await import('../../../packages/mta/test/rspamd-server.ts');
    const { startRedis } = await import('../../../packages/limits/test/redis-server.ts');
    const rspamd = await startRspamd();
    const redis = await startRedis();
    const svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, {
      ...env,
      MAILWERK_RSPAMD__URL: rspamd.url,
      MAILWERK_REDIS__URL: redis.url,
    });
    try {
      const gtube = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
      await assert.rejects(send('gtube', `${gtube}\n`), (err: { response?: string }) => {
        assert.match(err.response ?? '', /^550 5\.7\.1 Gtube pattern/);
        return true;
      });
      await send('scanned and clean');
      await eventually(async () => (await subjects()).includes('scanned and clean'));
      // The MX counted this client's connections in Redis.
      const { Redis } = await import('ioredis');
      const client = new Redis(redis.url);
      const keys = await client.keys('mailwerk:mx:conn:*');
      await client.quit();
      assert.ok(keys.length >= 1, `keys ${keys.join(', ')}`);
    } finally {
      await svc.kill();
      await redis.stop();
      await rspamd.stop();
    }
  });

  it('answers Thunderbird and Outlook account setup when access.autoconfig is on', async () => {
    const httpPort = await freePort();
    const svc = await sb.spawn(['start'], /Autoconfig \(HTTPS\)\s+127\.0\.0\.1:\d+\s+running/, {
      ...env,
      MAILWERK_ACCESS__AUTOCONFIG: 'true',
      MAILWERK_ACCESS__AUTOCONFIG_HTTP_PORT: String(httpPort),
      MAILWERK_ACCESS__AUTOCONFIG_HTTPS_PORT: String(await freePort()),
    });
    try {
      const res = await fetch(
        `http://127.0.0.1:${httpPort}/mail/config-v1.1.xml?emailaddress=bob%40example.org`,
      );
      assert.equal(res.status, 200);
      const xml = await res.text();
      assert.match(
        xml,
        /<hostname>mx\.example\.org<\/hostname>\s*<port>\d+<\/port>\s*<socketType>SSL<\/socketType>/,
      );
      assert.ok(xml.includes(`<port>${imapsPort}</port>`));
      assert.equal(
        (await fetch(`http://127.0.0.1:${httpPort}/mail/config-v1.1.xml?emailaddress=x%40other.example`))
          .status,
        404,
      );
    } finally {
      await svc.kill();
    }
  });

  it('counts what it did on the admin port (/metrics), answers /healthz and /readyz, and mailwerk status shows it', async () => {
    const adminPort = await freePort();
    const withAdmin = { ...env, MAILWERK_ADMIN__PORT: String(adminPort) };
    const svc = await sb.spawn(['start'], /Admin \(HTTP\)\s+127\.0\.0\.1:\d+\s+running/, withAdmin);
    const admin = (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`);
    /** The value of one sample of the metrics text, or 0 when it is not there. */
    const sample = (text: string, line: string) => {
      const m = new RegExp(`^${line.replace(/[{}()[\]|.+*?^$\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    try {
      assert.equal((await admin('/healthz')).status, 200);
      const ready = await admin('/readyz');
      assert.equal(ready.status, 200);
      const body = (await ready.json()) as { services: Array<{ service: string; state: string }> };
      assert.deepEqual(
        body.services.map((x) => [x.service, x.state]),
        [
          ['mta', 'running'],
          ['mda', 'running'],
          ['access', 'running'],
        ],
      );
      await send('counted 1');
      await send('counted 2');
      await eventually(async () => {
        const have = await subjects();
        return have.includes('counted 1') && have.includes('counted 2');
      });
      await refusedImap('bob@example.org');
      const text = await eventually(async () => {
        const t = await (await admin('/metrics')).text();
        // Delivery is recorded after the LMTP reply: wait for both.
        return sample(t, 'mailwerk_messages_total{event="delivered"}') >= 2 && t;
      });
      assert.equal(sample(text, 'mailwerk_messages_total{event="received"}'), 2);
      assert.ok(sample(text, 'mailwerk_connections_total{service="SMTP (MX)"}') >= 2);
      assert.ok(sample(text, 'mailwerk_connections_total{service="LMTP (MDA)"}') >= 1);
      assert.equal(sample(text, 'mailwerk_auth_failures_total{service="imap",reason="invalid"}'), 1);
      assert.equal(
        // imapflow signs in with AUTHENTICATE PLAIN (SASL-IR).
        sample(text, 'mailwerk_command_seconds_count{protocol="imap",command="AUTHENTICATE",outcome="NO"}'),
        1,
      );
      assert.ok(sample(text, 'mailwerk_delivery_seconds_count') >= 2);
      assert.equal(sample(text, 'mailwerk_service_up{service="mda"}'), 1);
      assert.equal(sample(text, 'mailwerk_service_restarts_total{service="access"}'), 0);
      assert.match(text, /^mailwerk_queue_messages \d+$/m);
      // The Grafana dashboard in infra/ asks only for metrics the server exports.
      const { readFile } = await import('node:fs/promises');
      const { join } = await import('node:path');
      const dashboard = await readFile(
        join(import.meta.dirname, '..', '..', '..', 'infra', 'grafana', 'mailwerk-dashboard.json'),
        'utf8',
      );
      const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
      const asked = new Set(
        [...dashboard.matchAll(/mailwerk_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')),
      );
      assert.ok(asked.size >= 10);
      for (const name of asked) assert.ok(exported.has(name), `${name} is on the dashboard but not exported`);
      // The admin's view.
      const status = await sb.run(['status'], '', withAdmin);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /^mailwerk \d+\.\d+\.\d+ \(Node/);
      assert.match(status.stdout, /^mta\s+running\s+\d+\s+0\s+SMTP \(MX\) 127\.0\.0\.1:\d+/m);
      assert.match(status.stdout, /^queue: \d+ messages/m);
      assert.match(status.stdout, /^certificate: .*mx\.example\.org.*valid until \d{4}-/m);
      const json = JSON.parse((await sb.run(['--json', 'status'], '', withAdmin)).stdout) as {
        running: boolean;
        services: unknown[];
      };
      assert.equal(json.running, true);
      assert.equal(json.services.length, 3);
    } finally {
      await svc.kill();
    }
    const stopped = await sb.run(['status'], '', withAdmin);
    assert.equal(stopped.code, 3);
    assert.match(stopped.stdout, /mailwerk is not running \(nothing answers on 127\.0\.0\.1:\d+\)/);
  });

  it('backs the store up while mail arrives; restored, it holds every message answered 250 before the backup began', async () => {
    const { join } = await import('node:path');
    const file = join(sb.dir, 'backup.sqlite');
    let svc = await sb.spawn(['start'], /SMTP \(MX\)\s+127\.0\.0\.1:\d+\s+running/, env);
    try {
      const before: string[] = [];
      for (let i = 0; i < 8; i++) {
        const info = await send(`before backup ${i}`);
        assert.match(info.response, /^250 /);
        before.push(`before backup ${i}`);
      }
      // Mail keeps arriving while the backup is taken (a few: the MX limits connections per address and minute).
      let sending = true;
      let during = 0;
      const sender = (async () => {
        while (sending && during < 6) await send(`during backup ${during++}`);
      })();
      await eventually(async () => during >= 2);
      const r = await sb.run(['backup', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^backup written to .*backup\.sqlite \(schema \d+\)\n$/);
      // A restore while the server runs is refused, and changes nothing.
      const refused = await sb.run(['restore', file]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /in use: stop mailwerk before restoring/);
      sending = false;
      await sender;
      await svc.kill();
      const restored = await sb.run(['restore', file]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.match(restored.stdout, /the store it replaced is .*before-restore/);
      // Started on the restored store: what was answered 250 before the backup is there (delivered from the
      // queue it was copied with, where it was still waiting).
      svc = await sb.spawn(['start'], /SMTP \(MX\)\s+127\.0\.0\.1:\d+\s+running/, env);
      await eventually(async () => {
        const have = await subjects();
        return before.every((s) => have.includes(s));
      });
    } finally {
      await svc.kill();
    }
  });

  it('says clearly when its port is taken, and exits 1', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const r = await sb.run(['start'], '', env);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /^mailwerk: cannot listen on 127\.0\.0\.1:\d+: the address is in use by another program\n$/,
      );
    } finally {
      blocker.close();
    }
  });
});
