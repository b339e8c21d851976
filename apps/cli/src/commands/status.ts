import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ACME_CERTIFICATE, mailwerkVersion, RENEW_REQUEST } from '@mailwerk/runtime';
import { MIGRATIONS } from '@mailwerk/store-sqlite';
import { describeCertificate } from '@mailwerk/tls';
import type { Command } from '../command.ts';
import { CliError, type Context, ExitStatus } from '../context.ts';
import { printJson, printTable } from '../output.ts';

interface ServiceStatus {
  service: string;
  /** Which process of a service that runs several (mta.processes). */
  instance?: number;
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

/** The certificate the services present: ACME's from the store when there is one, else the file's. */
async function certificate(
  ctx: Context,
): Promise<{ subject: string; notAfter: string; daysLeft: number; source: string } | null> {
  const config = ctx.config();
  const acme = config.tls.acme.enabled ? await ctx.store().getTlsItem(ACME_CERTIFICATE) : null;
  const source = acme?.cert ? 'acme' : config.tls.cert;
  const pem = acme?.cert || (existsSync(config.tls.cert) ? readFileSync(config.tls.cert, 'utf8') : null);
  if (!pem) return null;
  const cert = describeCertificate(pem);
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    notAfter: cert.validTo.toISOString(),
    daysLeft: Math.floor((cert.validTo.getTime() - Date.now()) / 86_400_000),
    source,
  };
}

/** Sends SIGHUP to the running supervisor (its pid file); exit 3 when it is not running. */
function signalSupervisor(ctx: Context): number {
  const pidFile = join(ctx.config().data_dir, 'mailwerk.pid');
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
  try {
    if (!pid) throw new Error('no pid file');
    process.kill(pid, 'SIGHUP');
  } catch {
    ctx.io.stderr.write(`mailwerk: mailwerk is not running (no live process in ${pidFile})\n`);
    throw new ExitStatus(3);
  }
  return pid;
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
        certificate: await certificate(ctx),
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
              s.instance ? `${s.service} #${s.instance}` : s.service,
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
      'make the running mailwerk start read its certificates and configuration again (log_level, mta.routes and mta.relay_host take effect), without dropping a connection (as kill -HUP)',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      const pid = signalSupervisor(ctx);
      if (ctx.json) printJson(ctx, { reloaded: pid });
      else ctx.print(`asked mailwerk (pid ${pid}) to reload; its log says what it did`);
    },
  },
  {
    name: ['cert', 'renew'],
    args: '',
    summary: 'order a new ACME certificate now, whatever the expiry of the one in use (tls.acme)',
    help: 'The running server orders it and every service takes it without a restart; its log says how it went. Exit 3 when mailwerk is not running.',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      if (!ctx.config().tls.acme.enabled)
        throw new CliError('ACME is off (tls.acme.enabled = false): there is nothing to renew');
      await ctx.store().putTlsItem({ name: RENEW_REQUEST, cert: '', key: '', notAfter: null });
      const pid = signalSupervisor(ctx);
      if (ctx.json) printJson(ctx, { renewal: 'asked', pid });
      else ctx.print(`asked mailwerk (pid ${pid}) to order a new certificate; its log says how it went`);
    },
  },
];
