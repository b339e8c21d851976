/**
 * The LMTP hop alone: our LMTP client delivering to our engine in LMTP mode, in one process on
 * loopback, with DATA (dot-stuffed) and with BDAT (RFC 3030: MAIL, RCPT and the message in one
 * write), interleaved. The server stores nothing: this is the protocol's cost on both sides.
 *
 *   node bench/lmtp-hop.ts [messages=5000] [rounds=4] [size=5000]
 *
 * Prints, per round and mode, messages a second and CPU microseconds a message (client and server
 * together). The first round of each mode runs in code V8 has not optimized yet.
 */
import { LmtpClient } from '../packages/mta/src/lmtp-client.ts';
import { SmtpServer } from '../packages/smtp/src/index.ts';

const [count = 5000, rounds = 4, size = 5000] = process.argv.slice(2).map(Number);
const line = `${'x'.repeat(76)}\r\n`;
const data = Buffer.from(`Subject: bench\r\n\r\n${line.repeat(Math.max(1, Math.floor(size / line.length)))}`);

async function round(chunking: boolean): Promise<{ perSecond: number; cpuMicros: number }> {
  const server = new SmtpServer({
    lmtp: true,
    chunking,
    name: 'lmtp.bench',
    banner: 'bench',
    size: 10 * size + 1_000_000,
    onData: async (_m, session) => session.envelope.rcptTo.map(() => '2.0.0 stored'),
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new LmtpClient(`127.0.0.1:${(server.address() as { port: number }).port}`, {
    hostname: 'mx.bench',
  });
  const started = performance.now();
  const cpu = process.cpuUsage();
  let next = 0;
  // 20 deliveries at a time, as the MX's direct deliveries and the queue runner make them.
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next++ < count) {
        const [r] = await client.deliver({ sender: 'a@ext.example', recipients: ['b@example.org'], data });
        if (r?.code !== 250) throw new Error(`not delivered: ${r?.text}`);
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  const seconds = (performance.now() - started) / 1000;
  client.close();
  await new Promise<void>((resolve) => server.close(resolve));
  return { perSecond: Math.round(count / seconds), cpuMicros: Math.round((used.user + used.system) / count) };
}

console.log(`${count} messages of ${data.length} bytes a round, 20 at a time`);
console.log('| round | DATA msg/s | DATA CPU µs/msg | BDAT msg/s | BDAT CPU µs/msg |');
console.log('| --- | --- | --- | --- | --- |');
for (let i = 1; i <= rounds; i++) {
  const d = await round(false);
  const b = await round(true);
  console.log(`| ${i} | ${d.perSecond} | ${d.cpuMicros} | ${b.perSecond} | ${b.cpuMicros} |`);
}
