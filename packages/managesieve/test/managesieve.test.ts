// ManageSieve against a real server on loopback (SQLite store in a temporary directory): sieve-connect,
// the Debian client, uploads, activates and lists over STARTTLS; a bare client checks the protocol's
// corners (RFC 5804) one reply at a time.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import { DEFAULT_MAILBOXES, type MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { ManageSieveService } from '../src/index.ts';

const PASSWORD = 'a sieve password';
const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/** One command at a time; resolves with everything up to and including the final OK/NO/BYE line. */
class Client {
  private buf = '';
  private waiter: (() => void) | null = null;
  socket: Socket;
  constructor(socket: Socket) {
    this.socket = socket;
    this.listen();
  }
  private listen() {
    this.socket.on('data', (d: Buffer) => {
      this.buf += d.toString();
      this.waiter?.();
    });
  }
  static async open(port: number): Promise<Client> {
    const s = connect({ host: '127.0.0.1', port });
    await new Promise((r) => s.once('connect', r));
    return new Client(s);
  }
  /** The response up to its final line (OK, NO or BYE, not inside a literal). */
  async response(): Promise<string> {
    const end = Date.now() + 5000;
    for (;;) {
      const m = /(^|\r\n)(OK|NO|BYE)( [^\r\n]*)?\r\n/.exec(this.buf);
      if (m) {
        const cut = m.index + m[0].length;
        const out = this.buf.slice(0, cut);
        this.buf = this.buf.slice(cut);
        return out;
      }
      if (Date.now() > end) throw new Error(`no final response: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
  }
  cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.response();
  }
  async startTls(): Promise<string> {
    assert.match(await this.cmd('STARTTLS'), /^OK/);
    this.socket.removeAllListeners('data');
    const t = tlsConnect({ socket: this.socket, rejectUnauthorized: false });
    await new Promise((r) => t.once('secureConnect', r));
    this.socket = t;
    this.listen();
    return this.response();
  }
}

describe('ManageSieve (RFC 5804)', () => {
  let dir: string;
  let store: MailStore;
  let service: ManageSieveService;
  let port: number;
  let bob: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-sieve-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
    bob = (
      await store.createAccount({
        address: 'bob@example.org',
        passwordHash: await hashPassword(PASSWORD),
        mailboxes: [...DEFAULT_MAILBOXES],
      })
    ).id;
    service = new ManageSieveService({
      store,
      hostname: 'mail.example.org',
      tls: await generateSelfSigned('mail.example.org'),
      allowPlaintext: false,
      throttle: new AuthThrottle({ baseDelayMs: 50, maxDelayMs: 100 }),
      maxScriptSize: 4096,
      maxScripts: 3,
    });
    const server = service.server();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    await service.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** sieve-connect with bob's password on fd 3; resolves with its exit code and output. */
  const sieveConnect = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(
        'sieve-connect',
        [
          '--server',
          '127.0.0.1',
          '--port',
          String(port),
          '--user',
          'bob@example.org',
          '--passwordfd',
          '3',
          '--notlsverify',
          ...args,
        ],
        { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
      });
      child.stderr!.on('data', (d) => {
        out += d;
      });
      (child.stdio[3] as NodeJS.WritableStream).end(`${PASSWORD}\n`);
      child.on('close', (code) => resolve({ code, out }));
    });

  it('sieve-connect uploads, activates and lists a script over STARTTLS; a script with a mistake is refused with its line', {
    skip: !existsSync('/usr/bin/sieve-connect') && 'needs sieve-connect (scripts/test-deps.sh)',
  }, async () => {
    const file = join(dir, 'rules.sieve');
    const script =
      'require ["fileinto"];\r\nif header :contains "subject" "[list]" {\r\n  fileinto "Lists";\r\n}\r\n';
    await writeFile(file, script);
    const up = await sieveConnect(['--upload', '--localsieve', file, '--remotesieve', 'rules']);
    assert.equal(up.code, 0, up.out);
    const act = await sieveConnect(['--activate', '--remotesieve', 'rules']);
    assert.equal(act.code, 0, act.out);
    const list = await sieveConnect(['--list']);
    assert.equal(list.code, 0, list.out);
    assert.match(list.out, /"rules" ACTIVE/);
    const active = await store.getActiveSieveScript(bob);
    assert.equal(active?.name, 'rules');
    assert.equal(active?.content, script);
    await writeFile(file, 'if header :contains "subject" "x" {\n  fileinto "Lists";\n}\n');
    const bad = await sieveConnect(['--upload', '--localsieve', file, '--remotesieve', 'broken']);
    assert.notEqual(bad.code, 0);
    assert.match(
      bad.out,
      /PUTSCRIPT\(broken\) failed: NO "line 2, column 3: fileinto: needs require \\"fileinto\\""/,
    );
    assert.equal(await store.getSieveScript(bob, 'broken'), null, 'nothing stored');
  });

  it('answers the protocol as RFC 5804 says: capabilities, TLS first, quotas, the active script, renames', async () => {
    const c = await Client.open(port);
    const greeting = await c.response();
    assert.match(greeting, /^"IMPLEMENTATION" "Mailwerk"\r\n/);
    assert.match(greeting, /"SIEVE" "[^"]*fileinto[^"]*"/);
    assert.match(greeting, /"SASL" ""\r\n/, 'no mechanism before TLS');
    assert.match(greeting, /"STARTTLS"/);
    assert.match(
      await c.cmd(`AUTHENTICATE "PLAIN" "${plain('bob@example.org', PASSWORD)}"`),
      /^NO \(ENCRYPT-NEEDED\)/,
    );
    const afterTls = await c.startTls();
    assert.match(afterTls, /"SASL" "PLAIN LOGIN"/, 'the capabilities again, unasked, after STARTTLS');
    assert.doesNotMatch(afterTls, /"STARTTLS"/);
    assert.match(await c.cmd('LISTSCRIPTS'), /^NO "LISTSCRIPTS: sign in first"/);
    assert.match(
      await c.cmd(`AUTHENTICATE "PLAIN" "${plain('bob@example.org', 'wrong')}"`),
      /^NO "Invalid user name or password"/,
    );
    assert.match(await c.cmd(`AUTHENTICATE "PLAIN" "${plain('bob@example.org', PASSWORD)}"`), /^OK/);
    assert.match(await c.cmd('HAVESPACE "big" 5000'), /^NO \(QUOTA\/MAXSIZE\)/);
    assert.match(
      await c.cmd('PUTSCRIPT "bad" {11+}\r\nfileinto;\r\n'),
      /^NO .*line 1, column 1: fileinto: needs require/,
    );
    assert.match(await c.cmd('CHECKSCRIPT {5+}\r\nkeep;'), /^OK/);
    assert.match(await c.cmd('PUTSCRIPT "one" {5+}\r\nkeep;'), /^OK/);
    assert.match(await c.cmd('PUTSCRIPT "two" {8+}\r\ndiscard;'), /^OK/);
    assert.match(await c.cmd('SETACTIVE "one"'), /^OK/);
    assert.match(await c.cmd('SETACTIVE "nothing"'), /^NO \(NONEXISTENT\)/);
    assert.match(await c.cmd('DELETESCRIPT "one"'), /^NO \(ACTIVE\)/);
    assert.match(await c.cmd('RENAMESCRIPT "one" "two"'), /^NO \(ALREADYEXISTS\)/);
    assert.match(await c.cmd('RENAMESCRIPT "one" "first"'), /^OK/);
    assert.equal(
      (await store.getActiveSieveScript(bob))?.name,
      'first',
      'the active script keeps being active under its new name',
    );
    // rules (from the sieve-connect test, or not), first and two: the next new one may be over the count.
    const count = (await store.listSieveScripts(bob)).length;
    assert.match(
      await c.cmd('PUTSCRIPT "four" {5+}\r\nkeep;'),
      count >= 3 ? /^NO \(QUOTA\/MAXSCRIPTS\)/ : /^OK/,
    );
    const list = await c.cmd('LISTSCRIPTS');
    assert.match(list, /"first" ACTIVE\r\n/);
    assert.match(list, /"two"\r\n/);
    assert.match(await c.cmd('GETSCRIPT "two"'), /^\{8\}\r\ndiscard;\r\nOK/);
    assert.match(await c.cmd('NOOP "abc"'), /^OK \(TAG "abc"\) "Done"/);
    assert.match(await c.cmd('SETACTIVE ""'), /^OK/);
    assert.equal(await store.getActiveSieveScript(bob), null);
    assert.match(await c.cmd('UNAUTHENTICATE'), /^OK/);
    assert.match(await c.cmd('LISTSCRIPTS'), /^NO/);
    const closed = new Promise((r) => c.socket.once('close', r));
    assert.match(await c.cmd('LOGOUT'), /^OK "Bye"/);
    await closed;
  });

  it('signs in with SASL LOGIN step by step, and cancels on "*"', async () => {
    const c = await Client.open(port);
    await c.response();
    await c.startTls();
    c.socket.write('AUTHENTICATE "LOGIN"\r\n');
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    // The challenges are strings; the client answers each with a string.
    await new Promise((r) => setTimeout(r, 0));
    c.socket.write(`"${b64('bob@example.org')}"\r\n"${b64(PASSWORD)}"\r\n`);
    const r = await c.response();
    assert.match(r, /^"VXNlcm5hbWU6"\r\n"UGFzc3dvcmQ6"\r\nOK/);
    const d = await Client.open(port);
    await d.response();
    await d.startTls();
    d.socket.write('AUTHENTICATE "PLAIN"\r\n"*"\r\n');
    assert.match(await d.response(), /NO "Authentication cancelled"/);
    c.socket.destroy();
    d.socket.destroy();
  });
});
