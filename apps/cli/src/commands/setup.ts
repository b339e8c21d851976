/** init, start and config: the data directory, the certificate, the configuration file. */
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync } from 'node:fs';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { type Config, loadConfig, sampleConfig } from '@mailwerk/config';
import {
  dropPrivileges,
  handOverData,
  isRoot,
  type Listening,
  lookupUser,
  type ReporterMessage,
  SERVICES,
  type ServiceName,
  SUPERVISE_ENTRY,
  serviceIdentity,
  startServices,
} from '@mailwerk/runtime';
import type { MailStore } from '@mailwerk/store';
import { describeCertificate, ensureCertificate } from '@mailwerk/tls';
import type { Command, Options } from '../command.ts';
import { CliError, type Context, ExitStatus } from '../context.ts';
import { printJson, printTable } from '../output.ts';

/** Ports a non-root user can bind, for trying Mailwerk out. */
const UNPRIVILEGED_PORTS: Record<string, Record<string, number>> = {
  mta: { smtp_port: 2525, submission_port: 2587, submissions_port: 2465 },
  access: {
    imap_port: 2143,
    imaps_port: 2993,
    pop3_port: 2110,
    pop3s_port: 2995,
    managesieve_port: 24190,
    autoconfig_http_port: 2080,
    autoconfig_https_port: 2443,
  },
};

function setKey(text: string, section: string | null, key: string, value: string | number): string {
  const lines = text.split('\n');
  let current: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const header = /^\[(\w+)\]$/.exec(lines[i]!);
    if (header) current = header[1]!;
    else if (current === section && lines[i]!.startsWith(`${key} = `)) {
      lines[i] = `${key} = ${typeof value === 'string' ? JSON.stringify(value) : value}`;
      return lines.join('\n');
    }
  }
  throw new Error(`no key ${section ? `${section}.` : ''}${key} in the sample`);
}

interface InitResult {
  config: Config;
  createdConfig: boolean;
  generatedCertificate: boolean;
}

/** A system user for the services (no login, no password, its home the data directory), as Debian's packages make theirs. */
function createSystemUser(user: string, home: string): void {
  try {
    execFileSync(
      'useradd',
      [
        '--system',
        '--user-group',
        '--home-dir',
        home,
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        user,
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
  } catch (err) {
    const why = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim();
    throw new CliError(`cannot create the user "${user}" the services run as: ${why}`);
  }
}

async function initialise(ctx: Context, opts: Options): Promise<InitResult> {
  let createdConfig = false;
  if (!existsSync(ctx.configPath)) {
    let text = sampleConfig();
    const dataDir = typeof opts['data-dir'] === 'string' ? resolve(opts['data-dir']) : null;
    if (dataDir) text = setKey(text, null, 'data_dir', dataDir);
    if (typeof opts.hostname === 'string') text = setKey(text, null, 'hostname', opts.hostname);
    if (opts['unprivileged-ports']) {
      for (const [section, ports] of Object.entries(UNPRIVILEGED_PORTS)) {
        for (const [key, port] of Object.entries(ports)) text = setKey(text, section, key, port);
      }
    }
    // Validate before writing, so a bad --hostname leaves no file behind.
    const dir = dirname(ctx.configPath);
    await mkdir(dir, { recursive: true });
    const tmp = `${ctx.configPath}.tmp-${process.pid}`;
    // The configuration may hold secrets (a Redis or MongoDB URL with its password): owner only.
    await writeFile(tmp, text, { mode: 0o600 });
    try {
      loadConfig({ path: tmp });
    } catch (err) {
      await unlink(tmp);
      throw err;
    }
    await rename(tmp, ctx.configPath);
    createdConfig = true;
  } else if (opts['data-dir'] || opts.hostname || opts['unprivileged-ports']) {
    throw new CliError(`${ctx.configPath} exists already; edit it instead of passing init options`);
  }
  const config = ctx.config();
  await mkdir(config.data_dir, { recursive: true, mode: 0o750 });
  const tls = await ensureCertificate({
    certPath: config.tls.cert,
    keyPath: config.tls.key,
    hostname: config.hostname,
  });
  ctx.store(); // Opens the store, which creates and migrates it.
  // As root: the services' unprivileged user, created where missing, owns the data directory.
  if (isRoot()) {
    if (!lookupUser(config.run_as)) createSystemUser(config.run_as, config.data_dir);
    try {
      const id = serviceIdentity(config);
      handOverData(config, id);
      // The configuration too (owner-only, it may hold secrets): a service manager may start mailwerk as the user.
      chownSync(ctx.configPath, id.uid, id.gid);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  }
  return { config, createdConfig, generatedCertificate: tls.generated };
}

const initOptions = {
  'data-dir': { type: 'string' },
  hostname: { type: 'string' },
  'unprivileged-ports': { type: 'boolean' },
} as const;

/** A start failure as the admin reads it: one line, saying which address and why. */
function explainStartError(err: { message: string; code?: string; address?: string; port?: number }): never {
  const where = err.port ? `${err.address ?? ''}:${err.port}` : (err.address ?? '');
  if (err.code === 'EADDRINUSE')
    throw new CliError(`cannot listen on ${where}: the address is in use by another program`);
  if (err.code === 'EACCES')
    throw new CliError(
      `cannot listen on ${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`,
    );
  throw err instanceof Error ? err : new CliError(err.message);
}

/** Runs the supervisor as a child of this process (when the CLI was not started through bin/mailwerk). */
function runSupervisor(args: string[]): Promise<number> {
  const child = spawn(process.execPath, ['--conditions=mailwerk-js', SUPERVISE_ENTRY, ...args], {
    stdio: 'inherit',
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
}

async function summary(
  ctx: Context,
  store: MailStore,
  result: InitResult,
  running: Listening[] | null,
): Promise<void> {
  const { config } = result;
  const domains = [];
  for (const d of await store.listDomains()) {
    domains.push({ name: d.name, users: (await store.listAccounts({ domain: d.name })).length });
  }
  const cert = describeCertificate(await readFile(config.tls.cert, 'utf8'));
  const services = [
    { service: 'SMTP (MX)', listen: `${config.mta.listen}:${config.mta.smtp_port}` },
    { service: 'LMTP (MDA)', listen: config.mda.lmtp },
    { service: 'Submission (STARTTLS)', listen: `${config.mta.listen}:${config.mta.submission_port}` },
    { service: 'Submission (TLS)', listen: `${config.mta.listen}:${config.mta.submissions_port}` },
    { service: 'IMAP (STARTTLS)', listen: `${config.access.listen}:${config.access.imap_port}` },
    { service: 'IMAP (TLS)', listen: `${config.access.listen}:${config.access.imaps_port}` },
    { service: 'POP3 (STLS)', listen: `${config.access.listen}:${config.access.pop3_port}` },
    { service: 'POP3 (TLS)', listen: `${config.access.listen}:${config.access.pop3s_port}` },
    { service: 'ManageSieve', listen: `${config.access.listen}:${config.access.managesieve_port}` },
    {
      service: 'Autoconfig (HTTP)',
      listen: `${config.access.listen}:${config.access.autoconfig_http_port}`,
      off: !config.access.autoconfig,
    },
    {
      service: 'Autoconfig (HTTPS)',
      listen: `${config.access.listen}:${config.access.autoconfig_https_port}`,
      off: !config.access.autoconfig,
    },
    {
      service: 'Admin (HTTP)',
      listen: `${config.admin.listen}:${config.admin.port}`,
      admin: true,
    },
  ].map((s) => {
    const live = running?.find((l) => l.service === s.service);
    return { ...s, listen: live?.address ?? s.listen, running: Boolean(live) };
  });
  if (ctx.json) {
    return printJson(ctx, {
      config: ctx.configPath,
      createdConfig: result.createdConfig,
      dataDir: config.data_dir,
      hostname: config.hostname,
      store: { backend: config.store.backend, path: config.store.sqlite_path, bodies: config.store.bodies },
      tls: {
        cert: config.tls.cert,
        generated: result.generatedCertificate,
        selfSigned: cert.selfSigned,
        validTo: cert.validTo,
      },
      domains,
      services,
    });
  }
  ctx.print(`Mailwerk on ${config.hostname}`);
  ctx.print(`  config   ${ctx.configPath}${result.createdConfig ? ' (created)' : ''}`);
  ctx.print(`  data     ${config.data_dir}`);
  ctx.print(
    `  store    ${config.store.backend} ${config.store.sqlite_path} (bodies in ${config.store.bodies})`,
  );
  ctx.print(
    `  TLS      ${config.tls.cert} (${cert.selfSigned ? 'self-signed' : 'signed by a CA'}${result.generatedCertificate ? ', generated now' : ''}, valid until ${cert.validTo.toISOString().slice(0, 10)})`,
  );
  ctx.print(
    `  domains  ${domains.map((d) => `${d.name} (${d.users} user${d.users === 1 ? '' : 's'})`).join(', ') || 'none yet: mailwerk domain add example.org'}`,
  );
  ctx.print();
  ctx.print(running ? 'Services:' : 'Services and where they will listen:');
  printTable(
    ctx,
    ['SERVICE', 'LISTEN', 'STATE'],
    services.map((s) => [
      s.service,
      s.listen,
      s.running
        ? 'running'
        : 'off' in s && s.off
          ? 'off (access.autoconfig)'
          : 'admin' in s
            ? config.admin.port === 0
              ? 'off (admin.port = 0)'
              : running
                ? 'not available (see the log)'
                : ''
            : running
              ? 'not started here'
              : '',
    ]),
  );
}

export const setupCommands: Command[] = [
  {
    name: ['init'],
    args: '',
    summary:
      'create the configuration file (if missing), the data directory, a self-signed certificate and the store',
    options: initOptions,
    optionalConfig: true,
    minArgs: 0,
    maxArgs: 0,
    async run(ctx, _args, opts) {
      const result = await initialise(ctx, opts);
      await summary(ctx, ctx.store(), result, null);
    },
  },
  {
    name: ['start'],
    args: '',
    summary: 'initialise what is missing and run the services until stopped (SIGINT or SIGTERM)',
    help: '--service mta|mda runs one service only (one process per service in the shared setup; repeatable as a comma list).',
    options: { ...initOptions, service: { type: 'string' }, supervised: { type: 'boolean' } },
    optionalConfig: true,
    minArgs: 0,
    maxArgs: 0,
    async run(ctx, _args, opts) {
      const exists = existsSync(ctx.configPath);
      const { service, ...rest } = opts;
      const wanted = typeof service === 'string' ? service.split(',').map((s) => s.trim()) : [...SERVICES];
      for (const s of wanted) {
        if (!SERVICES.includes(s as ServiceName))
          throw new CliError(`unknown service "${s}": use ${SERVICES.join(', ')}`);
      }
      const result = await initialise(ctx, exists ? {} : rest);
      // The services open their own store; this command's connection is done.
      await ctx.close();
      const config = result.config;
      if (opts.supervised) {
        // Started by the supervisor (supervise.ts): hand it the configuration, then report how the start went.
        const outcome = await new Promise<ReporterMessage>((resolve) => {
          process.once('message', (m: ReporterMessage) => resolve(m));
          process.send!({ t: 'config', configPath: ctx.configPath, config } satisfies ReporterMessage);
        });
        process.disconnect?.();
        if (outcome.t === 'failed') explainStartError(outcome);
        if (outcome.t !== 'started') throw new CliError('the supervisor did not start the services');
        try {
          await summary(ctx, ctx.store(), result, outcome.listening);
        } finally {
          await ctx.close();
        }
        return;
      }
      if (typeof service !== 'string') {
        // Every service in a process of its own: bin/mailwerk runs the supervisor directly (supervise.ts);
        // from here (node apps/cli/src/main.ts start) it runs as a child of this process.
        await (await import('@mailwerk/runtime/build')).build();
        const code = await runSupervisor(process.argv.slice(2));
        if (code !== 0) throw new ExitStatus(code);
        return;
      }
      // One service (or a few) in this process: the shared setup, where the container is the supervisor.
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      // Started as root: the data directory goes to the services' user, which this process drops to once its
      // ports are bound (privileges.ts in @mailwerk/runtime).
      const identity = isRoot() ? serviceIdentity(config) : null;
      if (identity) handOverData(config, identity);
      const running = await startServices(config, wanted as ServiceName[]).catch(explainStartError);
      if (identity) dropPrivileges(identity, running.listening);
      // kill -HUP reloads the certificates; it never ends the process.
      process.on('SIGHUP', () => running.reload('SIGHUP'));
      await summary(ctx, running.store, result, running.listening);
      await stopped;
      await running.stop();
    },
  },
  {
    name: ['config', 'sample'],
    args: '',
    summary: 'print a documented sample configuration generated from the schema',
    optionalConfig: true,
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      ctx.io.stdout.write(sampleConfig());
    },
  },
  {
    name: ['config', 'check'],
    args: '',
    summary: 'validate the configuration file and print the values in effect',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      const config = ctx.config();
      if (ctx.json) printJson(ctx, config);
      else ctx.print(`${ctx.configPath}: valid`);
    },
  },
];
