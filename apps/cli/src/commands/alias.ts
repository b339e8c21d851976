import { checkAliasTargets } from '@mailwerk/store';
import type { Command } from '../command.ts';
import { printJson, printTable } from '../output.ts';

export const aliasCommands: Command[] = [
  {
    name: ['alias', 'add'],
    args: 'ADDRESS|@DOMAIN TARGET...',
    summary:
      'forward an address (or, with @DOMAIN, every unknown address of the domain) to accounts or outside addresses',
    minArgs: 2,
    maxArgs: 1000,
    async run(ctx, [source, ...targets]) {
      // A target that does not exist, or a loop, would make the MX accept mail it can only bounce.
      await checkAliasTargets(ctx.store(), source!, targets);
      const a = await ctx.store().addAlias({ address: source!, targets });
      if (ctx.json) printJson(ctx, a);
      else
        ctx.print(
          `added ${a.address.startsWith('@') ? 'catch-all' : 'alias'} ${a.address} -> ${a.targets.join(', ')}`,
        );
    },
  },
  {
    name: ['alias', 'list'],
    args: '',
    summary: 'list aliases',
    options: { domain: { type: 'string' } },
    minArgs: 0,
    maxArgs: 0,
    async run(ctx, _args, opts) {
      const list = await ctx
        .store()
        .listAliases(typeof opts.domain === 'string' ? { domain: opts.domain } : {});
      if (ctx.json) return printJson(ctx, list);
      if (list.length === 0) return ctx.print('no aliases');
      printTable(
        ctx,
        ['ALIAS', 'TARGETS'],
        list.map((a) => [a.address, a.targets.join(', ')]),
      );
    },
  },
  {
    name: ['alias', 'remove'],
    args: 'ADDRESS|@DOMAIN',
    summary: 'remove an alias or catch-all',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [source]) {
      await ctx.store().removeAlias(source!);
      if (ctx.json) printJson(ctx, { removed: source });
      else ctx.print(`removed alias ${source}`);
    },
  },
];
