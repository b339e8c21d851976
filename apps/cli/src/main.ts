/**
 * `mailwerk`: the admin command. Exit status: 0 success, 1 the command
 * failed (the message says why, nothing was changed), 2 usage error.
 */
import { parseArgs } from 'node:util';
import { ConfigError } from '@mailwerk/config';
import { mailwerkVersion } from '@mailwerk/runtime';
import { StoreError } from '@mailwerk/store';
import { MIGRATIONS } from '@mailwerk/store-sqlite';
import type { Command, Options } from './command.ts';
import { aliasCommands } from './commands/alias.ts';
import { backupCommands } from './commands/backup.ts';
import { dkimCommands } from './commands/dkim.ts';
import { domainCommands } from './commands/domain.ts';
import { fetchCommands } from './commands/fetch.ts';
import { mailCommands } from './commands/mail.ts';
import { setupCommands } from './commands/setup.ts';
import { sieveCommands } from './commands/sieve.ts';
import { statusCommands } from './commands/status.ts';
import { transferCommands } from './commands/transfer.ts';
import { userCommands } from './commands/user.ts';
import { vacationCommands } from './commands/vacation.ts';
import { CliError, createContext, ExitStatus, type Io, UsageError } from './context.ts';

export const COMMANDS: Command[] = [
  ...setupCommands,
  ...domainCommands,
  ...userCommands,
  ...sieveCommands,
  ...vacationCommands,
  ...fetchCommands,
  ...aliasCommands,
  ...mailCommands,
  ...dkimCommands,
  ...backupCommands,
  ...statusCommands,
  ...transferCommands,
];

const GLOBAL_OPTIONS = {
  config: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function usage(): string {
  const lines = [
    'usage: mailwerk [--config FILE] [--json] COMMAND [ARGS]    (mailwerk --version: the version)',
    '',
    'The configuration file is --config, else $MAILWERK_CONFIG, else ./mailwerk.toml if present, else /etc/mailwerk/mailwerk.toml.',
    '',
    'commands:',
  ];
  const width = Math.max(...COMMANDS.map((c) => `${c.name.join(' ')} ${c.args}`.length));
  for (const c of COMMANDS) lines.push(`  ${`${c.name.join(' ')} ${c.args}`.padEnd(width)}  ${c.summary}`);
  return lines.join('\n');
}

function commandHelp(c: Command): string {
  const opts = Object.entries(c.options ?? {}).map(
    ([k, v]) => `--${k}${v.type === 'string' ? ' VALUE' : ''}`,
  );
  return [
    `usage: mailwerk ${c.name.join(' ')} ${c.args}${opts.length ? ` [${opts.join('] [')}]` : ''}`,
    '',
    c.summary,
    ...(c.help ? ['', c.help] : []),
  ].join('\n');
}

function findCommand(argv: string[]): { command: Command; rest: string[] } | null {
  // The command words are the first two positionals; the value after --config is not one.
  const words = argv.filter((a, i) => !a.startsWith('-') && argv[i - 1] !== '--config').slice(0, 2);
  for (const c of COMMANDS) {
    if (c.name.every((w, i) => words[i] === w)) {
      // Remove the command words from argv, keeping options wherever they stand.
      const rest = [...argv];
      for (const w of c.name) rest.splice(rest.indexOf(w), 1);
      return { command: c, rest };
    }
  }
  return null;
}

function explain(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  if (err instanceof StoreError || err instanceof CliError) return err.message;
  if (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))
    return err.message;
  return `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
}

/** `mailwerk --version`: this version, the Node running it, and the store schema it reads and writes. */
function version(): string {
  return `mailwerk ${mailwerkVersion()} (Node ${process.versions.node}, store schema ${MIGRATIONS.length})`;
}

export async function run(argv: string[], io: Io): Promise<number> {
  if (argv[0] === '--version' || (argv.includes('--version') && !findCommand(argv))) {
    io.stdout.write(`${version()}\n`);
    return 0;
  }
  // Options given before the command word (mailwerk --config x user list) belong to it too.
  const found = findCommand(argv);
  if (!found) {
    const wantsHelp =
      argv.length === 0 || argv.includes('--help') || argv.includes('-h') || argv[0] === 'help';
    if (wantsHelp) {
      io.stdout.write(`${usage()}\n`);
      return 0;
    }
    io.stderr.write(
      `mailwerk: unknown command "${argv.filter((a) => !a.startsWith('-')).join(' ')}" (see mailwerk --help)\n`,
    );
    return 2;
  }
  const { command, rest } = found;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...GLOBAL_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    if (parsed.values.help) {
      io.stdout.write(`${commandHelp(command)}\n`);
      return 0;
    }
    const n = parsed.positionals.length;
    if (n < command.minArgs || n > command.maxArgs) {
      throw new UsageError(`expected ${command.args || 'no arguments'}`);
    }
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split('. To specify')[0];
    io.stderr.write(
      `mailwerk: ${command.name.join(' ')}: ${message} (see mailwerk ${command.name.join(' ')} --help)\n`,
    );
    return 2;
  }
  const values = parsed.values as Options;
  const ctx = createContext({
    io,
    json: values.json === true,
    ...(typeof values.config === 'string' ? { configFlag: values.config } : {}),
    optionalConfig: command.optionalConfig ?? false,
  });
  try {
    await command.run(ctx, parsed.positionals, values);
    return 0;
  } catch (err) {
    if (err instanceof ExitStatus) return err.status;
    io.stderr.write(`mailwerk: ${explain(err)}\n`);
    return 1;
  } finally {
    await ctx.close();
  }
}

if (import.meta.main) {
  // Output into a pipe closed early (`mailwerk user list | head -1`) ends the command quietly.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  process.exitCode = await run(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
  });
}
