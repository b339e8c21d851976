/** What every command gets: parsed options, the configuration, the store, and where to write. */
import { type Config, loadConfig, resolveConfigPath } from '@mailwerk/config';
import { openStore, UnsupportedBackendError } from '@mailwerk/runtime';
import type { MailStore } from '@mailwerk/store';

export class UsageError extends Error {}
/** A failure already explained to the user in `message`. */
export class CliError extends Error {}
/** Ends the command with this exit status, output already written. */
export class ExitStatus extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`exit ${status}`);
    this.status = status;
  }
}

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
}

export interface Context {
  io: Io;
  json: boolean;
  configPath: string;
  config(): Config;
  store(): MailStore;
  /** Closes the store if it is open; a later store() opens it again. */
  close(): Promise<void>;
  print(line?: string): void;
}

export function openStoreFor(config: Config): MailStore {
  try {
    return openStore(config);
  } catch (err) {
    if (err instanceof UnsupportedBackendError) throw new CliError(err.message);
    throw err;
  }
}

export function createContext(options: {
  io: Io;
  json: boolean;
  configFlag?: string;
  optionalConfig?: boolean;
}): Context {
  const configPath = resolveConfigPath(options.configFlag);
  let config: Config | null = null;
  let store: MailStore | null = null;
  const ctx: Context = {
    io: options.io,
    json: options.json,
    configPath,
    config() {
      config ??= loadConfig({ path: configPath, optional: options.optionalConfig ?? false });
      return config;
    },
    store() {
      store ??= openStoreFor(ctx.config());
      return store;
    },
    async close() {
      await store?.close();
      store = null;
    },
    print(line = '') {
      options.io.stdout.write(`${line}\n`);
    },
  };
  return ctx;
}

/**
 * Standard input read as a stream (a pipe may be non-blocking, where readFileSync(0) fails with
 * EAGAIN), no further than one octet past `max`: the caller tells a too long input by its length.
 */
export async function readInput(stdin: Io['stdin'], max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    chunks.push(b);
    size += b.length;
    if (size > max) break;
  }
  return Buffer.concat(chunks);
}
