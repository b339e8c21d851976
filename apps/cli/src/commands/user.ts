import { hashPassword, importHash, verifyPassword } from '@mailwerk/auth';
import { appleProfile } from '@mailwerk/autoconfig';
import { formatByteSize, parseByteSize } from '@mailwerk/config';
import { type Account, DEFAULT_MAILBOXES, type MailStore, normalizeAddress } from '@mailwerk/store';
import type { Command, Options } from '../command.ts';
import { CliError, type Context, ExitStatus } from '../context.ts';
import { printJson, printTable } from '../output.ts';
import { readNewPassword, readPassword } from '../password.ts';

/** "unlimited" (or "none") means no quota; anything else is a size. */
function parseQuota(input: string): number | null {
  if (/^(unlimited|none)$/i.test(input.trim())) return null;
  try {
    return parseByteSize(input);
  } catch (err) {
    throw new CliError(`${(err as Error).message}, or "unlimited"`);
  }
}

export async function findAccount(store: MailStore, address: string): Promise<Account> {
  const canonical = normalizeAddress(address);
  const account = await store.getAccountByAddress(canonical);
  if (!account) throw new CliError(`no user ${canonical}`);
  return account;
}

const publicAccount = (a: Account) => ({
  address: a.address,
  displayName: a.displayName,
  quotaBytes: a.quotaBytes,
  usedBytes: a.usedBytes,
  disabled: a.disabled,
  createdAt: a.createdAt,
});

const quotaText = (a: Account) =>
  `${formatByteSize(a.usedBytes)} of ${a.quotaBytes === null ? 'unlimited' : formatByteSize(a.quotaBytes)}`;

/** The password hash for a new or changed password: --password-hash, or a password read from the prompt or stdin. */
async function passwordHashFrom(ctx: Context, opts: Options): Promise<string> {
  if (typeof opts['password-hash'] === 'string') {
    try {
      return importHash(opts['password-hash']);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  }
  return hashPassword(await readNewPassword(ctx.io));
}

const hashOption = { 'password-hash': { type: 'string' } } as const;

export const userCommands: Command[] = [
  {
    name: ['user', 'profile'],
    args: 'ADDRESS',
    summary:
      'print an Apple configuration profile (.mobileconfig) that sets up the account on an iPhone, iPad or Mac',
    help: 'mailwerk user profile alice@example.org > alice.mobileconfig; send it to her and open it on the device (the password is asked there).',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address]) {
      const account = await ctx.store().getAccountByAddress(normalizeAddress(address!));
      if (!account) throw new CliError(`no such user: ${address}`);
      const c = ctx.config();
      ctx.io.stdout.write(
        appleProfile(account.address, {
          hostname: c.hostname,
          imaps: c.access.imaps_port,
          imap: c.access.imap_port,
          pop3s: c.access.pop3s_port,
          pop3: c.access.pop3_port,
          submissions: c.mta.submissions_port,
          submission: c.mta.submission_port,
        }),
      );
    },
  },
  {
    name: ['user', 'add'],
    args: 'ADDRESS',
    summary: 'add a user with INBOX, Sent, Drafts, Junk, Trash and Archive',
    help: 'The password is read from the prompt, or from the first line of standard input.\n--password-hash takes an existing argon2id, bcrypt or SHA-512-crypt hash (for imported accounts).\n--quota takes a size such as "2 GiB" or "unlimited" (the default).',
    options: { name: { type: 'string' }, quota: { type: 'string' }, ...hashOption },
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address], opts) {
      const store = ctx.store();
      const canonical = normalizeAddress(address!);
      const quotaBytes = typeof opts.quota === 'string' ? parseQuota(opts.quota) : null;
      const domain = canonical.slice(canonical.lastIndexOf('@') + 1);
      // Checked before the password prompt, so nobody types a password for nothing.
      if (!(await store.getDomain(domain)))
        throw new CliError(`${domain} is not a local domain; add it with "mailwerk domain add ${domain}"`);
      if (await store.getAccountByAddress(canonical)) throw new CliError(`user ${canonical} exists already`);
      const passwordHash = await passwordHashFrom(ctx, opts);
      const account = await store.createAccount({
        address: canonical,
        passwordHash,
        displayName: typeof opts.name === 'string' ? opts.name : '',
        quotaBytes,
        mailboxes: [...DEFAULT_MAILBOXES],
      });
      if (ctx.json) printJson(ctx, publicAccount(account));
      else ctx.print(`added user ${account.address} (quota ${quotaText(account)})`);
    },
  },
  {
    name: ['user', 'list'],
    args: '',
    summary: 'list users',
    options: { domain: { type: 'string' } },
    minArgs: 0,
    maxArgs: 0,
    async run(ctx, _args, opts) {
      const list = await ctx
        .store()
        .listAccounts(typeof opts.domain === 'string' ? { domain: opts.domain } : {});
      if (ctx.json) return printJson(ctx, list.map(publicAccount));
      if (list.length === 0) return ctx.print('no users');
      printTable(
        ctx,
        ['USER', 'NAME', 'QUOTA', 'STATE'],
        list.map((a) => [a.address, a.displayName, quotaText(a), a.disabled ? 'disabled' : 'active']),
      );
    },
  },
  {
    name: ['user', 'show'],
    args: 'ADDRESS',
    summary: 'show a user with their mailboxes and aliases that reach them',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address]) {
      const store = ctx.store();
      const a = await findAccount(store, address!);
      const mailboxes = [];
      for (const m of await store.listMailboxes(a.id)) {
        const s = await store.mailboxStatus(m.id);
        mailboxes.push({
          name: m.name,
          specialUse: m.specialUse,
          messages: s.messages,
          unseen: s.unseen,
          size: s.size,
        });
      }
      const aliases = (await store.listAliases())
        .filter((al) => al.targets.includes(a.address))
        .map((al) => al.address);
      if (ctx.json) return printJson(ctx, { ...publicAccount(a), aliases, mailboxes });
      ctx.print(`user:      ${a.address}`);
      ctx.print(`name:      ${a.displayName}`);
      ctx.print(`state:     ${a.disabled ? 'disabled' : 'active'}`);
      ctx.print(`quota:     ${quotaText(a)}`);
      ctx.print(`aliases:   ${aliases.join(', ') || '-'}`);
      ctx.print(`created:   ${a.createdAt.toISOString()}`);
      ctx.print();
      printTable(
        ctx,
        ['MAILBOX', 'SPECIAL-USE', 'MESSAGES', 'UNSEEN', 'SIZE'],
        mailboxes.map((m) => [
          m.name,
          m.specialUse ?? '',
          String(m.messages),
          String(m.unseen),
          formatByteSize(m.size),
        ]),
      );
    },
  },
  {
    name: ['user', 'passwd'],
    args: 'ADDRESS',
    summary: "change a user's password (prompt or standard input; or --password-hash)",
    options: { ...hashOption },
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address], opts) {
      const store = ctx.store();
      const a = await findAccount(store, address!);
      await store.updateAccount(a.id, { passwordHash: await passwordHashFrom(ctx, opts) });
      if (ctx.json) printJson(ctx, { address: a.address, passwordChanged: true });
      else ctx.print(`changed the password of ${a.address}`);
    },
  },
  {
    name: ['user', 'check-password'],
    args: 'ADDRESS',
    summary: "check a password against a user's (like doveadm auth test); exit 1 when it does not match",
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address]) {
      const a = await findAccount(ctx.store(), address!);
      const ok = await verifyPassword(a.passwordHash, await readPassword(ctx.io));
      if (ctx.json) printJson(ctx, { address: a.address, match: ok, disabled: a.disabled });
      else if (ok)
        ctx.print(`password matches for ${a.address}${a.disabled ? ' (but the user is disabled)' : ''}`);
      else throw new CliError(`password does not match for ${a.address}`);
      if (!ok) throw new ExitStatus(1);
    },
  },
  {
    name: ['user', 'quota'],
    args: 'ADDRESS SIZE|unlimited',
    summary: 'set a user\'s quota, e.g. "2 GiB", "500M" or "unlimited"',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [address, size]) {
      const quotaBytes = parseQuota(size!);
      const store = ctx.store();
      const a = await store.updateAccount((await findAccount(store, address!)).id, { quotaBytes });
      if (ctx.json) printJson(ctx, publicAccount(a));
      else ctx.print(`quota of ${a.address}: ${quotaText(a)}`);
    },
  },
  ...(['disable', 'enable'] as const).map(
    (verb): Command => ({
      name: ['user', verb],
      args: 'ADDRESS',
      summary:
        verb === 'disable'
          ? 'stop a user from logging in (mail is still delivered)'
          : 'let a disabled user log in again',
      minArgs: 1,
      maxArgs: 1,
      async run(ctx, [address]) {
        const store = ctx.store();
        const a = await store.updateAccount((await findAccount(store, address!)).id, {
          disabled: verb === 'disable',
        });
        if (ctx.json) printJson(ctx, publicAccount(a));
        else ctx.print(`${verb}d ${a.address}`);
      },
    }),
  ),
  {
    name: ['user', 'remove'],
    args: 'ADDRESS',
    summary: 'remove a user with all their mail and filters',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address]) {
      const store = ctx.store();
      const a = await findAccount(store, address!);
      await store.removeAccount(a.id);
      if (ctx.json) printJson(ctx, { removed: a.address });
      else ctx.print(`removed user ${a.address}`);
    },
  },
];
