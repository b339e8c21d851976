/** Looking at mail: a mailbox's messages, and the queue. */
import { formatByteSize } from '@mailwerk/config';
import { headerBlock } from '@mailwerk/smtp';
import { formatReply, normalizeAddress, readStructure } from '@mailwerk/store';
import type { Command } from '../command.ts';
import { CliError } from '../context.ts';
import { printJson, printTable } from '../output.ts';

export const mailCommands: Command[] = [
  {
    name: ['mail', 'list'],
    args: 'ADDRESS',
    summary: "list the messages in a user's mailbox (INBOX unless --mailbox)",
    options: { mailbox: { type: 'string' } },
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [address], opts) {
      const store = ctx.store();
      const account = await store.getAccountByAddress(normalizeAddress(address!));
      if (!account) throw new CliError(`no user ${normalizeAddress(address!)}`);
      const name = typeof opts.mailbox === 'string' ? opts.mailbox : 'INBOX';
      const box = await store.getMailbox(account.id, name);
      if (!box) throw new CliError(`${account.address} has no mailbox "${name}"`);
      const messages = [];
      for (const m of await store.listMessages(box.id)) {
        // A damaged stored structure is read again from the message (and said so on stderr), never fatal.
        const env = (
          await readStructure(store, m, () =>
            ctx.io.stderr.write(
              `mailwerk: message ${m.uid}: stored structure damaged; read from the message\n`,
            ),
          )
        ).root.envelope;
        messages.push({
          uid: m.uid,
          date: m.internalDate,
          from: env?.from?.map((a) => ('address' in a ? a.address : a.name)).join(', ') ?? '',
          subject: env?.subject ?? '',
          size: m.size,
          flags: m.flags,
        });
      }
      if (ctx.json) return printJson(ctx, { mailbox: box.name, uidValidity: box.uidValidity, messages });
      if (messages.length === 0) return ctx.print(`${account.address} ${box.name}: no messages`);
      printTable(
        ctx,
        ['UID', 'DATE', 'FROM', 'SUBJECT', 'SIZE', 'FLAGS'],
        messages.map((m) => [
          String(m.uid),
          m.date.toISOString().slice(0, 16).replace('T', ' '),
          m.from,
          m.subject.slice(0, 60),
          formatByteSize(m.size),
          m.flags.join(' '),
        ]),
      );
    },
  },
  {
    name: ['queue', 'list'],
    args: '',
    summary: 'list the messages waiting in the queue',
    minArgs: 0,
    maxArgs: 0,
    async run(ctx) {
      const entries = await ctx.store().listQueue();
      if (ctx.json) return printJson(ctx, entries);
      if (entries.length === 0) return ctx.print('the queue is empty');
      printTable(
        ctx,
        ['ID', 'ARRIVED', 'SENDER', 'RECIPIENTS', 'NEXT ATTEMPT', 'LAST REPLY'],
        entries.map((e) => {
          const pending = e.recipients.filter((r) => r.state === 'pending');
          return [
            e.id + (e.quarantined ? ' (quarantined)' : e.held ? ' (held)' : ''),
            e.createdAt.toISOString().slice(0, 19).replace('T', ' '),
            e.sender || '<>',
            pending.map((r) => r.address).join(', '),
            e.nextAttemptAt.toISOString().slice(0, 19).replace('T', ' '),
            e.quarantined ?? (pending[0]?.lastReply ? formatReply(pending[0].lastReply) : ''),
          ];
        }),
      );
    },
  },
  {
    name: ['queue', 'show'],
    args: 'ID',
    summary: 'show a queued message: envelope, per-recipient state and its header',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [id]) {
      const store = ctx.store();
      const entry = await store.getQueueEntry(id!);
      if (!entry) throw new CliError(`no queued message ${id}`);
      const header = headerBlock(await store.blobs.get(entry.blobId));
      if (ctx.json) return printJson(ctx, { ...entry, header });
      ctx.print(
        `id:        ${entry.id}${entry.quarantined ? ' (quarantined)' : entry.held ? ' (held)' : ''}`,
      );
      if (entry.quarantined)
        ctx.print(`problem:   ${entry.quarantined}; \`mailwerk queue delete ${entry.id}\` removes it`);
      ctx.print(`sender:    ${entry.sender || '<>'}`);
      ctx.print(`arrived:   ${entry.createdAt.toISOString()}`);
      ctx.print(`attempts:  ${entry.attempts}, next ${entry.nextAttemptAt.toISOString()}`);
      ctx.print(`size:      ${formatByteSize(entry.size)}`);
      ctx.print();
      printTable(
        ctx,
        ['RECIPIENT', 'STATE', 'ATTEMPTS', 'LAST REPLY'],
        entry.recipients.map((r) => [
          r.address,
          r.state,
          String(r.attempts),
          r.lastReply ? formatReply(r.lastReply) : '',
        ]),
      );
      ctx.print();
      ctx.print(header.trimEnd());
    },
  },
  ...(
    [
      ['retry', 'retried', 'make queued messages due now (the queue runner picks them up within a second)'],
      ['hold', 'held', 'keep queued messages from being delivered until released'],
      ['release', 'released', 'let held messages be delivered again'],
      ['delete', 'deleted', 'remove queued messages without delivering them and without a bounce'],
    ] as const
  ).map(
    ([verb, done, summary]): Command => ({
      name: ['queue', verb],
      args: 'ID|all',
      summary,
      minArgs: 1,
      maxArgs: 1,
      async run(ctx, [id]) {
        const store = ctx.store();
        const ids = id === 'all' ? (await store.listQueue()).map((e) => e.id) : [id!];
        for (const one of ids) {
          if (!(await store.getQueueEntry(one))) throw new CliError(`no queued message ${one}`);
          if (verb === 'retry') await store.retryQueueEntry(one);
          else if (verb === 'delete') await store.removeQueueEntry(one);
          else await store.setQueueHeld(one, verb === 'hold');
        }
        if (ctx.json) printJson(ctx, { [done]: ids });
        else ctx.print(`${ids.length} message(s) ${done}`);
      },
    }),
  ),
];
