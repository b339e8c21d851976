/** The MDA: LMTP from the MTA (or Postfix), delivery into mailboxes, and the hourly journal pruning. */
import { createLmtpServer, queueOutbox } from '@mailwerk/mda';
import { createArcSealer, createDkimSigner } from '@mailwerk/mta';
import { closeServer } from '../listen.ts';
import type { ServiceDeps, StartedService } from './types.ts';

/** Journal entries kept per mailbox behind its newest change (a session further behind re-selects). */
const JOURNAL_KEEP = 100_000;

export async function start(d: ServiceDeps): Promise<StartedService> {
  const { config, store, log } = d;
  const lmtp = createLmtpServer({
    store,
    bus: d.bus,
    hostname: config.hostname,
    maxMessageSize: config.limits.message_size,
    onError: d.onError,
    log: (level, message, fields) => log.log(level, message, fields),
    // Sieve's redirects and vacation replies go into the MTA's queue (the store every service shares);
    // the queue runner picks them up within its poll interval.
    outbox: queueOutbox(store, {
      sign: createDkimSigner(store),
      ...(config.checks.arc_seal ? { seal: createArcSealer(store, config.hostname) } : {}),
      onQueued: (entry) =>
        log.log('info', 'queued', {
          id: entry.id,
          from: entry.sender,
          to: entry.recipients.map((r) => r.address),
          size: entry.size,
          origin: entry.meta.origin,
        }),
    }),
  });
  // The change journal serves live updates; entries far behind every mailbox's present are dropped hourly,
  // and so are the vacation and redirect keys whose time has passed.
  const maintenance = setInterval(() => {
    store
      .pruneJournal(JOURNAL_KEEP)
      .then((n) => n && log.log('info', 'journal pruned', { entries: n }))
      .catch((err) => d.onError(err, 'journal pruning'));
    store.pruneRemembered().catch((err) => d.onError(err, 'pruning remembered keys'));
  }, 3_600_000);
  maintenance.unref();
  try {
    const listening = await d.listenAs(lmtp, 'LMTP (MDA)', config.mda.lmtp, '127.0.0.1');
    lmtp.on('error', (err) => log.error(err, 'lmtp'));
    return {
      listening: [listening],
      async stop() {
        clearInterval(maintenance);
        await closeServer(lmtp);
      },
    };
  } catch (err) {
    clearInterval(maintenance);
    throw err;
  }
}
