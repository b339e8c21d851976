/**
 * `mailwerk fetch …`: a user's mailboxes at other servers, fetched into theirs (the MRA, packages/mda
 * fetch.ts). The password comes from the prompt or stdin and is kept encrypted with the key in the data
 * directory; it is never printed.
 */
import { InProcessBus } from '@mailwerk/bus';
import { encryptSecret, fetchKey, fetchRemote, queueOutbox } from '@mailwerk/mda';
import { createDkimSigner } from '@mailwerk/mta';
import type { RemoteAccount } from '@mailwerk/store';
import type { Command } from '../command.ts';
import { CliError } from '../context.ts';
import { printJson, printTable } from '../output.ts';
import { readPassword } from '../password.ts';
import { findAccount } from './user.ts';

/** `90s`, `5m`, `2h`, `1d`, or seconds: at least a minute, at most a day. */
export function parseEvery(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new CliError(`--every: a time such as 5m, 90s or 1h, not "${text}"`);
  const seconds =
    Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86_400 } as Record<string, number>)[m[2]!]!;
  if (seconds < 60 || seconds > 86_400) throw new CliError('--every: from 1m to 1d');
  return seconds;
}

const where = (r: RemoteAccount) => `${r.protocol}://${r.user}@${r.host}:${r.port}`;
const stateOf = (r: RemoteAccount) =>
  r.stopped ? `stopped: ${r.lastError}` : r.errors ? `failing (${r.errors}): ${r.lastError}` : 'ok';

async function remoteOf(
  ctx: Parameters<Command['run']>[0],
  user: string,
  id: string,
): Promise<RemoteAccount> {
  const a = await findAccount(ctx.store(), user);
  const r = await ctx.store().getRemoteAccount(id);
  if (!r || r.accountId !== a.id) throw new CliError(`${a.address} has no remote account ${id}`);
  return r;
}

export const fetchCommands: Command[] = [
  {
    name: ['fetch', 'add'],
    args: 'USER HOST[:PORT]',
    summary: "fetch mail from the user's mailbox at another server (IMAP or POP3) into theirs",
    help: [
      '--imap or --pop3; --user U (the password from the prompt or stdin);',
      '--tls (the default: 993/995), --starttls (143/110) or --no-tls (only on a network you trust);',
      '--insecure accepts a certificate that does not verify; --folder F (IMAP, repeatable; INBOX by default);',
      '--keep (the default) leaves the mail there, --delete removes it once stored here;',
      '--every 5m (1m to 1d); --into FOLDER files it there (else INBOX, through the Sieve script).',
    ].join('\n'),
    options: {
      imap: { type: 'boolean' },
      pop3: { type: 'boolean' },
      user: { type: 'string' },
      tls: { type: 'boolean' },
      starttls: { type: 'boolean' },
      'no-tls': { type: 'boolean' },
      insecure: { type: 'boolean' },
      folder: { type: 'string', multiple: true },
      keep: { type: 'boolean' },
      delete: { type: 'boolean' },
      every: { type: 'string' },
      into: { type: 'string' },
    },
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, hostPort], o) {
      const a = await findAccount(ctx.store(), user!);
      if (Boolean(o.imap) === Boolean(o.pop3)) throw new CliError('fetch add: --imap or --pop3');
      if (typeof o.user !== 'string' || !o.user) throw new CliError('fetch add: --user U is needed');
      if (o.keep && o.delete) throw new CliError('fetch add: --keep or --delete, not both');
      const modes = [o.tls, o.starttls, o['no-tls']].filter(Boolean).length;
      if (modes > 1) throw new CliError('fetch add: one of --tls, --starttls, --no-tls');
      const tls = o.starttls ? 'starttls' : o['no-tls'] ? 'none' : 'tls';
      const protocol = o.imap ? 'imap' : 'pop3';
      const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(hostPort!);
      if (!m || (m[2] && (Number(m[2]) < 1 || Number(m[2]) > 65_535)))
        throw new CliError(`not a host[:port]: ${hostPort}`);
      const port = m[2]
        ? Number(m[2])
        : protocol === 'imap'
          ? tls === 'tls'
            ? 993
            : 143
          : tls === 'tls'
            ? 995
            : 110;
      const folders = Array.isArray(o.folder)
        ? o.folder
        : typeof o.folder === 'string'
          ? [o.folder]
          : ['INBOX'];
      if (protocol === 'pop3' && o.folder)
        throw new CliError('fetch add: --folder is for IMAP; POP3 has one mailbox');
      const everySeconds = typeof o.every === 'string' ? parseEvery(o.every) : 300;
      const password = await readPassword(ctx.io);
      const r = await ctx.store().addRemoteAccount({
        accountId: a.id,
        protocol,
        host: m[1]!.replace(/^\[|\]$/g, ''),
        port,
        tls,
        insecure: o.insecure === true,
        user: o.user,
        secret: encryptSecret(fetchKey(ctx.config().data_dir), password),
        folders,
        keep: !o.delete,
        everySeconds,
        into: typeof o.into === 'string' ? o.into : null,
      });
      ctx.print(`fetching ${where(r)} into ${a.address} every ${everySeconds} s (id ${r.id})`);
    },
  },
  {
    name: ['fetch', 'list'],
    args: '[USER]',
    summary: 'the remote accounts fetched (of one user, or all): where, how often, the last fetch and error',
    minArgs: 0,
    maxArgs: 1,
    async run(ctx, [user]) {
      const store = ctx.store();
      const a = user ? await findAccount(store, user) : null;
      const list = await store.listRemoteAccounts(a?.id);
      const owners = new Map<string, string>();
      for (const r of list)
        if (!owners.has(r.accountId))
          owners.set(r.accountId, (await store.getAccount(r.accountId))?.address ?? '?');
      if (ctx.json)
        printJson(
          ctx,
          list.map(({ secret: _secret, ...r }) => ({
            ...r,
            user: owners.get(r.accountId),
            remoteUser: r.user,
          })),
        );
      else
        printTable(
          ctx,
          ['ID', 'USER', 'REMOTE', 'EVERY', 'LAST FETCH', 'STATE'],
          list.map((r) => [
            r.id,
            owners.get(r.accountId) ?? '?',
            where(r),
            `${r.everySeconds}s`,
            r.lastFetchAt ? r.lastFetchAt.toISOString() : 'never',
            stateOf(r),
          ]),
        );
    },
  },
  {
    name: ['fetch', 'show'],
    args: 'USER ID',
    summary: 'one remote account (never its password)',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, id]) {
      const { secret: _secret, ...r } = await remoteOf(ctx, user!, id!);
      if (ctx.json) printJson(ctx, r);
      else
        for (const [k, v] of Object.entries(r))
          ctx.print(
            `${k}: ${v instanceof Date ? v.toISOString() : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`,
          );
    },
  },
  {
    name: ['fetch', 'remove'],
    args: 'USER ID',
    summary: 'stop fetching that remote account (what was fetched stays)',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, id]) {
      const r = await remoteOf(ctx, user!, id!);
      await ctx.store().removeRemoteAccount(r.id);
      ctx.print(`no longer fetching ${where(r)}`);
    },
  },
  {
    name: ['fetch', 'passwd'],
    args: 'USER ID',
    summary:
      'set the password kept for a remote account (from the prompt or stdin); a stopped account starts again',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, id]) {
      const r = await remoteOf(ctx, user!, id!);
      const password = await readPassword(ctx.io);
      if (!password) throw new CliError('fetch passwd: an empty password');
      await ctx.store().updateRemoteAccount(r.id, {
        secret: encryptSecret(fetchKey(ctx.config().data_dir), password),
        stopped: false,
        errors: 0,
        lastError: null,
      });
      ctx.print(`password set for ${where(r)}${r.stopped ? '; fetching again' : ''}`);
    },
  },
  {
    name: ['fetch', 'run'],
    args: 'USER [ID]',
    summary: "fetch now (the user's remote accounts, or one), even one stopped by a refused password",
    minArgs: 1,
    maxArgs: 2,
    async run(ctx, [user, id]) {
      const store = ctx.store();
      const a = await findAccount(store, user!);
      const list = id ? [await remoteOf(ctx, user!, id)] : await store.listRemoteAccounts(a.id);
      if (!list.length) throw new CliError(`${a.address} has no remote accounts`);
      const config = ctx.config();
      const options = {
        store,
        bus: new InProcessBus(),
        key: fetchKey(config.data_dir),
        hostname: config.hostname,
        maxMessageSize: config.limits.message_size,
        outbox: queueOutbox(store, { sign: createDkimSigner(store) }),
      };
      const failures: string[] = [];
      for (const r of list) {
        const result = await fetchRemote(options, r.id);
        if (result.error) failures.push(`${where(r)}: ${result.error}`);
        else
          ctx.print(
            `${where(r)}: ${result.fetched} fetched${result.skipped ? `, ${result.skipped} left out` : ''}`,
          );
      }
      if (failures.length) throw new CliError(failures.join('; '));
    },
  },
];
