import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { mailwerkVersion } from '@mailwerk/runtime';
import { MIGRATIONS } from '@mailwerk/store-sqlite';
import { describeCertificate } from '@mailwerk/tls';
import type { Command } from '../command.ts';
import { type Context, ExitStatus } from '../context.ts';
import { printJson, printTable } from '../output.ts';

interface ServiceStatus {
  service: string;
  state: string;
  pid: number | null;
  since: string | null;
  restarts: number;
  listening: Array<{ service: string; address: string }>;
}

/** What the running supervisor says on its admin port, or why it could not be asked. */
async function running(ctx: Context): Promise<{ services: ServiceStatus[] | null; note: string | null }> {
  const { listen, port } = ctx.config().admin;
  if (port === 0)
    return {
      services: null,
      note: 'the admin port is off (admin.port = 0): the running server cannot be asked',
    };
  const host = listen.includes(':') ? `[${listen}]` : listen === '0.0.0.0' ? '127.0.0.1' : listen;
  try {
    const res = await fetch(`http://${host}:${port}/status`, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json()) as { services: ServiceStatus[] };
    return { services: body.services, note: null };
  } catch {
    return { services: null, note: `mailwerk is not running (nothing answers on ${host}:${port})` };
  }
}

function certificate(path: string): { subject: string; notAfter: string; daysLeft: number } | null {
  if (!existsSync(path)) return null;
  const cert = describeCertificate(readFileSync(path, 'utf8'));
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    notAfter: cert.validTo.toISOString(),
    daysLeft: Math.floor((cert.validTo.getTime() - Date.now()) / 86_400_000),
  };
}

export const statusCommands: Command[] = [
  {
    name: ['status'],
    args: '',
    summary: 'the services and their state, the queue, the store, the certificate and the versions',
    help: 'Exit status: 0 every service runs; 1 some do not; 3 mailwerk is not running (or cannot be asked).',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      const config = ctx.config();
      const { services, note } = await running(ctx);
      const queue = await ctx.store().listQueue();
      const oldest = queue.length ? Math.min(...queue.map((e) => e.createdAt.getTime())) : null;
      const db = config.store.backend === 'sqlite' ? config.store.sqlite_path : null;
      const status = {
        version: mailwerkVersion(),
        node: process.versions.node,
        schema: MIGRATIONS.length,
        running: services !== null,
        ...(note ? { note } : {}),
        services: services ?? [],
        queue: {
          messages: queue.length,
          held: queue.filter((e) => e.held).length,
          oldest: oldest === null ? null : new Date(oldest).toISOString(),
        },
        store: {
          backend: config.store.backend,
          ...(db ? { path: db, bytes: existsSync(db) ? statSync(db).size : 0 } : {}),
        },
        certificate: certificate(config.tls.cert),
      };
      if (ctx.json) printJson(ctx, status);
      else {
        ctx.print(`mailwerk ${status.version} (Node ${status.node}, store schema ${status.schema})`);
        if (note) ctx.print(note);
        if (services) {
          printTable(
            ctx,
            ['SERVICE', 'STATE', 'PID', 'RESTARTS', 'LISTENING'],
            services.map((s) => [
              s.service,
              s.state,
              String(s.pid ?? '-'),
              String(s.restarts),
              s.listening.map((l) => `${l.service} ${l.address}`).join(', '),
            ]),
          );
        }
        ctx.print(
          `queue: ${queue.length} messages${status.queue.held ? ` (${status.queue.held} held)` : ''}${oldest === null ? '' : `, oldest since ${status.queue.oldest}`}`,
        );
        ctx.print(
          `store: ${config.store.backend}${db ? ` ${db} (${((status.store.bytes ?? 0) / 1024 / 1024).toFixed(1)} MiB)` : ''}`,
        );
        const c = status.certificate;
        ctx.print(
          c
            ? `certificate: ${c.subject}, valid until ${c.notAfter} (${c.daysLeft} days)`
            : `certificate: none yet at ${config.tls.cert}`,
        );
      }
      if (!services) throw new ExitStatus(3);
      if (services.some((s) => s.state !== 'running')) throw new ExitStatus(1);
    },
  },
  {
    name: ['reload'],
    args: '',
    summary:
      'make the running mailwerk start read its certificate files again, without dropping a connection (as kill -HUP)',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      const pidFile = join(ctx.config().data_dir, 'mailwerk.pid');
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
      try {
        if (!pid) throw new Error('no pid file');
        process.kill(pid, 'SIGHUP');
      } catch {
        ctx.io.stderr.write(`mailwerk: mailwerk is not running (no live process in ${pidFile})\n`);
        throw new ExitStatus(3);
      }
      if (ctx.json) printJson(ctx, { reloaded: pid });
      else ctx.print(`asked mailwerk (pid ${pid}) to reload its certificates; its log says what it did`);
    },
  },
];
