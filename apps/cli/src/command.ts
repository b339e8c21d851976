import type { ParseArgsOptionsConfig } from 'node:util';
import type { Context } from './context.ts';

export type Options = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** Words that name it: `['user', 'add']`. */
  name: string[];
  args: string;
  summary: string;
  options?: ParseArgsOptionsConfig;
  /** Extra lines for `--help`. */
  help?: string;
  minArgs: number;
  maxArgs: number;
  /** The config file may be missing (init, config sample). */
  optionalConfig?: boolean;
  run(ctx: Context, args: string[], options: Options): Promise<void>;
}
