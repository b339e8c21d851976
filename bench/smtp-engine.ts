/**
 * The SMTP engine alone (packages/smtp, what the MX runs on), with Postfix's smtp-source as the client:
 * one message per connection, 20 at a time, 5 KB, the engine storing nothing. Its CPU a connection and
 * connections a second, so that a change to the engine's per-connection work shows without the store,
 * the limits and the second process of a full run (bench/compare.ts). smtp-source closes right after
 * its QUIT, without reading the 221, as Postfix's smtp client does.
 *
 *   node bench/smtp-engine.ts [connections=10000] [engine=packages/smtp/src/index.ts]
 *
 * `engine` may be another checkout's (a worktree of an older commit), to compare the two alternately in
 * the same minutes. Needs smtp-source (Debian package postfix; bench/compare.ts installs it).
 */
import { resolve } from 'node:path';
import { smtpSource } from './proc.ts';

const count = Number(process.argv[2] ?? 10_000);
const engine = resolve(process.argv[3] ?? resolve(import.meta.dirname, '..', 'packages/smtp/src/index.ts'));
const { SmtpServer } = (await import(engine)) as typeof import('../packages/smtp/src/index.ts');
const server = new SmtpServer({
  name: 'mx.bench',
  banner: 'bench',
  size: 1_000_000,
  onData: async () => '2.0.0 Ok',
});
await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
const { port } = server.address() as { port: number };
const load = (messages: number) => smtpSource({ port, sessions: 20, messages, size: 5000 });

// Unmeasured first: V8 optimizes the engine's code meanwhile.
await load(Math.ceil(count / 10));
const cpu = process.cpuUsage();
const started = performance.now();
await load(count);
const used = process.cpuUsage(cpu);
const secs = (performance.now() - started) / 1000;
console.log(
  `${engine}: ${count} connections, ${((used.user + used.system) / count).toFixed(1)} µs CPU a connection, ${Math.round(count / secs)} connections/s`,
);
await new Promise<void>((done) => server.close(done));
