/**
 * The MRA: mail fetched from a user's mailbox at another server (`mailwerk fetch`), over IMAP
 * (imapflow) or POP3 (pop3-client.ts), delivered like any other mail: through deliverToRecipient, so
 * the user's Sieve script, spam filing and quota apply, with a Received: line naming the source.
 *
 * Each message once: it is delivered with a delivery key made of the remote account and the message's
 * place there (IMAP folder, UIDVALIDITY, UID; POP3 UIDL), and what was taken is recorded on the remote
 * account after each message. A crash between the two fetches the message again and the key makes the
 * second delivery a duplicate, never a second copy. With --delete, a message is removed at the server
 * only after it is stored here (IMAP: \Deleted and EXPUNGE after it; POP3: DELE, committed at QUIT).
 *
 * The password is kept encrypted (AES-256-GCM) with a key in the data directory (fetchKey), not in the
 * store: a copy of the database alone does not give away anyone's other mailbox.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chownSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bus } from '@mailwerk/bus';
import { parseHeaderBlock, parseMessage } from '@mailwerk/mime';
import { editHeader, headerBlock, rfc5322Date } from '@mailwerk/smtp';
import type { Account, FetchedState, MailStore, RemoteAccount } from '@mailwerk/store';
import { type DeliveryInput, deliverToRecipient, type Outbox } from './deliver.ts';
import { Pop3Client } from './pop3-client.ts';

/** The key that encrypts remote passwords: `fetch.key` in the data directory, made (mode 0600) on first use. */
export function fetchKey(dataDir: string): Buffer {
  const path = join(dataDir, 'fetch.key');
  if (!existsSync(path)) {
    writeFileSync(path, randomBytes(32), { mode: 0o600, flag: 'wx' });
    // Owned like the data directory, so the services' user reads it after they drop privileges.
    const st = statSync(dataDir);
    if (process.getuid?.() === 0) chownSync(path, st.uid, st.gid);
  }
  const key = readFileSync(path);
  if (key.length !== 32) throw new Error(`${path} is not a key (32 bytes)`);
  return key;
}

export function encryptSecret(key: Buffer, text: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([c.update(text, 'utf8'), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64');
}

export function decryptSecret(key: Buffer, secret: string): string {
  const raw = Buffer.from(secret, 'base64');
  try {
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  } catch {
    // GCM's tag does not match: another key (a host of a shared setup without the same fetch.key, a
    // data directory restored without it) or a damaged value. Either way the admin can act on this.
    throw new Error(
      "the password cannot be read with this host's fetch.key (it was kept with another one: copy fetch.key from the host that added the account, or set the password again with mailwerk fetch passwd)",
    );
  }
}

let imapflow: Promise<typeof import('imapflow')> | null = null;
/**
 * imapflow, loaded once. A service loads it before it drops privileges (as the access service loads
 * acme-client): an installation its user cannot read would make the first IMAP fetch fail.
 */
export function loadImapFlow(): Promise<typeof import('imapflow')> {
  imapflow ??= import('imapflow');
  return imapflow;
}

/** An imapflow client (not connected yet) for a server as a remote account names it; `mailwerk import` uses it too. */
export async function imapClient(
  remote: Pick<RemoteAccount, 'host' | 'port' | 'tls' | 'insecure' | 'user'>,
  password: string,
) {
  const { ImapFlow } = await loadImapFlow();
  return new ImapFlow({
    host: remote.host,
    port: remote.port,
    secure: remote.tls === 'tls',
    ...(remote.tls === 'starttls'
      ? { doSTARTTLS: true }
      : remote.tls === 'none'
        ? { doSTARTTLS: false }
        : {}),
    auth: { user: remote.user, pass: password },
    tls: { rejectUnauthorized: !remote.insecure },
    logger: false,
  });
}

/**
 * Watches the first folder of an IMAP remote account with IDLE (RFC 2177; imapflow idles whenever a
 * selected connection has nothing else to do, and falls back to polling with NOOP where IDLE is not
 * offered): `onNew` is called once the watch begins and whenever the server says the folder holds more
 * messages. Returns a function that ends the watch; `onClosed` is told when the connection ends by itself.
 */
export async function watchRemote(
  key: Buffer,
  remote: RemoteAccount,
  onNew: () => void,
  onClosed: (err?: unknown) => void,
): Promise<() => void> {
  const client = await imapClient(remote, decryptSecret(key, remote.secret));
  await client.connect();
  const folder = remote.folders[0] ?? 'INBOX';
  const lock = await client.getMailboxLock(folder, { readOnly: true });
  lock.release();
  let known = client.mailbox ? client.mailbox.exists : 0;
  let ended = false;
  client.on('exists', (data: { count: number }) => {
    if (data.count > known) onNew();
    known = data.count;
  });
  client.on('close', () => {
    if (!ended) onClosed();
  });
  client.on('error', (err: unknown) => {
    if (!ended) onClosed(err);
  });
  // What arrived between the last fetch and this watch beginning is fetched now.
  onNew();
  return () => {
    ended = true;
    void client.logout().catch(() => client.close());
  };
}

export interface FetchOptions {
  store: MailStore;
  bus: Bus;
  key: Buffer;
  hostname: string;
  maxMessageSize: number;
  outbox?: Outbox;
  log?: DeliveryInput['log'];
}

export interface FetchResult {
  fetched: number;
  /** Over the size limit or refused by the user's script: recorded as taken, not stored. */
  skipped: number;
  /** The account's state after the run (errors recorded, stopped after a refused password). */
  remote: RemoteAccount;
  /** Why this run failed, or null. */
  error: string | null;
}

/** The sender of a fetched message: its Return-Path, as the remote server's delivery wrote it; else <>. */
function returnPath(raw: Buffer): string {
  const field = parseHeaderBlock(headerBlock(raw)).find((f) => f.key === 'return-path');
  return field ? (/^<([^<>]*)>/.exec(field.value.trim())?.[1] ?? '') : '';
}

/**
 * Delivers one fetched message to the account; true when it was stored (or had been, a duplicate) or
 * the user's script refused it, false when it must wait (over quota): the run stops there.
 */
async function deliverFetched(
  o: FetchOptions,
  remote: RemoteAccount,
  account: Account,
  raw: Buffer,
  key: string,
): Promise<'stored' | 'skipped' | 'later'> {
  if (raw.length > o.maxMessageSize) {
    o.log?.('warn', 'fetched message over the size limit; left at the server', {
      user: account.address,
      remote: `${remote.user}@${remote.host}`,
      size: raw.length,
    });
    return 'skipped';
  }
  const received = `Received: from ${remote.host} by ${o.hostname} with ${remote.protocol.toUpperCase()} (Mailwerk fetch of ${remote.user}) for <${account.address}>; ${rfc5322Date(new Date())}\r\n`;
  // The remote delivery's Return-Path becomes our envelope sender; ours is the one the MDA writes on top.
  const data = Buffer.concat([
    Buffer.from(received, 'latin1'),
    editHeader(raw, (name, text) => (name === 'return-path' ? null : text)),
  ]);
  const input: DeliveryInput = {
    store: o.store,
    bus: o.bus,
    sender: returnPath(raw),
    raw: data,
    structure: parseMessage(data),
    deliveryKey: key,
    hostname: o.hostname,
    ...(o.log ? { log: o.log } : {}),
    ...(o.outbox ? { outbox: o.outbox } : {}),
  };
  const r = await deliverToRecipient(
    input,
    account.address,
    { accounts: [{ account, tag: remote.into }], external: [] },
    new Set(),
  );
  if (r.ok) return 'stored';
  if (r.error.responseCode >= 500) {
    o.log?.('info', "fetched message refused by the user's script", {
      user: account.address,
      reply: r.error.message,
    });
    return 'skipped';
  }
  return 'later';
}

/** Runs one fetch of a remote account now; records the outcome on it. Never throws for the remote's faults. */
export async function fetchRemote(o: FetchOptions, id: string): Promise<FetchResult> {
  const remote = await o.store.getRemoteAccount(id);
  if (!remote) throw new Error(`no remote account ${id}`);
  const account = await o.store.getAccount(remote.accountId);
  if (!account) throw new Error(`no account ${remote.accountId}`);
  const state: FetchedState = structuredClone(remote.fetched);
  const counts = { fetched: 0, skipped: 0 };
  const save = () => o.store.updateRemoteAccount(id, { fetched: state });
  try {
    const password = decryptSecret(o.key, remote.secret);
    const run: Run = { o, remote, account, password, state, counts, save };
    if (remote.protocol === 'imap') await fetchImap(run);
    else await fetchPop3(run);
    const done = await o.store.updateRemoteAccount(id, {
      fetched: state,
      lastFetchAt: new Date(),
      errors: 0,
      lastError: null,
      stopped: false,
    });
    return { ...counts, remote: done, error: null };
  } catch (err) {
    const e = err as Error & { authenticationFailed?: boolean; responseText?: string };
    const auth = Boolean(e.authenticationFailed);
    const why = auth
      ? `the server refused the password (${e.responseText ?? e.message})`
      : (e.responseText ?? e.message);
    const failed = await o.store.updateRemoteAccount(id, {
      fetched: state,
      lastError: why,
      lastErrorAt: new Date(),
      errors: remote.errors + 1,
      // A refused password stops the account: trying again would only get it locked at the other end.
      stopped: auth,
    });
    o.log?.('warn', auth ? 'fetch stopped: password refused' : 'fetch failed', {
      user: account.address,
      remote: `${remote.user}@${remote.host}`,
      error: why,
    });
    return { ...counts, remote: failed, error: why };
  }
}

/** One fetch run: the account, its password, what was fetched so far and how to record it. */
interface Run {
  o: FetchOptions;
  remote: RemoteAccount;
  account: Account;
  password: string;
  state: FetchedState;
  counts: { fetched: number; skipped: number };
  save: () => Promise<unknown>;
}

async function fetchImap(run: Run): Promise<void> {
  const { o, remote, account, password, state, counts, save } = run;
  const client = await imapClient(remote, password);
  await client.connect();
  try {
    state.imap ??= {};
    const seen = state.imap;
    for (const folder of remote.folders) {
      const lock = await client.getMailboxLock(folder, { readOnly: remote.keep });
      try {
        const uidValidity = Number(client.mailbox ? client.mailbox.uidValidity : 0);
        // A new UIDVALIDITY means the old UIDs mean nothing now: start over (the keys carry it).
        let last = seen[folder]?.uidValidity === uidValidity ? seen[folder]!.uid : 0;
        const exists = client.mailbox ? client.mailbox.exists : 0;
        if (!exists) continue;
        const uids = ((await client.search({ uid: `${last + 1}:*` }, { uid: true })) || [])
          .filter((u) => u > last)
          .sort((a, b) => a - b);
        const taken: number[] = [];
        for (const uid of uids) {
          const m = await client.fetchOne(String(uid), { source: true }, { uid: true });
          if (m === false || !m.source) continue;
          const outcome = await deliverFetched(
            o,
            remote,
            account,
            m.source,
            `fetch:${remote.id}:${folder}:${uidValidity}:${uid}`,
          );
          if (outcome === 'later') break;
          if (outcome === 'stored') counts.fetched++;
          else counts.skipped++;
          last = uid;
          seen[folder] = { uidValidity, uid };
          taken.push(uid);
          await save();
        }
        if (!remote.keep && taken.length) await client.messageDelete(taken.join(','), { uid: true });
      } finally {
        lock.release();
      }
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
}

async function fetchPop3(run: Run): Promise<void> {
  const { o, remote, account, password, state, counts, save } = run;
  const client = new Pop3Client({
    host: remote.host,
    port: remote.port,
    tls: remote.tls,
    insecure: remote.insecure,
    maxBytes: o.maxMessageSize + 1024 * 1024,
  });
  try {
    await client.connect(remote.user, password);
    const list = await client.uidl();
    const seen = new Set(state.pop3 ?? []);
    for (const { n, uid } of list) {
      if (seen.has(uid)) {
        if (!remote.keep) await client.dele(n);
        continue;
      }
      const raw = await client.retr(n);
      const outcome = await deliverFetched(o, remote, account, raw, `fetch:${remote.id}:pop3:${uid}`);
      if (outcome === 'later') break;
      if (outcome === 'stored') counts.fetched++;
      else counts.skipped++;
      seen.add(uid);
      // Only what is still at the server is remembered, so the list stays as long as the mailbox.
      const present = new Set(list.map((x) => x.uid));
      state.pop3 = [...seen].filter((u) => present.has(u));
      await save();
      if (!remote.keep) await client.dele(n);
    }
    await client.quit();
  } finally {
    client.close();
  }
}

/** How long a remote account waits before its next fetch: its interval, doubled per failure up to a day. */
export function fetchDueAt(r: RemoteAccount): number {
  const wait = Math.min(r.everySeconds * 2 ** Math.min(r.errors, 16), 86_400) * 1000;
  return Math.max(r.lastFetchAt?.getTime() ?? 0, r.lastErrorAt?.getTime() ?? 0) + wait;
}
