// The LMTP client against a scripted server on loopback (a stand-in for a misbehaving or minimal LMTP
// server, which no real one here can be made into): with PIPELINING, MAIL, RCPT and DATA go in one
// write (RFC 2920 §3.1); without it, one command per reply and DATA only after an accepted RCPT; a
// server that answers DATA with 354 though no recipient was accepted gets an empty message and the
// session ends. With CHUNKING (RFC 3030), against our own engine: MAIL, RCPT and BDAT LAST with the
// message in one write. Real servers (our MDA, Dovecot's LMTP) are in queue.test.ts and peers.test.ts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { after, describe, it } from 'node:test';
import { reply, SmtpServer, type SmtpServerOptions } from '@mailwerk/smtp';
import { deliverOverLmtp, LmtpClient } from '../src/lmtp-client.ts';

/**
 * A server answering each complete line by its command word (the end of data by '.'): the table's reply,
 * none for null, `500 what` for a word it lacks; records what it read.
 */
async function scripted(caps: string[], table: Record<string, string | null>) {
  const answer = (line: string): string | null => {
    const reply = table[line === '.' ? '.' : line.split(/[ :]/)[0]!.toUpperCase()];
    return reply === undefined ? '500 what\r\n' : reply === null ? null : `${reply}\r\n`;
  };
  const reads: string[] = [];
  const lines: string[] = [];
  let closed!: () => void;
  const ended = new Promise<void>((r) => {
    closed = r;
  });
  const server = createServer((s) => {
    s.write('220 lmtp.test ready\r\n');
    let buf = '';
    let data = false;
    s.on('data', (d) => {
      reads.push(d.toString('latin1'));
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (data) {
          if (line === '.') {
            data = false;
            const a = answer('.');
            if (a) s.write(a);
          }
          continue;
        }
        if (/^LHLO /i.test(line)) {
          s.write(['250-lmtp.test', ...caps.map((c) => `250-${c}`), '250 8BITMIME'].join('\r\n') + '\r\n');
          continue;
        }
        const a = answer(line);
        if (a?.startsWith('354')) data = true;
        if (a) s.write(a);
      }
    });
    s.on('close', closed);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return { target: `127.0.0.1:${port}`, reads, lines, ended, close: () => server.close() };
}

/** Our engine in LMTP mode with CHUNKING, on loopback, with `hooks`; and a client of it. */
async function chunkingEngine(
  hooks: Pick<SmtpServerOptions, 'onMailFrom' | 'onRcptTo' | 'onData'>,
): Promise<{ server: SmtpServer; client: LmtpClient }> {
  const server = new SmtpServer({
    lmtp: true,
    chunking: true,
    name: 'lmtp.test',
    banner: 'test',
    size: 100_000,
    ...hooks,
  });
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  const client = new LmtpClient(`127.0.0.1:${(server.address() as AddressInfo).port}`, {
    hostname: 'mx.test',
  });
  return { server, client };
}

const message = {
  sender: 'a@ext.org',
  data: Buffer.from('Subject: x\r\n\r\nbody\r\n'),
  envid: 'e1',
  hostname: 'mx.test',
};

describe('LMTP client', () => {
  const servers: Array<{ close(): void }> = [];
  after(() => {
    for (const s of servers) s.close();
  });

  it('with PIPELINING sends MAIL, RCPT and DATA in one write and the message after the 354', async () => {
    const srv = await scripted(['PIPELINING'], {
      MAIL: '250 ok',
      RCPT: '250 ok',
      DATA: '354 go',
      '.': '250 2.0.0 stored',
      QUIT: '221 bye',
    });
    servers.push(srv);
    const replies = await deliverOverLmtp(srv.target, { ...message, recipients: ['bob@example.org'] });
    assert.deepEqual(
      replies.map((r) => [r.address, r.code]),
      [['bob@example.org', 250]],
    );
    assert.ok(
      srv.reads.some((r) =>
        /^MAIL FROM:<a@ext\.org>[^\r]*\r\nRCPT TO:<bob@example\.org>\r\nDATA\r\n$/.test(r),
      ),
      JSON.stringify(srv.reads),
    );
  });

  it('with CHUNKING sends MAIL, RCPT and BDAT LAST with the message as it is in one write, and stays in step', async () => {
    const reads: string[] = [];
    const stored: string[] = [];
    const { server, client } = await chunkingEngine({
      onRcptTo(address) {
        if (address.address.startsWith('nobody')) throw reply(550, '5.1.1', 'no such user');
      },
      onData: async (m, session) => {
        stored.push(m.toString('latin1'));
        return session.envelope.rcptTo.map((r) => `2.0.0 <${r.address}> delivered`);
      },
    });
    server.server.on('connection', (s) => s.on('data', (d: Buffer) => reads.push(d.toString('latin1'))));
    try {
      // A line starting with a dot and a bare LF go as they are: no stuffing, no line ending changed.
      const data = Buffer.from('Subject: x\r\n\r\n.dot\nbody');
      const replies = await client.deliver({
        ...message,
        data,
        recipients: ['bob@example.org', 'nobody@example.org'],
      });
      assert.deepEqual(
        replies.map((r) => [r.address, r.code]),
        [
          ['bob@example.org', 250],
          ['nobody@example.org', 550],
        ],
      );
      assert.deepEqual(stored, [data.toString('latin1')]);
      const wire = `MAIL FROM:<a@ext.org> ENVID=e1\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<nobody@example.org>\r\nBDAT ${data.length} LAST\r\n${data.toString('latin1')}`;
      assert.ok(reads.includes(wire), JSON.stringify(reads));
      // Every recipient refused: the one reply to BDAT is read, and the pooled session goes on.
      const none = await client.deliver({ ...message, recipients: ['nobody@example.org'] });
      assert.deepEqual(
        none.map((r) => r.code),
        [550],
      );
      const again = await client.deliver({ ...message, recipients: ['bob@example.org'] });
      assert.deepEqual(
        again.map((r) => r.code),
        [250],
      );
      assert.equal(server.connections.size, 1);
    } finally {
      client.close();
      await new Promise<void>((r) => server.close(r));
    }
  });

  it('with CHUNKING sends non-ASCII addresses as UTF-8 (RFC 6531), as with DATA', async () => {
    const seen: string[] = [];
    const { server, client } = await chunkingEngine({
      onMailFrom(address) {
        seen.push(address.address);
      },
      onRcptTo(address) {
        seen.push(address.address);
      },
      onData: async (_m, session) => session.envelope.rcptTo.map(() => '2.0.0 delivered'),
    });
    try {
      const replies = await client.deliver({
        ...message,
        sender: 'jörg@ext.org',
        recipients: ['дмитрий@example.org'],
      });
      assert.deepEqual(
        replies.map((r) => r.code),
        [250],
      );
      assert.deepEqual(seen, ['jörg@ext.org', 'дмитрий@example.org']);
    } finally {
      client.close();
      await new Promise<void>((r) => server.close(r));
    }
  });

  it('ends the session when DATA is taken though every recipient was refused, and reports the refusals', async () => {
    const srv = await scripted(['PIPELINING'], {
      MAIL: '250 ok',
      RCPT: '550 5.1.1 no such user',
      DATA: '354 go anyway',
      '.': null,
      QUIT: '221 bye',
    });
    servers.push(srv);
    const replies = await deliverOverLmtp(srv.target, {
      ...message,
      recipients: ['x@example.org', 'y@example.org'],
    });
    assert.deepEqual(
      replies.map((r) => [r.address, r.code]),
      [
        ['x@example.org', 550],
        ['y@example.org', 550],
      ],
    );
    await srv.ended;
    const after = srv.lines.slice(srv.lines.indexOf('DATA') + 1);
    assert.deepEqual(after, ['.', 'QUIT']);
  });

  it('without PIPELINING waits for each reply and sends DATA only for an accepted recipient', async () => {
    const srv = await scripted([], {
      MAIL: '250 ok',
      RCPT: '550 5.1.1 no such user',
      RSET: '250 reset',
      QUIT: '221 bye',
    });
    servers.push(srv);
    const replies = await deliverOverLmtp(srv.target, { ...message, recipients: ['x@example.org'] });
    assert.deepEqual(
      replies.map((r) => r.code),
      [550],
    );
    await srv.ended;
    assert.ok(!srv.lines.includes('DATA'), srv.lines.join(' | '));
    assert.ok(srv.lines.includes('RSET'));
    // One command a write: the client waited for each reply.
    assert.ok(
      srv.reads.every((r) => (r.match(/\r\n/g) ?? []).length <= 1),
      JSON.stringify(srv.reads),
    );
  });
});
