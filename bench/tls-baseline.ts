// A bare Node TLS server (no application at all), for bench/imap.ts: what one idle TLS connection costs
// in Node by itself, measured the same way as an idle IMAP session. Talks over IPC: {ready, port}, then
// answers {memory}.
import { createServer } from 'node:tls';
import { generateSelfSigned } from '@mailwerk/tls';

const tls = await generateSelfSigned('baseline.example.org');
const sockets = new Set<unknown>();
const server = createServer({ key: tls.key, cert: tls.cert }, (s) => {
  sockets.add(s);
  s.on('data', () => s.write('* OK\r\n'));
  s.on('close', () => sockets.delete(s));
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.send!({ type: 'ready', port });
});
process.on('message', (m: { type: string }) => {
  if (m.type === 'memory') {
    (globalThis as { gc?: () => void }).gc?.();
    const u = process.memoryUsage();
    process.send!({
      type: 'memory',
      rss: u.rss,
      heapUsed: u.heapUsed,
      external: u.external,
      connections: sockets.size,
    });
  }
  if (m.type === 'stop') process.exit(0);
});
