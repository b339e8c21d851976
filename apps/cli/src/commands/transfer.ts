import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { normalizeAddress } from '@mailwerk/store';
import { SingleBar } from 'cli-progress';
import type { Command, Options } from '../command.ts';
import { CliError, type Context } from '../context.ts';
import { printJson } from '../output.ts';
import { readPassword } from '../password.ts';
import {
  exportMaildir,
  importImap,
  importMaildir,
  importMbox,
  kindOf,
  type OnProgress,
  type Progress,
} from '../transfer.ts';

const MiB = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** Where an import or export is: the folder, how far into it (of how much, where known), and the total so far. */
function describeProgress(p: Progress): string {
  const f = p.inFolder;
  const so = `${p.messages} messages so far (${MiB(p.bytes)})`;
  return f
    ? `${p.folder}: ${f.messages}/${f.totalMessages} messages, ${MiB(f.bytes)} of ${MiB(f.totalBytes)}; ${so}`
    : `${p.folder}: ${so}`;
}

/**
 * Progress on a terminal as a line rewritten in place, else a plain line when a folder begins, every
 * 1,000 messages and when a folder whose size is known is done; `done()` ends it.
 */
function reporter(ctx: Context, verb: string): { onProgress: OnProgress; done(): void } {
  const tty = Boolean((ctx.io.stderr as NodeJS.WriteStream).isTTY) && !ctx.json;
  if (tty) {
    const bar = new SingleBar({
      stream: ctx.io.stderr as NodeJS.WriteStream,
      format: `${verb} {detail}`,
      hideCursor: true,
      noTTYOutput: false,
    });
    bar.start(0, 0, { detail: '' });
    return {
      onProgress: (p) => bar.update(p.messages, { detail: describeProgress(p) }),
      done: () => bar.stop(),
    };
  }
  let folder: string | null = null;
  return {
    onProgress: (p) => {
      const finished = p.inFolder && p.inFolder.messages === p.inFolder.totalMessages;
      if (p.folder !== folder || p.messages % 1000 === 0 || finished) {
        folder = p.folder;
        ctx.io.stderr.write(`${verb} ${describeProgress(p)}\n`);
      }
    },
    done: () => undefined,
  };
}

async function account(ctx: Context, user: string) {
  const a = await ctx.store().getAccountByAddress(normalizeAddress(user));
  if (!a) throw new CliError(`no such user: ${user}`);
  return a;
}

function summary(ctx: Context, what: string, p: Progress): void {
  if (ctx.json) {
    printJson(ctx, p);
    return;
  }
  ctx.print(
    `${what}: ${p.added} messages (${p.messages} read, ${MiB(p.bytes)}); ${p.skipped} there already${p.failed ? `; ${p.failed} larger than the size limit, left out` : ''}`,
  );
}

/** `mailwerk import USER imap://…`: see importImap. */
async function importFromImap(
  ctx: Context,
  a: { id: string; address: string },
  url: string,
  opts: Options,
): Promise<void> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CliError(`not an IMAP address: ${url}`);
  }
  const secure = u.protocol.toLowerCase() === 'imaps:';
  if (u.username || u.password)
    throw new CliError('give the user with --user, the password on the prompt or stdin');
  if (typeof opts.user !== 'string' || !opts.user) throw new CliError('import from IMAP: --user U is needed');
  const password = await readPassword(ctx.io);
  const into = typeof opts.into === 'string' ? opts.into : undefined;
  const dryRun = opts['dry-run'] === true;
  const r = reporter(ctx, dryRun ? 'looking at' : 'importing');
  let p: Awaited<ReturnType<typeof importImap>>;
  try {
    p = await importImap(
      ctx.store(),
      a.id,
      {
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port ? Number(u.port) : secure ? 993 : 143,
        secure,
        plain: opts['no-tls'] === true,
        user: opts.user,
        password,
        insecure: opts.insecure === true,
      },
      r.onProgress,
      { into, dryRun, maxSize: ctx.config().limits.message_size },
    );
  } catch (err) {
    const e = err as Error & { authenticationFailed?: boolean; responseText?: string; code?: string };
    if (e.authenticationFailed) throw new CliError(`${u.host}: the sign-in as ${opts.user} was refused`);
    throw new CliError(`${u.host}: ${e.responseText ?? e.code ?? e.message}`);
  } finally {
    r.done();
  }
  if (dryRun) {
    if (ctx.json) printJson(ctx, p.folders);
    else for (const f of p.folders) ctx.print(`${f.remote} -> ${f.local}: ${f.toCopy} to copy`);
    return;
  }
  summary(ctx, `imported into ${a.address}`, p);
}

export const transferCommands: Command[] = [
  {
    name: ['import'],
    args: 'USER PATH|imap://HOST[:PORT]',
    summary:
      "bring a Maildir (Dovecot's layout), an mbox file or a whole IMAP account into a user's mailboxes; running it again adds only what is new",
    help: [
      'PATH: a Maildir directory (its folders with it, Maildir++ or LAYOUT=fs; flags and keywords from the file names and dovecot-keywords, the date from the file) or an mbox file (into a folder named after it, or --into). --into FOLDER puts everything under FOLDER.',
      'imap://HOST[:PORT] (STARTTLS, required) or imaps://HOST[:PORT] (TLS): every folder of the account --user U (the password from the prompt or stdin), special-use folders onto ours, each message byte for byte with flags, keywords and date. --dry-run lists what would be copied; --insecure accepts a certificate that does not verify; --no-tls allows a server without TLS (the password then crosses the network in the clear).',
    ].join('\n'),
    options: {
      into: { type: 'string' },
      user: { type: 'string' },
      'dry-run': { type: 'boolean' },
      insecure: { type: 'boolean' },
      'no-tls': { type: 'boolean' },
    },
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, path], opts) {
      const a = await account(ctx, user!);
      if (/^imaps?:\/\//i.test(path!)) return importFromImap(ctx, a, path!, opts);
      const source = resolve(path!);
      if (!existsSync(source)) throw new CliError(`${source} does not exist`);
      let kind: 'maildir' | 'mbox';
      try {
        kind = await kindOf(source);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
      const into = typeof opts.into === 'string' ? opts.into : undefined;
      const r = reporter(ctx, 'importing');
      let p: Progress;
      try {
        p =
          kind === 'maildir'
            ? await importMaildir(ctx.store(), a.id, source, r.onProgress, into)
            : await importMbox(
                ctx.store(),
                a.id,
                source,
                r.onProgress,
                into,
                ctx.config().limits.message_size,
              );
      } finally {
        r.done();
      }
      summary(ctx, `imported into ${a.address}`, p);
    },
  },
  {
    name: ['export'],
    args: 'USER DIR',
    summary:
      "write a user's mailboxes to a Maildir (Dovecot reads it); running it again adds only what is new",
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [user, dir]) {
      const a = await account(ctx, user!);
      const r = reporter(ctx, 'exporting');
      let p: Progress;
      try {
        p = await exportMaildir(ctx.store(), a.id, resolve(dir!), r.onProgress);
      } finally {
        r.done();
      }
      summary(ctx, `exported ${a.address} to ${resolve(dir!)}`, p);
    },
  },
];
