import { join, resolve } from 'node:path';
import { backupStore, restoreStore } from '@mailwerk/store-sqlite';
import type { Command } from '../command.ts';
import { CliError, type Context } from '../context.ts';
import { printJson } from '../output.ts';

/** The embedded store's database file and, when bodies are kept as files, their directory. */
function embedded(ctx: Context): { db: string; bodies: string | undefined } {
  const config = ctx.config();
  if (config.store.backend !== 'sqlite')
    throw new CliError(
      'backup and restore are for the embedded store (store.backend = "sqlite"); back MongoDB up with mongodump',
    );
  return {
    db: config.store.sqlite_path,
    bodies: config.store.bodies === 'files' ? join(config.data_dir, 'blobs') : undefined,
  };
}

export const backupCommands: Command[] = [
  {
    name: ['backup'],
    args: 'FILE',
    summary: 'write a consistent copy of the store to FILE while the server runs (bodies included)',
    help: 'FILE must not exist. With store.bodies = "files", the bodies are copied into FILE.bodies/ beside it.',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [file]) {
      const { db, bodies } = embedded(ctx);
      const target = resolve(file!);
      const r = await backupStore(db, target, bodies);
      if (ctx.json) printJson(ctx, { file: target, ...r });
      else
        ctx.print(
          `backup written to ${target} (schema ${r.schema}${bodies ? `, ${r.bodies} body files into ${target}.bodies` : ''})`,
        );
    },
  },
  {
    name: ['restore'],
    args: 'FILE',
    summary: 'replace the store with a backup (mailwerk must be stopped; the old store is kept beside it)',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [file]) {
      const { db, bodies } = embedded(ctx);
      const r = await restoreStore(resolve(file!), db, bodies);
      if (ctx.json) printJson(ctx, { store: db, ...r });
      else
        ctx.print(
          `restored ${db} from ${resolve(file!)} (schema ${r.schema})${r.previous ? `; the store it replaced is ${r.previous}` : ''}`,
        );
    },
  },
];
