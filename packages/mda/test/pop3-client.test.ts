// The POP3 client of the MRA (src/pop3-client.ts) against a bare POP3 server of the test's own on
// loopback: dot-unstuffing exactly undone whatever the lines hold (fast-check), an empty message, a
// refused password, a message over the bound, and a server that falls silent.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { Pop3Client, Pop3Error } from '../src/index.ts';

/** A POP3 server with one mailbox of `messages` (each as CRLF text), stuffing dots as RFC 1939 §3 says. */
async function server(messages: string[], opts: { password?: string; silentOnRetr?: boolean } = {}) {
  const sockets = new Set<Socket>();
  const s: Server = createServer((c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.write('+OK ready\r\n');
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const [cmd, arg] = line.split(' ');
        switch (cmd!.toUpperCase()) {
          case 'PASS':
            c.write(arg === (opts.password ?? 'pw') ? '+OK\r\n' : '-ERR [AUTH] no\r\n');
            break;
          case 'UIDL':
            c.write(`+OK\r\n${messages.map((_m, k) => `${k + 1} u${k + 1}\r\n`).join('')}.\r\n`);
            break;
          case 'RETR': {
            if (opts.silentOnRetr) return;
            const m = messages[Number(arg) - 1]!;
            const stuffed = m.replace(/^\./gm, '..');
            c.write(`+OK\r\n${stuffed}${stuffed && !stuffed.endsWith('\r\n') ? '\r\n' : ''}.\r\n`, 'latin1');
            break;
          }
          case 'QUIT':
            c.end('+OK bye\r\n');
            break;
          default:
            c.write('+OK\r\n');
        }
      }
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    port: (s.address() as { port: number }).port,
    close: () => {
      for (const c of sockets) c.destroy();
      return new Promise<void>((r) => s.close(() => r()));
    },
  };
}

describe('POP3 client (the MRA)', () => {
  const open: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const s of open) await s.close();
  });
  const client = (port: number, extra = {}) =>
    new Pop3Client({ host: '127.0.0.1', port, tls: 'none', ...extra });

  it('gives back every message exactly, dot-stuffed lines and empty ones included (fast-check)', async () => {
    const line = fc.stringMatching(/^[ -~]{0,40}$/).map((l) => (l.length % 3 === 0 ? `.${l}` : l));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(line, { maxLength: 8 }), { minLength: 1, maxLength: 4 }),
        async (msgs) => {
          const texts = msgs.map((lines) => lines.map((l) => `${l}\r\n`).join(''));
          const srv = await server(texts);
          const c = client(srv.port);
          try {
            await c.connect('u', 'pw');
            const list = await c.uidl();
            assert.deepEqual(
              list.map((x) => x.uid),
              texts.map((_t, k) => `u${k + 1}`),
            );
            for (const { n } of list) assert.equal((await c.retr(n)).toString('latin1'), texts[n - 1]);
            await c.quit();
          } finally {
            c.close();
            await srv.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('says a refused password is one, and fails a message over its bound or a silent server', async () => {
    const srv = await server(['Subject: big\r\n\r\n' + 'x'.repeat(20_000) + '\r\n'], { password: 'right' });
    open.push(srv);
    const refused = client(srv.port);
    await assert.rejects(
      refused.connect('u', 'wrong'),
      (e: unknown) => e instanceof Pop3Error && e.authenticationFailed,
    );
    refused.close();
    const small = client(srv.port, { maxBytes: 1000 });
    await small.connect('u', 'right');
    await assert.rejects(small.retr(1), /more than 1000 bytes/);
    small.close();
    const silent = await server(['x\r\n'], { silentOnRetr: true });
    open.push(silent);
    const waiting = client(silent.port, { timeoutMs: 300 });
    await waiting.connect('u', 'pw');
    await assert.rejects(waiting.retr(1), /no answer within 300 ms/);
    waiting.close();
  });
});
