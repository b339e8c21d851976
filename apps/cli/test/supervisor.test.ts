// `mailwerk start` runs every service in a process of its own under a supervisor: a service that crashes
// or stalls is started again while the others keep answering, and SIGTERM ends everything within a bound,
// even a service whose event loop is stuck. A stuck process is made with SIGSTOP (it neither runs nor
// answers, exactly like a spinning event loop, and needs no hook in the product).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { children, freePort, type Sandbox, type Service, sandbox } from './helpers.ts';

/** Resolves with the first line a server sends, or rejects after `ms`. */
function greeting(port: number, ms: number, secure = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = secure
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no greeting from port ${port} within ${ms} ms`));
    }, ms);
    s.once('data', (d) => {
      clearTimeout(timer);
      s.destroy();
      resolve(d.toString());
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function until<T>(
  check: () => T | false | undefined | Promise<T | false | undefined>,
  ms: number,
  what: string,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A raw IMAP client over TLS: sends exactly the command given and collects the reply up to its tagged line. */
class RawImaps {
  private buffer = '';
  private readonly socket;
  private n = 0;
  constructor(port: number) {
    this.socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.buffer += d;
    });
    this.socket.on('error', () => undefined);
  }
  async wait(re: RegExp, ms: number): Promise<string> {
    return until(() => re.exec(this.buffer)?.[0], ms, `IMAP reply ${re}`);
  }
  /** Sends `command` (a literal's bytes may follow in `then`); resolves with everything up to the tagged reply. */
  async cmd(command: string, ms = 20_000): Promise<string> {
    const tag = `h${++this.n}`;
    this.buffer = '';
    this.socket.write(`${tag} ${command}\r\n`);
    await this.wait(new RegExp(`^${tag} (OK|NO|BAD)`, 'm'), ms);
    return this.buffer;
  }
  close() {
    this.socket.destroy();
  }
}

describe('mailwerk start: one process per service, supervised', () => {
  let sb: Sandbox;
  let env: Record<string, string>;
  let smtp: number;
  let imaps: number;
  let sieve: number;
  before(async () => {
    sb = await sandbox();
    smtp = await freePort();
    imaps = await freePort();
    sieve = await freePort();
    env = {
      MAILWERK_MTA__SMTP_PORT: String(smtp),
      MAILWERK_MTA__LISTEN: '127.0.0.1',
      MAILWERK_CHECKS__AUTHENTICATION: 'false',
      MAILWERK_MTA__SUBMISSION_PORT: String(await freePort()),
      MAILWERK_MTA__SUBMISSIONS_PORT: String(await freePort()),
      MAILWERK_ACCESS__LISTEN: '127.0.0.1',
      MAILWERK_ACCESS__IMAP_PORT: String(await freePort()),
      MAILWERK_ACCESS__IMAPS_PORT: String(imaps),
      MAILWERK_ACCESS__POP3_PORT: String(await freePort()),
      MAILWERK_ACCESS__POP3S_PORT: String(await freePort()),
      MAILWERK_ACCESS__MANAGESIEVE_PORT: String(sieve),
      MAILWERK_SUPERVISOR__WATCHDOG_SECONDS: '3',
      MAILWERK_SUPERVISOR__STOP_TIMEOUT_SECONDS: '2',
    };
    assert.equal((await sb.run(['init', '--data-dir', 'data', '--hostname', 'mx.example.org'])).code, 0);
  });
  after(() => sb.cleanup());

  const start = (): Promise<Service> => sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);

  it('runs the MTA, the MDA and the access services as three processes', async () => {
    const svc = await start();
    try {
      assert.deepEqual(Object.keys(children(svc.child.pid!)).sort(), ['access', 'mda', 'mta']);
    } finally {
      await svc.kill();
    }
  });

  it('started as root, runs every service as the unprivileged user and gives it the data; the supervisor alone stays root', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root (CI runs as root)');
    const svc = await start();
    try {
      const user = (pid: number) =>
        execFileSync('ps', ['-o', 'user=', '-p', String(pid)])
          .toString()
          .trim();
      assert.equal(user(svc.child.pid!), 'root');
      const services = children(svc.child.pid!);
      assert.equal(Object.keys(services).length, 3);
      for (const [name, pid] of Object.entries(services)) assert.equal(user(pid), 'nobody', name);
      const nobody = Number(execFileSync('id', ['-u', 'nobody']).toString());
      const { statSync } = await import('node:fs');
      const { join } = await import('node:path');
      for (const f of ['data', 'data/mailwerk.sqlite', 'data/tls/key.pem', 'data/lmtp.sock'])
        assert.equal(statSync(join(sb.dir, f)).uid, nobody, f);
      // Bound as root, served as nobody: the MX, IMAP and ManageSieve answer (other tests deliver mail through them).
      assert.match(await greeting(smtp, 2000), /^220 /);
      assert.match(await greeting(imaps, 2000, true), /^\* OK/);
      assert.match(await greeting(sieve, 2000), /^"IMPLEMENTATION" "Mailwerk"/);
    } finally {
      await svc.kill();
    }
  });

  it("refuses to start as root when the services' user could not reach the data directory, saying which directory", async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root (CI runs as root)');
    const { chmod } = await import('node:fs/promises');
    await chmod(sb.dir, 0o700);
    try {
      const r = await sb.run(['start'], '', env);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /the user "nobody" cannot reach .*data: .* is not searchable by it \(chmod o\+x /,
      );
    } finally {
      await chmod(sb.dir, 0o755);
    }
  });

  it('takes new certificate files on mailwerk reload (SIGHUP) and by itself when they change, without dropping a connection', async () => {
    const { generateSelfSigned } = await import('@mailwerk/tls');
    const { chown, stat, writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const tlsDir = join(sb.dir, 'data', 'tls');
    /** The certificate a new connection is shown: over 993, and on the MX after STARTTLS. */
    const imapsCert = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: imaps, rejectUnauthorized: false }, () => {
          const subject = s.getPeerCertificate().subject.CN;
          s.destroy();
          resolve(String(subject));
        });
        s.once('error', reject);
      });
    const smtpCert = () =>
      new Promise<string>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: smtp });
        let said = '';
        s.on('data', (d: Buffer) => {
          said += d.toString();
          if (/^220 /m.test(said) && !said.includes('EHLO-SENT')) {
            said += 'EHLO-SENT';
            s.write('EHLO test.example\r\nSTARTTLS\r\n');
          } else if (/^220 [\d.]* ?.*TLS|Ready to start TLS/im.test(said.split('EHLO-SENT')[1] ?? '')) {
            s.removeAllListeners('data');
            const t = tlsConnect({ socket: s, rejectUnauthorized: false }, () => {
              const subject = t.getPeerCertificate().subject.CN;
              t.destroy();
              resolve(String(subject));
            });
            t.once('error', reject);
          }
        });
        s.once('error', reject);
      });
    /** Writes a new certificate for `name` as an admin would: in place, owned by the services' user. */
    const install = async (name: string, keyOf = name) => {
      const owner = await stat(join(sb.dir, 'data'));
      const cert = await generateSelfSigned(name);
      const key = keyOf === name ? cert.key : (await generateSelfSigned(keyOf)).key;
      await writeFile(join(tlsDir, 'key.pem'), key, { mode: 0o600 });
      await writeFile(join(tlsDir, 'cert.pem'), cert.cert);
      for (const f of ['key.pem', 'cert.pem']) await chown(join(tlsDir, f), owner.uid, owner.gid);
    };
    const svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, {
      ...env,
      MAILWERK_TLS__RELOAD_CHECK_SECONDS: '1',
    });
    try {
      assert.equal(await imapsCert(), 'mx.example.org');
      // A connection open across the reloads.
      const open = tlsConnect({ host: '127.0.0.1', port: imaps, rejectUnauthorized: false });
      let heard = '';
      open.on('data', (d: Buffer) => {
        heard += d.toString();
      });
      await until(() => heard.includes('* OK'), 5000, 'greeting');
      await install('reloaded.example');
      const r = await sb.run(['reload'], '', env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^asked mailwerk \(pid \d+\) to reload; its log says what it did/);
      await until(
        async () => (await imapsCert()) === 'reloaded.example',
        5000,
        'IMAP shows the new certificate',
      );
      await until(
        async () => (await smtpCert()) === 'reloaded.example',
        5000,
        'the MX shows it after STARTTLS',
      );
      // Replaced again, no signal: noticed by the check of the files.
      await install('watched.example');
      await until(async () => (await imapsCert()) === 'watched.example', 10_000, 'noticed without SIGHUP');
      // A key that does not belong to the certificate is refused; the one in use stays.
      await install('broken.example', 'another.example');
      await until(() => svc.output().includes('certificate not reloaded'), 10_000, 'the refusal in the log');
      assert.equal(await imapsCert(), 'watched.example');
      // Nothing ended: the open connection answers, the supervisor runs, no service was restarted.
      open.write('a1 NOOP\r\n');
      await until(() => heard.includes('a1 OK'), 5000, 'the open connection answers');
      open.destroy();
      assert.equal(svc.child.exitCode, null);
      assert.doesNotMatch(svc.output(), /service exited/);
    } finally {
      await svc.kill();
      // A whole pair again for the tests after this one, which start on the same data directory.
      await install('mx.example.org');
    }
    assert.equal((await sb.run(['reload'], '', env)).code, 3);
  });

  it('starts a service killed with SIGKILL again, while the others keep answering', async () => {
    const svc = await start();
    try {
      const before = children(svc.child.pid!);
      process.kill(before.access!, 'SIGKILL');
      // The MX is another process: it answers at once.
      assert.match(await greeting(smtp, 1000), /^220 /);
      const again = await until(
        () => {
          const now = children(svc.child.pid!);
          return now.access && now.access !== before.access ? now : false;
        },
        10_000,
        'a new access process',
      );
      assert.equal(again.mta, before.mta);
      assert.equal(again.mda, before.mda);
      assert.match(
        await until(() => greeting(imaps, 1000, true).catch(() => false), 10_000, 'IMAP again'),
        /^\* OK /,
      );
      assert.match(
        svc.output(),
        /"msg":"service exited; starting it again","service":"access","signal":"SIGKILL"/,
      );
    } finally {
      await svc.kill();
    }
  });

  it('notices a stalled service (its event loop does not turn), reports it, and replaces it; the MX answers meanwhile', async () => {
    const svc = await start();
    try {
      const before = children(svc.child.pid!);
      process.kill(before.access!, 'SIGSTOP');
      assert.match(await greeting(smtp, 1000), /^220 /);
      await until(
        () => /"msg":"service stalled; killing it","service":"access"/.test(svc.output()),
        8000,
        'the watchdog',
      );
      await until(
        () => {
          const now = children(svc.child.pid!).access;
          return now && now !== before.access;
        },
        10_000,
        'a new access process',
      );
      assert.match(
        await until(() => greeting(imaps, 1000, true).catch(() => false), 10_000, 'IMAP again'),
        /^\* OK /,
      );
    } finally {
      await svc.kill();
    }
  });

  it('answers the hostile IMAP requests of the hardening issue without stopping anything: the MX greets within 1 s all along', async () => {
    assert.equal((await sb.run(['domain', 'add', 'example.org'])).code, 0);
    assert.equal((await sb.run(['user', 'add', 'eve@example.org'], 'a password for eve')).code, 0);
    const svc = await start();
    const c = new RawImaps(imaps);
    try {
      const pids = children(svc.child.pid!);
      // A message anyone can mail in: a Cc: of 100,000 addresses (about 2 MB, folded into lines).
      const cc = Array.from({ length: 100_000 }, (_, i) => `u${i}@example.net`).join(',\r\n ');
      const mx = connect({ host: '127.0.0.1', port: smtp });
      mx.setEncoding('latin1');
      let said = '';
      mx.on('data', (d: string) => {
        said += d;
      });
      const step = async (line: string | null, want: RegExp) => {
        const from = said.length;
        if (line !== null) mx.write(`${line}\r\n`);
        await until(() => want.test(said.slice(from)), 10_000, `SMTP ${want}`);
      };
      await step(null, /^220 /m);
      await step('EHLO client.example', /^250 /m);
      await step('MAIL FROM:<a@ext.org>', /^250 /m);
      await step('RCPT TO:<eve@example.org>', /^250 /m);
      await step('DATA', /^354 /m);
      await step(`From: a@ext.org\r\nCc: ${cc}\r\nSubject: many\r\n\r\nhi\r\n.`, /^250 /m);
      mx.end();
      await c.wait(/^\* OK /m, 10_000);
      assert.match(await c.cmd('LOGIN eve@example.org "a password for eve"'), /OK/);
      await until(async () => /\* [1-9]\d* EXISTS/.test(await c.cmd('SELECT INBOX')), 15_000, 'the delivery');
      // Each hostile request, with the MX's greeting timed while it runs.
      for (const hostile of [
        `SEARCH ${'OR ALL '.repeat(3000)}ALL`,
        'SEARCH SUBJECT NIL',
        `LIST "" "${'*%'.repeat(200)}x"`,
        'FETCH 1 (ENVELOPE)',
        'FETCH 1 (BODYSTRUCTURE)',
      ]) {
        const answer = c.cmd(hostile, 30_000);
        const t = Date.now();
        assert.match(await greeting(smtp, 1000), /^220 /);
        assert.ok(Date.now() - t < 1000);
        assert.match(await answer, /^h\d+ (OK|NO|BAD)/m, hostile.slice(0, 30));
      }
      // Nothing was restarted.
      assert.deepEqual(children(svc.child.pid!), pids);
      assert.doesNotMatch(svc.output(), /service exited|service stalled/);
    } finally {
      c.close();
      await svc.kill();
    }
  });

  it('stops every process within the bound on SIGTERM, even one that is stuck', async () => {
    const svc = await start();
    const pids = children(svc.child.pid!);
    process.kill(pids.mda!, 'SIGSTOP');
    const t = Date.now();
    await svc.kill('SIGTERM');
    const took = Date.now() - t;
    assert.ok(took < 6000, `took ${took} ms (stop timeout 2 s)`);
    for (const [name, pid] of Object.entries(pids)) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
      assert.equal(alive, false, `${name} (${pid}) still runs`);
    }
    assert.match(svc.output(), /"msg":"service did not stop in time; killing it","service":"mda"/);
  });

  it('does not leave its services running when the supervisor itself is killed', async () => {
    const svc = await start();
    const pids = children(svc.child.pid!);
    await svc.kill('SIGKILL');
    await until(
      () =>
        Object.values(pids).every((pid) => {
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        }),
      5000,
      'the services to end',
    );
  });
});
