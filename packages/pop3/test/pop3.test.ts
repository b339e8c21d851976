// POP3 against python3's poplib and curl (pop3 with STLS, pop3s), over loopback TLS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { uidl } from '../src/index.ts';
import { curl, message, PASSWORD, python, type Rig, rig } from './harness.ts';

const PRELUDE = `
import poplib, ssl, json, os
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def tls():
    return poplib.POP3_SSL('127.0.0.1', int(os.environ['TLS_PORT']), context=ctx, timeout=10)
def plain():
    return poplib.POP3('127.0.0.1', int(os.environ['PORT']), timeout=10)
def err(f):
    try:
        f()
        return None
    except poplib.error_proto as e:
        return e.args[0].decode('latin1')
def login(p, user='bob@example.org'):
    p.user(user)
    return p.pass_(os.environ['PASSWORD']).decode()
def text(lines):
    return '\\r\\n'.join(l.decode('latin1') for l in lines)
`;

describe('POP3', () => {
  let r: Rig;
  let env: Record<string, string>;
  const dotted = message('Dots', 'first line\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n');
  before(async () => {
    r = await rig();
    env = { PORT: String(r.port), TLS_PORT: String(r.tlsPort), PASSWORD };
    await r.deliver(message('One'));
    await r.deliver(dotted);
    await r.deliver(message('Three', 'line 1\r\nline 2\r\nline 3\r\n'));
  });
  after(() => r.close());

  it('CAPA before and after STLS; no password before TLS', async () => {
    const out = await python<{ before: string[]; refused: string; after: string[]; login: string }>(
      `${PRELUDE}
p = plain()
before = sorted(p.capa().keys())
refused = err(lambda: p.user('bob@example.org'))
p.stls(ctx)
caps = p.capa()
after = sorted(k + (' ' + ' '.join(v) if v else '') for k, v in caps.items())
print(json.dumps({'before': before, 'refused': refused, 'after': after, 'login': login(p)}))
p.quit()
`,
      env,
    );
    assert.ok(out.before.includes('STLS'));
    assert.ok(!out.before.includes('USER'));
    assert.match(out.refused, /^-ERR \[AUTH\] .*TLS/);
    for (const cap of [
      'TOP',
      'UIDL',
      'RESP-CODES',
      'PIPELINING',
      'EXPIRE NEVER',
      'USER',
      'SASL PLAIN',
      'IMPLEMENTATION Mailwerk',
    ])
      assert.ok(out.after.includes(cap), `${cap} in ${out.after.join(', ')}`);
    assert.ok(!out.after.includes('STLS'));
    assert.match(out.login, /^\+OK Maildrop has 3 messages/);
  });

  it('takes USER/PASS in the clear only when the admin allows it', async () => {
    const { Pop3Service } = await import('../src/index.ts');
    const { generateSelfSigned } = await import('@mailwerk/tls');
    const open = new Pop3Service({
      store: r.store,
      bus: r.bus,
      hostname: 'open',
      tls: await generateSelfSigned('pop3.test'),
      allowPlaintext: true,
    });
    const server = open.server(false);
    const port = await new Promise<number>((res) =>
      server.listen(0, '127.0.0.1', () => res((server.address() as import('node:net').AddressInfo).port)),
    );
    try {
      const out = await python<{ caps: string[]; login: string }>(
        `${PRELUDE}
p = plain()
caps = sorted(p.capa().keys())
print(json.dumps({'caps': caps, 'login': login(p)}))
p.quit()
`,
        { ...env, PORT: String(port) },
      );
      assert.ok(out.caps.includes('USER') && out.caps.includes('STLS'));
      assert.match(out.login, /^\+OK Maildrop has/);
    } finally {
      await open.close();
    }
  });

  it('STAT, LIST, UIDL, TOP, RETR, NOOP; RETR is byte-exact after un-stuffing and marks \\Seen', async () => {
    const out = await python<Record<string, unknown>>(
      `${PRELUDE}
p = tls()
login(p)
stat = p.stat()
lst = [l.decode() for l in p.list()[1]]
one = p.list(2).decode()
uid = [l.decode() for l in p.uidl()[1]]
top = text(p.top(3, 1)[1])
retr = text(p.retr(2)[1])
noop = p.noop().decode()
bad = err(lambda: p.retr(9))
p.quit()
print(json.dumps({'stat': stat, 'list': lst, 'one': one, 'uidl': uid, 'top': top, 'retr': retr, 'noop': noop, 'bad': bad}))
`,
      env,
    );
    const inbox = (await r.store.getMailbox(r.bob, 'INBOX'))!;
    const msgs = await r.store.listMessages(inbox.id);
    assert.deepEqual(out.stat, [3, msgs.reduce((n, m) => n + m.size, 0)]);
    assert.deepEqual(
      out.list,
      msgs.map((m, i) => `${i + 1} ${m.size}`),
    );
    assert.equal(out.one, `+OK 2 ${msgs[1]!.size}`);
    assert.deepEqual(
      out.uidl,
      msgs.map((m, i) => `${i + 1} ${uidl(m.uid, inbox.uidValidity)}`),
    );
    assert.match(out.top as string, /Subject: Three\r\nDate: [^\r]*\r\n\r\nline 1$/);
    // poplib joins lines with CRLF and drops the final one.
    assert.equal(`${out.retr as string}\r\n`, dotted);
    assert.equal(out.noop, '+OK');
    assert.match(out.bad as string, /^-ERR No such message/);
    const after = await r.store.listMessages(inbox.id);
    assert.ok(after[1]!.flags.includes('\\Seen'));
    assert.ok(!after[0]!.flags.includes('\\Seen'));
  });

  it('puts the dots on the wire: lines starting with "." are doubled, and the end is ".\\r\\n"', async () => {
    const s = connect({ host: '127.0.0.1', port: r.tlsPort, rejectUnauthorized: false });
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    s.write(`USER bob@example.org\r\nPASS ${PASSWORD}\r\nRETR 2\r\nQUIT\r\n`);
    await new Promise((res) => s.on('close', res));
    assert.ok(
      text.includes('first line\r\n..starts with a dot\r\n...two dots\r\n..\r\nlast\r\n.\r\n+OK Signing off'),
      text,
    );
  });

  it('UIDL is the same in a later session, and matches the IMAP UIDs and UIDVALIDITY', async () => {
    const script = `${PRELUDE}
p = tls()
login(p)
print(json.dumps([l.decode() for l in p.uidl()[1]]))
p.quit()
`;
    const first = await python<string[]>(script, env);
    const second = await python<string[]>(script, env);
    assert.deepEqual(first, second);
    const imap = await r.imapClient();
    try {
      const box = await imap.mailboxOpen('INBOX');
      const uids = (await imap.search({ all: true }, { uid: true })) || [];
      assert.deepEqual(
        first,
        uids.map((u, i) => `${i + 1} ${uidl(u, Number(box.uidValidity))}`),
      );
    } finally {
      await imap.logout();
    }
  });

  it('a second session on the same mailbox gets [IN-USE]; another user is unaffected', async () => {
    const out = await python<{ second: string; other: string }>(
      `${PRELUDE}
a = tls()
login(a)
b = tls()
second = err(lambda: login(b))
c = tls()
other = err(lambda: login(c, 'ann@example.org'))
a.quit(); b.quit(); c.quit()
print(json.dumps({'second': second, 'other': other}))
`,
      env,
    );
    assert.match(out.second, /^-ERR \[IN-USE\]/);
    assert.equal(out.other, null);
  });

  it('with the locks in Redis, a session on another access process gets [IN-USE] too', async () => {
    const { startRedis } = await import('../../limits/test/redis-server.ts');
    const { RedisCounters } = await import('@mailwerk/limits/redis');
    const { Pop3Service } = await import('../src/index.ts');
    const redis = await startRedis();
    const mine = new RedisCounters(redis.url);
    const theirs = new RedisCounters(redis.url);
    const { generateSelfSigned } = await import('@mailwerk/tls');
    const tls = await generateSelfSigned('pop3.test');
    const a = new Pop3Service({
      store: r.store,
      bus: r.bus,
      hostname: 'a',
      tls,
      allowPlaintext: false,
      counters: mine,
    });
    const b = new Pop3Service({
      store: r.store,
      bus: r.bus,
      hostname: 'b',
      tls,
      allowPlaintext: false,
      counters: theirs,
    });
    const listenOn = (s: import('node:net').Server) =>
      new Promise<number>((res) =>
        s.listen(0, '127.0.0.1', () => res((s.address() as import('node:net').AddressInfo).port)),
      );
    const portA = await listenOn(a.server(true));
    const portB = await listenOn(b.server(true));
    try {
      const out = await python<{ second: string; after: string | null }>(
        `${PRELUDE}
a = poplib.POP3_SSL('127.0.0.1', int(os.environ['A']), context=ctx, timeout=10)
login(a)
b = poplib.POP3_SSL('127.0.0.1', int(os.environ['B']), context=ctx, timeout=10)
second = err(lambda: login(b))
a.quit()
import time
time.sleep(0.3)
c = poplib.POP3_SSL('127.0.0.1', int(os.environ['B']), context=ctx, timeout=10)
after = err(lambda: login(c))
c.quit()
print(json.dumps({'second': second, 'after': after}))
`,
        { ...env, A: String(portA), B: String(portB) },
      );
      assert.match(out.second, /^-ERR \[IN-USE\]/);
      assert.equal(out.after, null);
    } finally {
      await a.close();
      await b.close();
      await mine.close();
      await theirs.close();
      await redis.stop();
    }
  });

  it('a bad password is -ERR [AUTH], the same as an unknown user, and repeated failures slow down', async () => {
    const out = await python<{ wrong: string; unknown: string; times: number[] }>(
      `${PRELUDE}
import time
p = tls()
p.user('bob@example.org')
wrong = err(lambda: p.pass_('nope'))
p.user('nobody@example.org')
unknown = err(lambda: p.pass_('nope'))
times = []
for i in range(3):
    t = time.time()
    p.user('bob@example.org')
    err(lambda: p.pass_('nope'))
    times.append(time.time() - t)
p.quit()
print(json.dumps({'wrong': wrong, 'unknown': unknown, 'times': times}))
`,
      env,
    );
    assert.match(out.wrong, /^-ERR \[AUTH\]/);
    assert.equal(out.wrong, out.unknown);
    // The rig's throttle: free failures, then 100 ms doubling.
    assert.ok(out.times[2]! >= 0.19, `delays ${out.times.join(', ')}`);
    assert.ok(out.times[2]! > out.times[0]!, `delays ${out.times.join(', ')}`);
  });

  it('curl over pop3s (SASL PLAIN) and pop3 with STLS lists, retrieves and runs UIDL', async () => {
    const user = ['--user', `bob@example.org:${PASSWORD}`];
    // The throttle remembers the previous test's failures from 127.0.0.1; a success clears them.
    const list = await curl([...user, `pop3s://127.0.0.1:${r.tlsPort}/`]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^1 \d+\r\n2 \d+\r\n3 \d+\r\n$/);
    const retr = await curl([...user, '--ssl-reqd', `pop3://127.0.0.1:${r.port}/3`]);
    assert.equal(retr.code, 0, retr.stderr);
    assert.match(retr.stdout, /Subject: Three\r\nDate: [^\r]*\r\n\r\nline 1\r\nline 2\r\nline 3\r\n$/);
    const u = await curl([...user, '-X', 'UIDL', `pop3s://127.0.0.1:${r.tlsPort}/`]);
    assert.match(u.stdout, /^1 [0-9A-F]{16}\r\n/);
    const plainRefused = await curl([...user, `pop3://127.0.0.1:${r.port}/`]);
    assert.notEqual(plainRefused.code, 0);
  });

  it('deletes only at QUIT: a dropped connection after DELE deletes nothing; RSET undoes; IMAP sees the expunge', async () => {
    const imap = await r.imapClient();
    const lock = await imap.getMailboxLock('INBOX');
    const expunged: number[] = [];
    imap.on('expunge', (e) => expunged.push(e.seq ?? 0));
    imap.idle().catch(() => undefined);
    try {
      const dropped = await python<{ dele: string }>(
        `${PRELUDE}
p = tls()
login(p)
dele = p.dele(1).decode()
p.sock.close()
print(json.dumps({'dele': dele}))
`,
        env,
      );
      assert.match(dropped.dele, /^\+OK/);
      const inbox = (await r.store.getMailbox(r.bob, 'INBOX'))!;
      // The dropped session's lock is released, and nothing was deleted.
      await new Promise((res) => setTimeout(res, 200));
      assert.equal((await r.store.listUids(inbox.id)).length, 3);
      const out = await python<{ rset: string; stat: number[]; again: string | null; quit: string }>(
        `${PRELUDE}
p = tls()
login(p)
p.dele(3)
p.rset()
stat = p.stat()
p.dele(1)
again = err(lambda: p.dele(1))
quit = p.quit().decode()
print(json.dumps({'rset': 'ok', 'stat': stat, 'again': again, 'quit': quit}))
`,
        env,
      );
      assert.equal(out.stat[0], 3);
      assert.match(out.again!, /^-ERR Message already deleted/);
      assert.match(out.quit, /^\+OK Signing off \(1 messages deleted\)/);
      assert.equal((await r.store.listUids(inbox.id)).length, 2);
      const t = Date.now();
      while (!expunged.includes(1)) {
        if (Date.now() - t > 2000) throw new Error('IMAP saw no EXPUNGE');
        await new Promise((res) => setTimeout(res, 20));
      }
    } finally {
      lock.release();
      await imap.logout().catch(() => imap.close());
    }
  });

  it('AUTH PLAIN with an initial response and with a continuation, pipelined', async () => {
    const token = Buffer.from(`\0bob@example.org\0${PASSWORD}`).toString('base64');
    const other = Buffer.from(`ann@example.org\0bob@example.org\0${PASSWORD}`).toString('base64');
    const s = connect({ host: '127.0.0.1', port: r.tlsPort, rejectUnauthorized: false });
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    s.write(`AUTH PLAIN ${other}\r\nAUTH PLAIN\r\n${token}\r\nSTAT\r\nQUIT\r\n`);
    await new Promise((res) => s.on('close', res));
    const lines = text.split('\r\n');
    assert.match(lines[1]!, /^-ERR \[AUTH\] Signing in as another user/);
    assert.equal(lines[2], '+ ');
    assert.match(lines[3]!, /^\+OK Maildrop has \d+ messages/);
    assert.match(lines[4]!, /^\+OK \d+ \d+$/);
  });

  it('limits connections per address, counting from accept, before the TLS handshake', async () => {
    const { Pop3Service } = await import('../src/index.ts');
    const { generateSelfSigned } = await import('@mailwerk/tls');
    const limited = new Pop3Service({
      store: r.store,
      bus: r.bus,
      hostname: 'limited',
      tls: await generateSelfSigned('pop3.test'),
      allowPlaintext: false,
      maxConnectionsPerIp: 1,
    });
    const server = limited.server(true);
    const port = await new Promise<number>((res) =>
      server.listen(0, '127.0.0.1', () => res((server.address() as import('node:net').AddressInfo).port)),
    );
    const greet = (): Promise<{ text: string; socket: import('node:tls').TLSSocket }> =>
      new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
        socket.once('data', (d: Buffer) => resolve({ text: d.toString(), socket }));
      });
    try {
      const first = await greet();
      assert.match(first.text, /^\+OK /);
      const second = await greet();
      assert.match(second.text, /^-ERR \[SYS\/TEMP\] Too many connections from your address/);
      second.socket.destroy();
      first.socket.destroy();
      await new Promise((res) => setTimeout(res, 100));
      const third = await greet();
      assert.match(third.text, /^\+OK /);
      third.socket.destroy();
    } finally {
      await limited.close();
    }
  });

  it('refuses over-long lines and unknown commands, and answers commands out of state', async () => {
    const s = connect({ host: '127.0.0.1', port: r.tlsPort, rejectUnauthorized: false });
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    s.write('STAT\r\nFOO\r\n');
    s.write(`USER ${'x'.repeat(5000)}\r\n`);
    await new Promise((res) => s.on('close', res));
    assert.match(
      text,
      /-ERR Command not valid in this state\r\n-ERR Command not valid in this state\r\n-ERR Line too long\r\n$/,
    );
  });

  it('stops reading a client that sends 52 MB without a line end, even one that ignores the close', {
    timeout: 20_000,
  }, async () => {
    const { connect: tcp } = await import('node:net');
    // Half-open: this client does not stop when the server ends its side, as an attacker's would not.
    const s = tcp({ host: '127.0.0.1', port: r.port, allowHalfOpen: true });
    s.on('error', () => undefined);
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    await new Promise((res) => s.once('connect', res));
    const closed = new Promise((res) => s.once('close', res));
    (globalThis as { gc?: () => void }).gc?.();
    const before = process.memoryUsage().heapUsed;
    const chunk = Buffer.alloc(1024 * 1024, 0x78);
    let sent = 0;
    const done = Promise.race([
      closed,
      (async () => {
        for (; sent < 52 && !s.destroyed; sent++)
          if (!s.write(chunk)) await Promise.race([new Promise((res) => s.once('drain', res)), closed]);
      })(),
    ]);
    await done;
    await closed;
    assert.match(text, /-ERR Line too long\r\n$/);
    assert.ok(sent < 52, `the server read all ${sent} MB`);
    (globalThis as { gc?: () => void }).gc?.();
    const grown = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
    assert.ok(grown < 16, `heap grew ${grown.toFixed(1)} MB`);
  });
});
