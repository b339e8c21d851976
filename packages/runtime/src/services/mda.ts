/** The MDA: LMTP from the MTA (or Postfix), delivery into mailboxes, fetching from other servers (the MRA), and the hourly journal pruning. */
import { randomBytes } from 'node:crypto';
import {
  createLmtpServer,
  fetchDueAt,
  fetchKey,
  fetchRemote,
  loadImapFlow,
  queueOutbox,
  watchRemote,
} from '@mailwerk/mda';
import { createArcSealer, createDkimSigner } from '@mailwerk/mta';
import type { RemoteAccount } from '@mailwerk/store';
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
  // account, as the queue leases entries), one account at a time; a stopped one waits for the admin. An
  // IMAP account whose last fetch went well is also watched with IDLE by one process (another lock), so
  // what arrives there is fetched at once instead of at the next interval.
  const owner = `fetch-${randomBytes(6).toString('hex')}`;
  const tickMs = config.mda.fetch_check_seconds * 1000;
  const watchers = new Map<string, () => void>();
  const pushed = new Set<string>();
  let fetching = false;
  let again = false;
  // Stopping waits for the fetch under way (its account's lock and fetched state written), and starts none.
  let stopped = false;
  let inFlight: Promise<void> = Promise.resolve();
  const options = () => ({
    store,
    bus: d.bus,
    key: fetchKey(config.data_dir),
    hostname: config.hostname,
    maxMessageSize: config.limits.message_size,
    outbox,
    log: (level: 'info' | 'warn', message: string, fields: Record<string, unknown>) =>
      log.log(level, message, fields),
  });
  const unwatch = async (id: string) => {
    watchers.get(id)?.();
    watchers.delete(id);
    await store.releaseLock(`fetch-idle:${id}`, owner);
  };
  const keepWatching = async (all: RemoteAccount[], key: Buffer) => {
    if (stopped) return;
    const wanted = all.filter((r) => r.protocol === 'imap' && !r.stopped && r.errors === 0 && r.lastFetchAt);
    for (const id of watchers.keys()) if (!wanted.some((r) => r.id === id)) await unwatch(id);
    for (const r of wanted) {
      // Held by us: renewed; held by another process: that one watches.
      if (!(await store.acquireLock(`fetch-idle:${r.id}`, owner, Math.max(3 * tickMs, 60_000)))) {
        if (watchers.has(r.id)) await unwatch(r.id);
        continue;
      }
      if (watchers.has(r.id)) continue;
      watchers.set(r.id, () => undefined);
      const onNew = () => {
        pushed.add(r.id);
        void fetchDue();
      };
      const onClosed = (err?: unknown) => {
        watchers.delete(r.id);
        log.log('info', 'idle connection to a remote account ended; watched again at the next check', {
          id: r.id,
          ...(err ? { error: (err as Error).message } : {}),
        });
      };
      watchRemote(key, r, onNew, onClosed)
        .then((stop) => {
          log.log('info', 'watching a remote account with IDLE', {
            id: r.id,
            remote: `imap://${r.user}@${r.host}`,
          });
          return watchers.has(r.id) && !stopped ? watchers.set(r.id, stop) : stop();
        })
        .catch((err: Error) => onClosed(err));
    }
  };
  const fetchDue = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (fetching) {
      again = true;
      return inFlight;
    }
    inFlight = runFetch();
    return inFlight;
  };
  const runFetch = async (): Promise<void> => {
    fetching = true;
    try {
      const all = await store.listRemoteAccounts();
      if (!all.length) {
        // The last remote account removed: nothing more to watch either.
        for (const id of [...watchers.keys()]) await unwatch(id);
        return;
      }
      await loadImapFlow();
      const o = options();
      const due = all.filter((r) => !r.stopped && (pushed.has(r.id) || fetchDueAt(r) <= Date.now()));
      for (const r of due) {
        if (stopped) break;
        pushed.delete(r.id);
        const lock = `fetch:${r.id}`;
        if (!(await store.acquireLock(lock, owner, 15 * 60_000))) continue;
        try {
          const result = await fetchRemote(o, r.id);
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
      // After a fetch, the accounts as it left them (last fetch, errors); else the list read above.
      await keepWatching(due.length ? await store.listRemoteAccounts() : all, o.key);
    } catch (err) {
      d.onError(err, 'fetching from other servers');
    } finally {
      fetching = false;
      if (again && !stopped) {
        again = false;
        void fetchDue();
      }
    }
  };
  // Loaded before the services drop privileges (see loadImapFlow) when there is anything to fetch.
  if ((await store.listRemoteAccounts()).length) await loadImapFlow();
  const fetchTimer = setInterval(() => void fetchDue(), tickMs);
  fetchTimer.unref();
  void fetchDue();
  try {
    const listening = await d.listenAs(lmtp, 'LMTP (MDA)', config.mda.lmtp, '127.0.0.1');
    lmtp.on('error', (err) => log.error(err, 'lmtp'));
    return {
      listening: [listening],
      async stop() {
        stopped = true;
        clearInterval(maintenance);
        clearInterval(fetchTimer);
        for (const id of [...watchers.keys()]) await unwatch(id).catch(() => undefined);
        // A fetch cut off here would leave its account's lock held (15 minutes) and its last message
        // unrecorded; it ends with the account it is on (the supervisor kills after stop_timeout_seconds).
        await inFlight;
        await closeServer(lmtp);
      },
    };
  } catch (err) {
    clearInterval(maintenance);
    clearInterval(fetchTimer);
    throw err;
  }
}
