// A failure inside one POP3 command ends in that command's reply and a log line naming the session;
// the session and the service go on.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { AuthThrottle, hashPassword } from '@mailwerk/auth';
import { InProcessBus } from '@mailwerk/bus';
import { DEFAULT_MAILBOXES } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { Pop3Service } from '../src/index.ts';

it('answers a store failure in a command -ERR [SYS/TEMP], logs it with the session id, and carries on', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-pop3-err-'));
  const store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
  await store.addDomain('example.org');
  await store.createAccount({
    address: 'bob@example.org',
    passwordHash: await hashPassword('pw'),
    mailboxes: [...DEFAULT_MAILBOXES],
  });
  // A database hiccup while the mailbox is read at sign-in (mocked: a real one cannot be caused on demand).
  let failures = 1;
  const failing = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'listMessages' && failures > 0)
        return async () => {
          failures--;
          throw new Error('database is locked');
        };
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const errors: string[] = [];
  const pop3 = new Pop3Service({
    store: failing,
    bus: new InProcessBus(),
    hostname: 'pop3.test',
    tls: await generateSelfSigned('pop3.test'),
    allowPlaintext: true,
    throttle: new AuthThrottle(),
    onError: (err, context) => errors.push(`${context}: ${(err as Error).message}`),
  });
  const server = pop3.server(false);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    text += d;
  });
  const reply = async (n: number) => {
    const until = Date.now() + 5000;
    while (text.split('\r\n').length - 1 < n) {
      if (Date.now() > until) throw new Error(`no reply: ${JSON.stringify(text)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return text.split('\r\n')[n - 1]!;
  };
  try {
    assert.match(await reply(1), /^\+OK/);
    socket.write('USER bob@example.org\r\nPASS pw\r\n');
    assert.match(await reply(2), /^\+OK/);
    assert.match(await reply(3), /^-ERR \[SYS\/TEMP\] Internal error, try again later$/);
    assert.match(errors[0] ?? '', /^pop3 session \S+: PASS: database is locked$/);
    // The same session signs in on the next try.
    socket.write('USER bob@example.org\r\nPASS pw\r\nSTAT\r\n');
    assert.match(await reply(4), /^\+OK/);
    assert.match(await reply(5), /^\+OK/);
    assert.match(await reply(6), /^\+OK 0 0$/);
  } finally {
    socket.destroy();
    await pop3.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
