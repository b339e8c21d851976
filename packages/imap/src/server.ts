/**
 * The IMAP service: imap-core's protocol engine with hooks written over the
 * MailStore. Every hook works on the signed-in account only: mailboxes are
 * looked up by (account, name), and a selected mailbox id is only ever one
 * this session opened, so no name or id reaches another user's data.
 */
import { AuthThrottle, checkLogin } from '@mailwerk/auth';
import type { Bus } from '@mailwerk/bus';
import { ConnectionLimiter } from '@mailwerk/limits';
import { parseMessage } from '@mailwerk/mime';
import {
  contentId,
  hasFlag,
  isSameOrChild,
  isStoreError,
  type Mailbox,
  type MailStore,
  type Message,
  normalizeAddress,
  normalizeFlags,
  normalizeMailboxName,
} from '@mailwerk/store';
import {
  type CoreLogger,
  type CoreServer,
  createCoreServer,
  type FetchOptions,
  type FetchQueryItem,
  type ImapHooks,
  type ImapSession,
  type Outcome,
  setProtocolErrorSink,
} from './core.ts';
import {
  bodyStructureValue,
  envelopeValue,
  type ImapValue,
  parseSection,
  partial,
  sectionBytes,
} from './fetch-data.ts';
import { StoreNotifier } from './notifier.ts';
import { matches } from './search.ts';

export interface ImapOptions {
  store: MailStore;
  bus: Bus;
  hostname: string;
  tls: { key: string; cert: string };
  /** Allow LOGIN and AUTHENTICATE before TLS (loopback tests only). */
  allowPlaintext: boolean;
  /** APPENDLIMIT: the largest message APPEND takes. */
  maxMessageSize: number;
  throttle?: AuthThrottle;
  /** Also poll the change journal this often, for writers in other processes (0: the bus is enough). */
  pollMs?: number;
  idleTimeoutMs?: number;
  logger?: CoreLogger | false;
  onError?: (err: unknown, context: string) => void;
  /** Most simultaneous connections, and from one client address (defaults 1000 and 20). */
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** A client's protocol mistakes (bad arguments, unknown commands), worth an info line, not an error. */
  onProtocolError?: (message: string, fields: Record<string, unknown>) => void;
}

/** Strings that are safe as IMAP quoted strings stay strings; anything else goes as a literal of its UTF-8 bytes. */
function wire(v: ImapValue): unknown {
  if (Array.isArray(v)) return v.map(wire);
  if (typeof v === 'string' && (v.length > 1024 || !/^[\x20-\x7e]*$/.test(v)))
    return { type: 'LITERAL', value: Buffer.from(v, 'utf8') };
  return v;
}

/** The store's spelling of a mailbox name, or null when it is not a valid one. */
function validName(path: string): string | null {
  try {
    return normalizeMailboxName(path);
  } catch {
    return null;
  }
}

const folder = (m: Mailbox) => ({ path: m.name, ...(m.specialUse ? { specialUse: m.specialUse } : {}) });

/**
 * Waits until the client has taken what was written; false when the
 * connection went away first (a FETCH of many messages then stops, instead
 * of waiting for ever on a socket that will not drain).
 */
function drained(stream: NodeJS.WritableStream, session: ImapSession): Promise<boolean> {
  const socket = session.socket;
  if (!socket || socket.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      stream.removeListener('drain', onDrain);
      socket.removeListener('close', onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    stream.once('drain', onDrain);
    socket.once('close', onClose);
  });
}

const readOnly = (session: ImapSession): boolean => (session.selected ? session.selected.readOnly : false);

const codeOf = (err: unknown): string | null => {
  if (isStoreError(err, 'not_found')) return 'NONEXISTENT';
  if (isStoreError(err, 'exists')) return 'ALREADYEXISTS';
  if (isStoreError(err, 'over_quota')) return 'OVERQUOTA';
  if (isStoreError(err, 'invalid') || isStoreError(err, 'conflict')) return 'CANNOT';
  return null;
};

/** Runs a store operation; a StoreError becomes the matching IMAP response code. */
async function outcome(run: () => Promise<unknown>): Promise<Outcome> {
  try {
    await run();
    return true;
  } catch (err) {
    const code = codeOf(err);
    if (code) return code;
    throw err;
  }
}

export class ImapService {
  readonly notifier: StoreNotifier;
  private readonly throttle: AuthThrottle;
  private readonly opts: ImapOptions;
  private readonly store: MailStore;
  private readonly servers = new Set<CoreServer>();
  private readonly limiter: ConnectionLimiter;
  /** Sessions holding a place in the limiter. */
  private readonly open = new Set<ImapSession>();

  constructor(options: ImapOptions) {
    this.opts = options;
    this.store = options.store;
    this.throttle = options.throttle ?? new AuthThrottle();
    this.notifier = new StoreNotifier(options.store, options.bus, options.pollMs ?? 0);
    this.limiter = new ConnectionLimiter(options.maxConnections ?? 1000, options.maxConnectionsPerIp ?? 20);
    if (options.onProtocolError) setProtocolErrorSink(options.onProtocolError);
  }

  /** A server for one port: `secure` for implicit TLS (993), otherwise STARTTLS (143). */
  server(secure: boolean): CoreServer {
    const s = createCoreServer(
      {
        secure,
        key: this.opts.tls.key,
        cert: this.opts.tls.cert,
        allowPlaintext: this.opts.allowPlaintext,
        hostname: this.opts.hostname,
        maxMessage: this.opts.maxMessageSize,
        ...(this.opts.idleTimeoutMs ? { idleTimeoutMs: this.opts.idleTimeoutMs } : {}),
        logger: this.opts.logger ?? false,
      },
      this.hooks(),
      this.notifier,
    );
    s.on('error', (err) => this.opts.onError?.(err, 'imap'));
    this.servers.add(s);
    return s;
  }

  async close(): Promise<void> {
    this.notifier.close();
    await Promise.all([...this.servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private account(session: ImapSession): string {
    const id = session.user?.id;
    if (!id) throw new Error('not signed in');
    return id;
  }

  private async mailbox(session: ImapSession, path: string): Promise<Mailbox | null> {
    const name = validName(path);
    return name === null ? null : this.store.getMailbox(this.account(session), name);
  }

  /** The selected mailbox, checked to belong to the session's account. */
  private async selected(session: ImapSession, id: string): Promise<Mailbox> {
    const mb = await this.store.getMailboxById(id);
    if (!mb || mb.accountId !== this.account(session)) throw new Error('selected mailbox is gone');
    return mb;
  }

  private async messages(mailboxId: string, uids: number[]): Promise<Message[]> {
    if (uids.length === 0) return [];
    let lo = uids[0]!;
    let hi = lo;
    for (const u of uids) {
      if (u < lo) lo = u;
      if (u > hi) hi = u;
    }
    const wanted = new Set(uids);
    const list = await this.store.listMessages(mailboxId, { uidFrom: lo, uidTo: hi });
    return list.length === wanted.size ? list : list.filter((m) => wanted.has(m.uid));
  }

  private publish(event: Parameters<Bus['publish']>[0]): void {
    this.opts.bus.publish(event).catch((err) => this.opts.onError?.(err, 'bus'));
  }

  private hooks(): ImapHooks {
    const store = this.store;
    return {
      connect: (session) => {
        const refused = this.limiter.admit(session.remoteAddress);
        if (refused === 'total') throw new Error('Too many connections; try again later');
        if (refused) throw new Error('Too many connections from your address; close some and try again');
        this.open.add(session);
      },

      auth: async (req, session) => {
        const v = await checkLogin({
          throttle: this.throttle,
          ip: session.remoteAddress,
          user: req.username,
          password: req.password,
          find: (u) => store.getAccountByAddress(normalizeAddress(u)),
          rehash: async (a, passwordHash) => void (await store.updateAccount(a.id, { passwordHash })),
        });
        if (v.ok) return { user: { id: v.account.id, username: v.account.address } };
        if (v.reason === 'blocked')
          throw Object.assign(new Error('throttled'), {
            response: 'NO',
            code: 'UNAVAILABLE',
            message: 'Too many failed logins from your address; try again later',
          });
        return null;
      },

      list: async (session) => (await store.listMailboxes(this.account(session))).map(folder),

      lsub: async (session) =>
        (await store.listMailboxes(this.account(session))).filter((m) => m.subscribed).map(folder),

      create: async (path, session) => {
        const accountId = this.account(session);
        const name = validName(path);
        if (name === null) return 'CANNOT';
        if (await store.getMailbox(accountId, name)) return 'ALREADYEXISTS';
        return outcome(async () => {
          const mb = await store.createMailbox(accountId, name, { subscribed: true });
          this.publish({ type: 'mailbox.change', accountId, mailboxId: mb.id });
        });
      },

      rename: async (from, to, session) => {
        const accountId = this.account(session);
        const source = await this.mailbox(session, from);
        if (!source) return 'NONEXISTENT';
        const target = validName(to);
        if (target === null) return 'CANNOT';
        if (await store.getMailbox(accountId, target)) return 'ALREADYEXISTS';
        if (isSameOrChild(target, source.name)) return 'CANNOT';
        if (source.name === 'INBOX') {
          // RFC 3501 §6.3.5: renaming INBOX moves its messages to the new name and leaves INBOX empty.
          return outcome(async () => {
            const dest = await store.createMailbox(accountId, target, { subscribed: true });
            const uids = (await store.listMessages(source.id)).map((m) => m.uid);
            if (uids.length) await store.moveMessages(source.id, uids, dest.id);
            this.publish({ type: 'mailbox.change', accountId, mailboxId: dest.id });
            if (uids.length)
              this.publish({ type: 'message.expunge', accountId, mailboxId: source.id, uids, modseq: 0 });
          });
        }
        return outcome(async () => {
          await store.renameMailbox(accountId, source.name, target);
          this.publish({ type: 'mailbox.change', accountId, mailboxId: source.id });
        });
      },

      delete: async (path, session) => {
        const accountId = this.account(session);
        const mb = await this.mailbox(session, path);
        if (!mb) return 'NONEXISTENT';
        if (mb.name === 'INBOX') return 'CANNOT';
        return outcome(async () => {
          await store.deleteMailbox(accountId, mb.name);
          this.publish({ type: 'mailbox.change', accountId, mailboxId: mb.id });
        });
      },

      subscribe: async (path, session, on) => {
        const mb = await this.mailbox(session, path);
        if (!mb) return 'NONEXISTENT';
        return outcome(() => store.setSubscribed(mb.id, on));
      },

      open: async (path, session) => {
        const mb = await this.mailbox(session, path);
        if (!mb) return 'NONEXISTENT';
        // The UID list and the modseq must describe the same moment: a change in between would be announced twice.
        let current = mb;
        for (let attempt = 0; ; attempt++) {
          const uidList = await store.listUids(current.id);
          const after = await store.getMailboxById(current.id);
          if (!after) return 'NONEXISTENT';
          if (after.highestModseq === current.highestModseq || attempt >= 3)
            return {
              _id: current.id,
              uidValidity: current.uidValidity,
              uidNext: after.uidNext,
              modifyIndex: current.highestModseq,
              uidList,
            };
          current = after;
        }
      },

      status: async (path, session) => {
        const mb = await this.mailbox(session, path);
        if (!mb) return 'NONEXISTENT';
        const s = await store.mailboxStatus(mb.id);
        return {
          messages: s.messages,
          uidNext: s.uidNext,
          uidValidity: s.uidValidity,
          unseen: s.unseen,
          highestModseq: s.highestModseq,
        };
      },

      append: async (path, flags, date, raw, session) => {
        const accountId = this.account(session);
        const mb = await this.mailbox(session, path);
        if (!mb) return ['TRYCREATE'];
        let normalized: string[];
        try {
          normalized = normalizeFlags(flags.filter((f) => f.toLowerCase() !== '\\recent'));
        } catch {
          return ['CANNOT'];
        }
        try {
          const m = await store.appendMessage({
            accountId,
            mailboxId: mb.id,
            blobId: contentId(raw),
            data: raw,
            size: raw.length,
            structure: parseMessage(raw),
            flags: normalized,
            ...(date && !Number.isNaN(date.getTime()) ? { internalDate: date } : {}),
          });
          this.publish({ type: 'message.new', accountId, mailboxId: mb.id, uid: m.uid, modseq: m.modseq });
          return [true, { uidValidity: mb.uidValidity, uid: m.uid }];
        } catch (err) {
          const code = codeOf(err);
          if (code) return [code];
          throw err;
        }
      },

      fetch: (mailboxId, options, session) => this.fetch(mailboxId, options, session),

      store: async (mailboxId, options, session) => {
        const accountId = this.account(session);
        if (readOnly(session)) return ['READ-ONLY', []];
        const mb = await this.selected(session, mailboxId);
        let result: Awaited<ReturnType<MailStore['updateFlags']>>;
        try {
          result = await store.updateFlags(mb.id, options.messages, {
            op: options.action,
            flags: options.value.filter((f) => f.toLowerCase() !== '\\recent'),
            ...(options.unchangedSince ? { unchangedSince: options.unchangedSince } : {}),
          });
        } catch (err) {
          const code = codeOf(err);
          if (code) return [code, []];
          throw err;
        }
        const condstore = session.selected ? session.selected.condstoreEnabled : false;
        for (const m of result.updated) {
          if (!options.silent || condstore)
            session.writeStream.write(
              session.formatResponse('FETCH', m.uid, {
                uid: options.isUid ? m.uid : false,
                flags: options.silent ? false : m.flags,
                modseq: condstore ? m.modseq : false,
              }),
            );
        }
        if (result.updated.length) {
          this.notifier.markOwn(
            mb.id,
            result.updated.map((m) => m.modseq),
            session,
          );
          this.publish({
            type: 'message.flags',
            accountId,
            mailboxId: mb.id,
            uids: result.updated.map((m) => m.uid),
            modseq: Math.max(...result.updated.map((m) => m.modseq)),
          });
        }
        return [true, result.modified];
      },

      expunge: async (mailboxId, options, session) => {
        const accountId = this.account(session);
        if (readOnly(session)) return 'READ-ONLY';
        const mb = await this.selected(session, mailboxId);
        const candidates = options.isUid
          ? await this.messages(mb.id, options.messages ?? [])
          : await store.listMessages(mb.id);
        const uids = candidates.filter((m) => hasFlag(m.flags, '\\Deleted')).map((m) => m.uid);
        if (uids.length === 0) return true;
        const removed = await store.expungeMessages(mb.id, uids);
        if (!options.silent)
          for (const uid of removed) session.writeStream.write(session.formatResponse('EXPUNGE', uid));
        if (removed.length)
          this.publish({ type: 'message.expunge', accountId, mailboxId: mb.id, uids: removed, modseq: 0 });
        return true;
      },

      copy: async (mailboxId, options, session, move) => {
        const accountId = this.account(session);
        if (move && readOnly(session)) return ['READ-ONLY'];
        const source = await this.selected(session, mailboxId);
        const dest = await this.mailbox(session, options.destination);
        if (!dest) return ['TRYCREATE'];
        const present = (await this.messages(source.id, options.messages)).map((m) => m.uid);
        if (present.length === 0)
          return [true, { uidValidity: dest.uidValidity, sourceUid: [], destinationUid: [] }];
        let result: Awaited<ReturnType<MailStore['copyMessages']>>;
        try {
          result = move
            ? await store.moveMessages(source.id, present, dest.id)
            : await store.copyMessages(source.id, present, dest.id);
        } catch (err) {
          const code = codeOf(err);
          if (code) return [code];
          throw err;
        }
        const sourceUid = result.uids.map(([s]) => s);
        const destinationUid = result.uids.map(([, d]) => d);
        if (move) {
          for (const uid of sourceUid) session.writeStream.write(session.formatResponse('EXPUNGE', uid));
          this.publish({
            type: 'message.expunge',
            accountId,
            mailboxId: source.id,
            uids: sourceUid,
            modseq: 0,
          });
        }
        this.publish({
          type: 'message.new',
          accountId,
          mailboxId: dest.id,
          uid: destinationUid[destinationUid.length - 1] ?? 0,
          modseq: 0,
        });
        return [true, { uidValidity: result.uidValidity, sourceUid, destinationUid }];
      },

      search: async (mailboxId, options, session) => {
        const mb = await this.selected(session, mailboxId);
        const out: number[] = [];
        for (const message of await store.listMessages(mb.id)) {
          let raw: Promise<Buffer> | null = null;
          const subject = { message, raw: () => (raw ??= store.blobs.get(message.blobId)) };
          if (await matches(subject, options.query)) out.push(message.uid);
        }
        return out;
      },

      quotaRoot: async (_path, session) => this.quota(session),
      quota: async (root, session) => (root === '' ? this.quota(session) : 'NONEXISTENT'),

      close: (session) => {
        this.notifier.removeListener(session);
        if (this.open.delete(session)) this.limiter.release(session.remoteAddress);
      },
    };
  }

  private async quota(session: ImapSession) {
    const account = await this.store.getAccount(this.account(session));
    if (!account) return 'NONEXISTENT';
    // imap-core always reports a STORAGE limit; an account without one gets the largest it can express.
    return { root: '', quota: account.quotaBytes ?? 2 ** 50, storageUsed: account.usedBytes };
  }

  private async fetch(mailboxId: string, options: FetchOptions, session: ImapSession): Promise<Outcome> {
    const mb = await this.selected(session, mailboxId);
    let list = await this.messages(mb.id, options.messages);
    if (options.changedSince) list = list.filter((m) => m.modseq > options.changedSince);
    if (options.markAsSeen) {
      const unseen = list.filter((m) => !hasFlag(m.flags, '\\Seen')).map((m) => m.uid);
      if (unseen.length) {
        const r = await this.store.updateFlags(mb.id, unseen, { op: 'add', flags: ['\\Seen'] });
        const byUid = new Map(r.updated.map((m) => [m.uid, m]));
        list = list.map((m) => byUid.get(m.uid) ?? m);
        if (r.updated.length) {
          this.notifier.markOwn(
            mb.id,
            r.updated.map((m) => m.modseq),
            session,
          );
          this.publish({
            type: 'message.flags',
            accountId: mb.accountId,
            mailboxId: mb.id,
            uids: r.updated.map((m) => m.uid),
            modseq: Math.max(...r.updated.map((m) => m.modseq)),
          });
        }
      }
    }
    const needsBytes = !options.metadataOnly;
    const stream = session.writeStream as unknown as NodeJS.WritableStream & {
      write(chunk: unknown): boolean;
    };
    for (const m of list) {
      const raw = needsBytes ? await this.store.blobs.get(m.blobId) : null;
      const values = options.query.map((item) => this.value(item, m, raw));
      const response = session.formatResponse('FETCH', m.uid, { query: options.query, values }) as
        | {
            attributes: unknown[][];
          }
        | false;
      if (!response) continue;
      // The label of a partial answer carries only its origin: BODY[]<0>, not BODY[]<0.100> (RFC 3501 §7.4.2).
      const attrs = response.attributes[1]!;
      for (let i = 0; i < attrs.length; i += 2) {
        const label = attrs[i] as { partial?: number[] };
        if (label?.partial && label.partial.length > 1) attrs[i] = { ...label, partial: [label.partial[0]] };
      }
      if (!stream.write(response) && !(await drained(stream, session))) return true;
    }
    return true;
  }

  private value(item: FetchQueryItem, m: Message, raw: Buffer | null): unknown {
    const root = m.structure.root;
    switch (item.item) {
      case 'uid':
        return m.uid;
      case 'modseq':
        return m.modseq;
      case 'flags':
        return m.flags;
      case 'internaldate':
        return m.internalDate;
      case 'rfc822.size':
        return m.size;
      case 'envelope':
        return wire(envelopeValue(root.envelope));
      case 'bodystructure':
        return wire(bodyStructureValue(root, true));
      case 'body':
        if (!item.isLiteral) return wire(bodyStructureValue(root, false));
        return this.section(item, raw!, m);
      case 'rfc822':
        return raw!;
      case 'rfc822.header':
        return raw!.subarray(root.start, root.bodyStart);
      case 'rfc822.text':
        return raw!.subarray(root.bodyStart, root.end);
      default:
        return null;
    }
  }

  private section(item: FetchQueryItem, raw: Buffer, m: Message): Buffer {
    const kind = item.type && item.type !== 'content' ? item.type.toUpperCase() : '';
    const spec =
      [item.path, kind].filter(Boolean).join('.') + (item.headers ? ` (${item.headers.join(' ')})` : '');
    const bytes = sectionBytes(raw, m.structure.root, parseSection(spec)) ?? Buffer.alloc(0);
    return item.partial ? partial(bytes, item.partial.startFrom, item.partial.maxLength || undefined) : bytes;
  }
}
