/** `mailwerk sieve …`: a user's Sieve scripts, as ManageSieve manages them (the same checks, the same store). */
import { readFileSync } from 'node:fs';
import { compile, MAX_SCRIPT_SIZE, SieveError, scriptNameProblem } from '@mailwerk/sieve';
import type { Command } from '../command.ts';
import { CliError, type Context, readInput } from '../context.ts';
import { printJson, printTable } from '../output.ts';
import { findAccount } from './user.ts';

/** The script from FILE, or from stdin when FILE is "-" or missing; checked, so a mistake is refused with its place. */
async function readScript(file: string | undefined, stdin: Context['io']['stdin']): Promise<string> {
  let text: string;
  try {
    if (file && file !== '-') text = readFileSync(file, 'utf8');
    else text = (await readInput(stdin, MAX_SCRIPT_SIZE)).toString('utf8');
  } catch (err) {
    throw new CliError(
      `cannot read ${file ?? 'stdin'}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (Buffer.byteLength(text) > MAX_SCRIPT_SIZE)
    throw new CliError(`${file ?? 'stdin'}: a script is at most ${MAX_SCRIPT_SIZE} octets`);
  try {
    compile(text);
  } catch (err) {
    if (err instanceof SieveError) throw new CliError(`${file ?? 'stdin'}: ${err.message}`);
    throw err;
  }
  return text;
}

/** A user's script by name, or the one-line error that it does not exist. */
async function scriptOf(ctx: Context, user: string, name: string) {
  const a = await findAccount(ctx.store(), user);
  const s = await ctx.store().getSieveScript(a.id, name);
  if (!s) throw new CliError(`${a.address} has no script "${name}"`);
  return { a, s };
}

export const sieveCommands: Command[] = [
  {
    name: ['sieve', 'list'],
    args: 'USER',
    summary: "a user's Sieve scripts, the active one marked",
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [user]) {
      const a = await findAccount(ctx.store(), user!);
      const scripts = await ctx.store().listSieveScripts(a.id);
      if (ctx.json)
        printJson(
          ctx,
          scripts.map((s) => ({ name: s.name, active: s.active, bytes: Buffer.byteLength(s.content) })),
        );
      else
        printTable(
          ctx,
          ['NAME', 'ACTIVE', 'BYTES'],
          scripts.map((s) => [s.name, s.active ? 'yes' : '', String(Buffer.byteLength(s.content))]),
        );
    },
  },
  {
    name: ['sieve', 'show'],
    args: 'USER NAME',
    summary: 'print a Sieve script',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, name]) {
      const { s } = await scriptOf(ctx, user!, name!);
      ctx.io.stdout.write(s.content.endsWith('\n') ? s.content : `${s.content}\n`);
    },
  },
  {
    name: ['sieve', 'check'],
    args: '[FILE]',
    summary: 'check a Sieve script (from FILE or stdin): ok, or the first mistake with its line and column',
    minArgs: 0,
    maxArgs: 1,
    optionalConfig: true,
    async run(ctx, [file]) {
      await readScript(file, ctx.io.stdin);
      ctx.print(`${file ?? 'stdin'}: ok`);
    },
  },
  {
    name: ['sieve', 'put'],
    args: 'USER NAME [FILE]',
    summary: 'store a Sieve script (from FILE or stdin) under NAME, after checking it',
    minArgs: 2,
    maxArgs: 3,
    async run(ctx, [user, name, file]) {
      const a = await findAccount(ctx.store(), user!);
      const problem = scriptNameProblem(name!);
      if (problem) throw new CliError(problem);
      await ctx.store().putSieveScript(a.id, name!, await readScript(file, ctx.io.stdin));
      ctx.print(`stored "${name}" for ${a.address}`);
    },
  },
  {
    name: ['sieve', 'activate'],
    args: 'USER NAME',
    summary: 'make NAME the script that runs on delivery (one at a time)',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, name]) {
      const { a } = await scriptOf(ctx, user!, name!);
      await ctx.store().setActiveSieveScript(a.id, name!);
      ctx.print(`"${name}" is the active script of ${a.address}`);
    },
  },
  {
    name: ['sieve', 'deactivate'],
    args: 'USER',
    summary: 'no script runs on delivery (the scripts stay)',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [user]) {
      const a = await findAccount(ctx.store(), user!);
      await ctx.store().setActiveSieveScript(a.id, null);
      ctx.print(`${a.address} has no active script`);
    },
  },
  {
    name: ['sieve', 'remove'],
    args: 'USER NAME',
    summary: 'delete a script (not the active one: deactivate it first)',
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, name]) {
      const a = await findAccount(ctx.store(), user!);
      await ctx.store().deleteSieveScript(a.id, name!);
      ctx.print(`removed "${name}" of ${a.address}`);
    },
  },
];
