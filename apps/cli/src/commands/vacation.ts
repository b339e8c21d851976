/**
 * `mailwerk vacation USER on|off`: an out-of-office reply as a Sieve script named "vacation" (RFC 5230),
 * which the user can still read and edit over ManageSieve. The script that was active before keeps
 * running after the reply (RFC 6609 include), and is the active one again after `off`.
 */
import { readFileSync } from 'node:fs';
import { compile, MAX_SCRIPT_SIZE, SieveError } from '@mailwerk/sieve';
import type { Command } from '../command.ts';
import { CliError, readInput } from '../context.ts';
import { printJson } from '../output.ts';
import { findAccount } from './user.ts';

const NAME = 'vacation';
/** The line that names the script that ran before; `off` reads it back. */
const INCLUDE = /^include :personal :optional "((?:[^"\\]|\\.)*)";$/m;

/** A Sieve quoted string (RFC 5228 §2.4.2): backslash and double quote escaped; line breaks may stand. */
const quoted = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
const unquoted = (s: string) => s.replace(/\\(.)/g, '$1');

export interface VacationSettings {
  message: string;
  subject?: string | undefined;
  days: number;
  /** Last day of the replies, YYYY-MM-DD, or none. */
  until?: string | undefined;
  /** The script that runs after the reply (the one active before). */
  previous?: string | undefined;
  today: string;
}

export function vacationScript(v: VacationSettings): string {
  const require = [
    'vacation',
    ...(v.until ? ['date', 'relational'] : []),
    ...(v.previous ? ['include'] : []),
  ];
  const reply = `vacation :days ${v.days}${v.subject ? ` :subject ${quoted(v.subject)}` : ''} ${quoted(v.message)};`;
  return [
    `# Out of office, written by \`mailwerk vacation\` on ${v.today}; edit it freely.`,
    '# `mailwerk vacation USER off` ends it and makes the script it includes the active one again.',
    `require [${require.map(quoted).join(', ')}];`,
    ...(v.until ? [`if currentdate :value "le" "date" ${quoted(v.until)} {`, `  ${reply}`, '}'] : [reply]),
    ...(v.previous ? [`include :personal :optional ${quoted(v.previous)};`] : []),
    '',
  ].join('\n');
}

export const vacationCommands: Command[] = [
  {
    name: ['vacation'],
    args: 'USER [on|off]',
    summary: 'an out-of-office reply (a Sieve script the user can edit); without on/off: whether it is on',
    help: [
      'on: --message-file F (- for stdin) the reply text; --subject S (default "Auto: " and the',
      '    original subject); --days N (1-60, default 7): one reply per sender in that time;',
      '    --until YYYY-MM-DD: the last day it answers. The script that was active keeps running.',
      'off: the script active before is active again (or none).',
    ].join('\n'),
    options: {
      subject: { type: 'string' },
      days: { type: 'string' },
      until: { type: 'string' },
      'message-file': { type: 'string' },
    },
    minArgs: 1,
    maxArgs: 2,
    async run(ctx, [user, what], options) {
      const store = ctx.store();
      const a = await findAccount(store, user!);
      const active = await store.getActiveSieveScript(a.id);
      const current = active?.name === NAME ? active : null;
      const previousOf = (text: string) => {
        const m = INCLUDE.exec(text);
        return m ? unquoted(m[1]!) : undefined;
      };
      if (what === undefined) {
        const until = current
          ? /currentdate :value "le" "date" "([\d-]+)"/.exec(current.content)?.[1]
          : undefined;
        const state = {
          user: a.address,
          on: current !== null,
          until: until ?? null,
          after: current ? (previousOf(current.content) ?? null) : null,
        };
        if (ctx.json) printJson(ctx, state);
        else
          ctx.print(
            current ? `on for ${a.address}${until ? ` until ${until}` : ''}` : `off for ${a.address}`,
          );
        return;
      }
      if (what === 'off') {
        if (!current) {
          ctx.print(`off for ${a.address} (it was not on)`);
          return;
        }
        const previous = previousOf(current.content);
        const back = previous && (await store.getSieveScript(a.id, previous)) ? previous : null;
        await store.setActiveSieveScript(a.id, back);
        ctx.print(`off for ${a.address}${back ? `; "${back}" is the active script again` : ''}`);
        return;
      }
      if (what !== 'on') throw new CliError(`vacation: "on" or "off", not "${what}"`);
      const file = options['message-file'] as string | undefined;
      if (!file) throw new CliError('vacation on: give the reply with --message-file FILE (- for stdin)');
      let message: string;
      try {
        const raw =
          file === '-'
            ? (await readInput(ctx.io.stdin, MAX_SCRIPT_SIZE)).toString('utf8')
            : readFileSync(file, 'utf8');
        message = raw.replace(/\r\n/g, '\n').replace(/\n+$/, '');
      } catch (err) {
        throw new CliError(
          `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        );
      }
      if (!message.trim()) throw new CliError('vacation on: the reply is empty');
      const days = options.days === undefined ? 7 : Number(options.days);
      if (!Number.isInteger(days) || days < 1 || days > 60)
        throw new CliError(`--days: a whole number of days from 1 to 60, not "${options.days}"`);
      const today = new Date().toISOString().slice(0, 10);
      const until = options.until as string | undefined;
      if (until !== undefined) {
        const d = new Date(`${until}T00:00:00Z`);
        if (
          !/^\d{4}-\d{2}-\d{2}$/.test(until) ||
          Number.isNaN(d.getTime()) ||
          d.toISOString().slice(0, 10) !== until
        )
          throw new CliError(`--until: a date as YYYY-MM-DD, not "${until}"`);
        if (until < today) throw new CliError(`--until: ${until} is in the past`);
      }
      // The script that runs after the reply: the one active now, or the one the reply ran before.
      const previous = current ? previousOf(current.content) : active?.name;
      const script = vacationScript({
        message,
        subject: options.subject as string | undefined,
        days,
        until,
        previous,
        today,
      });
      try {
        compile(script);
      } catch (err) {
        if (err instanceof SieveError)
          throw new CliError(`the vacation script would not check: ${err.message}`);
        throw err;
      }
      await store.putSieveScript(a.id, NAME, script);
      await store.setActiveSieveScript(a.id, NAME);
      ctx.print(
        `on for ${a.address}${until ? ` until ${until}` : ''}: one reply per sender every ${days} day${days === 1 ? '' : 's'}` +
          (previous ? `; "${previous}" still runs after it` : ''),
      );
    },
  },
];
