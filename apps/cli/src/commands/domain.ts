import { isStoreError } from '@mailwerk/store';
import type { Command } from '../command.ts';
import { CliError } from '../context.ts';
import { printJson, printTable } from '../output.ts';

export const domainCommands: Command[] = [
  {
    name: ['domain', 'add'],
    args: 'DOMAIN',
    summary: 'accept mail for a domain',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [name]) {
      const d = await ctx.store().addDomain(name!);
      if (ctx.json) printJson(ctx, d);
      else ctx.print(`added domain ${d.name}; run "mailwerk dns ${d.name}" once DNS records are available`);
    },
  },
  {
    name: ['domain', 'list'],
    args: '',
    summary: 'list local domains with their numbers of users and aliases',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      const store = ctx.store();
      const rows = [];
      for (const d of await store.listDomains()) {
        rows.push({
          name: d.name,
          users: (await store.listAccounts({ domain: d.name })).length,
          aliases: (await store.listAliases({ domain: d.name })).length,
          createdAt: d.createdAt,
        });
      }
      if (ctx.json) return printJson(ctx, rows);
      if (rows.length === 0) return ctx.print('no domains; add one with "mailwerk domain add DOMAIN"');
      printTable(
        ctx,
        ['DOMAIN', 'USERS', 'ALIASES'],
        rows.map((r) => [r.name, String(r.users), String(r.aliases)]),
      );
    },
  },
  {
    name: ['domain', 'remove'],
    args: 'DOMAIN',
    summary: 'stop accepting mail for a domain (--force also removes its users, their mail, and its aliases)',
    options: { force: { type: 'boolean' } },
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [name], opts) {
      try {
        await ctx.store().removeDomain(name!, { force: opts.force === true });
      } catch (err) {
        if (isStoreError(err, 'conflict'))
          throw new CliError(`${err.message} (--force removes them with the domain)`);
        throw err;
      }
      if (ctx.json) printJson(ctx, { removed: name });
      else ctx.print(`removed domain ${name}`);
    },
  },
];
