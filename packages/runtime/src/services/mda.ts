/** The MDA: LMTP from the MTA (or Postfix), delivery into mailboxes, fetching from other servers (the MRA), and the hourly journal pruning. */
import { randomBytes } from 'node:crypto';
import {
  createLmtpServer,
  fetchDueAt,
  fetchKey,
  fetchRemote,
  loadImapFlow,
  queueOutbox,
} from '@mailwerk/mda';
import { createArcSealer, createDkimSigner } from '@mailwerk/mta';
import { closeServer } from '../listen.ts';
import type { ServiceDeps, StartedService } from './types.ts';

/** Journal entries kept per mailbox behind its newest change (a session further behind re-selects). */
const JOURNAL_KEEP = 100_000;

export async function start(d: ServiceDeps): Promise<StartedService> {
  const { config, store, log } = d;
  const outbox = queueOutbox(store, {
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
  });
  const lmtp = createLmtpServer({
    store,
    bus: d.bus,
    hostname: config.hostname,
    maxMessageSize: config.limits.message_size,
    onError: d.onError,
    log: (level, message, fields) => log.log(level, message, fields),
    // Sieve's redirects and vacation replies go into the MTA's queue (the store every service shares);
    // the queue runner picks them up within its poll interval.
    outbox,
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
  // The MRA: every remote account whose time has come is fetched by one process (a lock in the store per
  // account, as the queue leases entries), one account at a time; a stopped one waits for the admin.
  const owner = `fetch-${randomBytes(6).toString('hex')}`;
  let fetching = false;
  const fetchDue = async () => {
    if (fetching) return;
    fetching = true;
    try {
      const due = (await store.listRemoteAccounts()).filter((r) => !r.stopped && fetchDueAt(r) <= Date.now());
      if (!due.length) return;
      await loadImapFlow();
      const options = {
        store,
        bus: d.bus,
        key: fetchKey(config.data_dir),
        hostname: config.hostname,
        maxMessageSize: config.limits.message_size,
        outbox,
        log: (level: 'info' | 'warn', message: string, fields: Record<string, unknown>) =>
          log.log(level, message, fields),
      };
      for (const r of due) {
        const lock = `fetch:${r.id}`;
        if (!(await store.acquireLock(lock, owner, 15 * 60_000))) continue;
        try {
          const result = await fetchRemote(options, r.id);
          if (result.fetched)
            log.log('info', 'fetched', {
              id: r.id,
              remote: `${r.protocol}://${r.user}@${r.host}`,
              messages: result.fetched,
            });
        } finally {
          await store.releaseLock(lock, owner);
        }
      }
    } catch (err) {
      d.onError(err, 'fetching from other servers');
    } finally {
      fetching = false;
    }
  };
  // Loaded before the services drop privileges (see loadImapFlow) when there is anything to fetch.
  if ((await store.listRemoteAccounts()).length) await loadImapFlow();
  const fetchTimer = setInterval(() => void fetchDue(), config.mda.fetch_check_seconds * 1000);
  fetchTimer.unref();
  void fetchDue();
  try {
    const listening = await d.listenAs(lmtp, 'LMTP (MDA)', config.mda.lmtp, '127.0.0.1');
    lmtp.on('error', (err) => log.error(err, 'lmtp'));
    return {
      listening: [listening],
      async stop() {
        clearInterval(maintenance);
        clearInterval(fetchTimer);
        await closeServer(lmtp);
      },
    };
  } catch (err) {
    clearInterval(maintenance);
    clearInterval(fetchTimer);
    throw err;
  }
}
