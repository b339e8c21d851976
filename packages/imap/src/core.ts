/**
 * WildDuck's imap-core, wrapped once: the protocol engine (parser, command
 * state machine, IDLE, COMPRESS, STARTTLS, response compiler) with its
 * callback hooks typed here and driven by async functions. The hooks never
 * see a database driver; they are written over the MailStore (server.ts).
 *
 * The shapes below are the contracts imap-core's commands rely on (read
 * from its lib/commands/*.js), narrowed to what we use.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { decodeMutf7 } from './mutf7.ts';

const require = createRequire(import.meta.url);

type Callback = (err: Error | null, ...results: unknown[]) => void;

/** A node of imap-core's response tree (its compiler's input). */
export type ResponseNode = unknown;

export interface ImapUser {
  id: string;
  username: string;
}

export interface SelectedState {
  mailbox: string;
  uidList: number[];
  modifyIndex: number;
  readOnly: boolean;
  condstoreEnabled: boolean;
  notifications: unknown[];
  path: string;
}

export interface ImapSession {
  id: string;
  remoteAddress: string;
  user?: ImapUser;
  selected: SelectedState | false;
  writeStream: { write(chunk: ResponseNode | false): boolean };
  /** The client's socket (TLS or plain); replaced by imap-core after STARTTLS. */
  socket?: Socket;
  formatResponse(command: 'FETCH' | 'EXPUNGE' | 'EXISTS', uid: number, data?: unknown): ResponseNode | false;
  isUTF8Enabled?: () => boolean;
}

export interface AuthRequest {
  method: 'LOGIN' | 'PLAIN';
  username: string;
  password: string;
  connection: { secure: boolean; remoteAddress: string };
}

/** One item of a FETCH query, as imap-core's fetch command builds it. */
export interface FetchQueryItem {
  item: string;
  original: { type: string; value: string; section?: unknown[]; partial?: number[] };
  path?: string;
  type?: string;
  headers?: string[];
  partial?: { startFrom: number; maxLength: number };
  isLiteral?: boolean;
}

export interface FetchOptions {
  messages: number[];
  query: FetchQueryItem[];
  markAsSeen: boolean;
  metadataOnly: boolean;
  changedSince: number;
  isUid: boolean;
}

export interface StoreOptions {
  messages: number[];
  action: 'set' | 'add' | 'remove';
  value: string[];
  silent: boolean;
  unchangedSince: number;
  isUid: boolean;
}

export type SearchTerm =
  | SearchTerm[]
  | { key: 'all' | 'charset' }
  | { key: 'flag'; value: string; exists: boolean }
  | { key: 'internaldate' | 'date'; operator: '<' | '=' | '>='; value: string }
  | { key: 'body' | 'text'; value: string }
  | { key: 'uid'; value: number[] }
  | { key: 'size'; operator: '<' | '=' | '>'; value: number }
  | { key: 'header'; header: string; value: string }
  | { key: 'modseq'; value: number }
  | { key: 'or'; value: SearchTerm[] }
  | { key: 'not'; value: SearchTerm };

export interface Folder {
  path: string;
  specialUse?: string;
}

export interface OpenResult {
  _id: string;
  uidValidity: number;
  uidNext: number;
  modifyIndex: number;
  uidList: number[];
  flags?: string[];
}

export interface StatusResult {
  messages: number;
  uidNext: number;
  uidValidity: number;
  unseen: number;
  highestModseq: number;
}

export interface QuotaResult {
  root: string;
  quota: number;
  storageUsed: number;
}

/** A hook's answer: true for OK, a response code (NONEXISTENT, TRYCREATE …) for NO. */
export type Outcome = true | string;

export interface CopyInfo {
  uidValidity: number;
  sourceUid: number[];
  destinationUid: number[];
}

/** The storage side of the server, as async functions. */
export interface ImapHooks {
  /** A new connection; throws (with the text for `* BYE`) to turn it away. */
  connect(session: ImapSession): void;
  auth(req: AuthRequest, session: ImapSession): Promise<{ user: ImapUser } | null>;
  list(session: ImapSession): Promise<Folder[]>;
  lsub(session: ImapSession): Promise<Folder[]>;
  create(path: string, session: ImapSession): Promise<Outcome>;
  rename(from: string, to: string, session: ImapSession): Promise<Outcome>;
  delete(path: string, session: ImapSession): Promise<Outcome>;
  subscribe(path: string, session: ImapSession, on: boolean): Promise<Outcome>;
  open(path: string, session: ImapSession): Promise<OpenResult | string>;
  status(path: string, session: ImapSession): Promise<StatusResult | string>;
  append(
    path: string,
    flags: string[],
    date: Date | null,
    raw: Buffer,
    session: ImapSession,
  ): Promise<[Outcome, { uidValidity: number; uid: number }?]>;
  fetch(mailbox: string, options: FetchOptions, session: ImapSession): Promise<Outcome>;
  store(mailbox: string, options: StoreOptions, session: ImapSession): Promise<[Outcome, number[]]>;
  expunge(
    mailbox: string,
    options: { isUid: boolean; messages?: number[]; silent?: boolean },
    session: ImapSession,
  ): Promise<Outcome>;
  copy(
    mailbox: string,
    options: { destination: string; messages: number[] },
    session: ImapSession,
    move: boolean,
  ): Promise<[Outcome, CopyInfo?]>;
  search(
    mailbox: string,
    options: { query: SearchTerm[]; isUid: boolean },
    session: ImapSession,
  ): Promise<number[]>;
  quotaRoot(path: string, session: ImapSession): Promise<QuotaResult | string>;
  quota(root: string, session: ImapSession): Promise<QuotaResult | string>;
  close(session: ImapSession): void;
}

/** imap-core's notifier contract (used by the connection for IDLE and unsolicited responses). */
export interface Notifier {
  addListener(session: ImapSession, handler: (message?: unknown) => void): void;
  removeListener(session: ImapSession, handler: (message?: unknown) => void): void;
  getUpdates(
    mailbox: string,
    modifyIndex: number,
    callback: (err: Error | null, updates?: Array<Record<string, unknown>>) => void,
  ): void;
}

export interface CoreOptions {
  secure: boolean;
  needsUpgrade?: boolean;
  key: string;
  cert: string;
  /** Allow LOGIN/AUTHENTICATE before TLS (imap-core's ignoreSTARTTLS: STARTTLS stays offered). */
  allowPlaintext: boolean;
  hostname: string;
  maxMessage: number;
  idleTimeoutMs?: number;
  socketTimeoutMs?: number;
  logger: CoreLogger | false;
}

export interface CoreLogger {
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface CoreServer {
  server: import('node:net').Server;
  connections: Set<{ session: ImapSession; close(): void; _socket: Socket }>;
  notifier: Notifier;
  listen(port: number, host: string, cb: () => void): void;
  close(cb: () => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  once(event: 'error', listener: (err: Error) => void): void;
  removeListener(event: 'error', listener: (err: Error) => void): void;
  [hook: string]: unknown;
}

interface CoreModule {
  IMAPServer: new (options: Record<string, unknown>) => CoreServer;
}

// WildDuck's modules read their own config (wild-config) from the working directory and the command
// line when loaded; Mailwerk's configuration is ours, so that is switched off before the first require.
process.env.DISABLE_WILD_CONFIG = 'true';

/**
 * Mailbox names arrive in modified UTF-7, which imap-core decodes leniently
 * (iconv-lite), so `&Jjo` or `&AGE-` would name a mailbox. Its helpers are
 * replaced, before its command modules take references to them, by our strict
 * decoder; a name that is not valid comes out as one the store refuses (it
 * starts with a NUL), so the command fails with NONEXISTENT or CANNOT.
 */
const INVALID = '\u0000invalid mailbox name';
const tools = require('wildduck/imap-core/lib/imap-tools.js') as {
  normalizeMailbox(mailbox: string, utf7Encoded?: boolean): string;
  utf7decode(s: string): string;
};
const strictDecode = (s: string): string => {
  try {
    return decodeMutf7(s);
  } catch {
    return INVALID;
  }
};
tools.utf7decode = strictDecode;
tools.normalizeMailbox = (mailbox: string, utf7Encoded?: boolean): string => {
  if (!mailbox) return '';
  const parts = mailbox.replace(/^\/|\/$/g, '').split('/');
  if (parts[0]!.toUpperCase() === 'INBOX') parts[0] = 'INBOX';
  const out = (utf7Encoded ? parts.map(strictDecode) : parts).join('/');
  // With UTF8=ACCEPT the name is UTF-8; bytes that were not decode to U+FFFD.
  return out.includes(INVALID) || out.includes('\ufffd') ? INVALID : out;
};
/**
 * imap-core bounds literals but not command lines: a client could send one
 * endless line and the parser would keep it all. Lines are bounded here, as
 * Dovecot's imap_max_line_length (64 KiB): past that, `* BYE` and the
 * connection closes. Literal data (after the server's "+") is not a line.
 */
const MAX_LINE = 64 * 1024;
const streamProto = (
  require('wildduck/imap-core/lib/imap-stream.js') as {
    IMAPStream: { prototype: Record<string, unknown> };
  }
).IMAPStream.prototype as {
  _write(chunk: Buffer, encoding: string, done: () => void): void;
  _remainder: string;
  _expecting: number;
  _owner?: { send(line: string): void; close(): void };
};
const write = streamProto._write;
streamProto._write = function boundedWrite(chunk, encoding, done) {
  if (!(this._expecting > 0) && chunk?.length) {
    const nl = chunk.lastIndexOf(0x0a);
    const open = nl === -1 ? this._remainder.length + chunk.length : chunk.length - nl - 1;
    if (open > MAX_LINE && this._owner) {
      this._remainder = '';
      this._owner.send('* BYE Line too long');
      this._owner.close();
      return done();
    }
  }
  return write.call(this, chunk, encoding, done);
};
/**
 * RFC 3501 §6.3.5 allows RENAME INBOX (its messages move to the new mailbox,
 * INBOX stays, empty); imap-core refuses it outright. The command is routed to
 * our rename hook, which implements those semantics; every other RENAME goes
 * through imap-core's own handler untouched.
 */
type Reply = { response: string; code?: string | false; message?: string };
const renameCommand = require('wildduck/imap-core/lib/commands/rename.js') as {
  handler(
    this: RenameConnection,
    command: { attributes: Array<{ value?: unknown }> },
    cb: (e: null, r: Reply) => void,
  ): void;
};
interface RenameConnection {
  acceptUTF8Enabled?: boolean;
  session: ImapSession;
  _server: { onRename(from: string, to: string, session: ImapSession, cb: Callback): void };
}
const renameHandler = renameCommand.handler;
renameCommand.handler = function renameWithInbox(command, callback) {
  const arg = (i: number) =>
    tools.normalizeMailbox(
      Buffer.from(String(command.attributes[i]?.value ?? ''), 'binary').toString(),
      !this.acceptUTF8Enabled,
    );
  if (arg(0) !== 'INBOX') return renameHandler.call(this, command, callback);
  const target = arg(1);
  if (!target || target === 'INBOX' || target === INVALID)
    return callback(null, { response: 'NO', code: 'CANNOT', message: 'Invalid new name' });
  this._server.onRename('INBOX', target, this.session, (err, success) => {
    if (err) return callback(null, { response: 'NO', code: 'TEMPFAIL' });
    callback(null, {
      response: success === true ? 'OK' : 'NO',
      code: typeof success === 'string' ? success : false,
      message: success === true ? 'INBOX renamed: its messages moved, INBOX is empty' : 'RENAME failed',
    });
  });
};
// Each connection's parser learns its connection, for the line bound above.
const connectionProto = (
  require('wildduck/imap-core/lib/imap-connection.js') as {
    IMAPConnection: { prototype: { init(): void; _parser?: { _owner?: unknown } } };
  }
).IMAPConnection.prototype;
const init = connectionProto.init;
connectionProto.init = function initWithLineBound() {
  if (this._parser) this._parser._owner = this;
  return init.call(this);
};
const core = require('wildduck/imap-core') as CoreModule;

/** Where imap-core reports a client's protocol errors (it prints them to stderr otherwise). */
export type ProtocolErrorSink = (message: string, fields: Record<string, unknown>) => void;
let protocolErrorSink: ProtocolErrorSink = () => undefined;
(
  require('wildduck/lib/errors.js') as {
    setGelf(h: { emit(channel: string, m: Record<string, unknown>): void }): void;
  }
).setGelf({
  emit: (_channel, m) => {
    const { short_message: message, full_message: _stack, ...fields } = m;
    protocolErrorSink(String(message ?? ''), fields);
  },
});
export const setProtocolErrorSink = (sink: ProtocolErrorSink): void => {
  protocolErrorSink = sink;
};

/** Runs an async hook and hands its result (or array of results) to imap-core's callback. */
function bridge(run: () => Promise<unknown>, cb: Callback, spread = false): void {
  run().then(
    (result) => (spread && Array.isArray(result) ? cb(null, ...result) : cb(null, result)),
    (err: Error) => cb(err),
  );
}

export function createCoreServer(options: CoreOptions, hooks: ImapHooks, notifier: Notifier): CoreServer {
  const server = new core.IMAPServer({
    secure: options.secure,
    needsUpgrade: options.needsUpgrade ?? false,
    key: options.key,
    cert: options.cert,
    ignoreSTARTTLS: options.allowPlaintext,
    disableSTARTTLS: false,
    name: options.hostname,
    id: { name: 'Mailwerk', vendor: 'Mailwerk' },
    maxMessage: options.maxMessage,
    enableCompression: true,
    idleTimeout: options.idleTimeoutMs ?? 30 * 60_000,
    socketTimeout: options.socketTimeoutMs ?? 30 * 60_000,
    logger: options.logger,
    skipFetchLog: true,
    // imap-core's default LOGOUT texts are jokes; an admin reading a log wants the plain one.
    logoutMessages: ['Logged out'],
    // One certificate for every name: without a callback imap-core's implicit-TLS handshake calls an
    // undefined SNICallback and drops every client that sends SNI (Thunderbird, mbsync, mutt).
    SNICallback: (_servername: string, cb: (err: Error | null, ctx?: unknown) => void) => cb(null),
  });
  server.notifier = notifier;
  server.onConnect = (session: ImapSession, cb: (err?: Error) => void) => {
    try {
      hooks.connect(session);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  };
  server.onAuth = (req: AuthRequest, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.auth(req, session), cb);
  server.onList = (_query: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.list(session), cb);
  server.onLsub = (_query: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.lsub(session), cb);
  server.onCreate = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.create(path, session), cb);
  server.onRename = (from: string, to: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.rename(from, to, session), cb);
  server.onDelete = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.delete(path, session), cb);
  server.onSubscribe = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.subscribe(path, session, true), cb);
  server.onUnsubscribe = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.subscribe(path, session, false), cb);
  server.onOpen = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.open(path, session), cb);
  server.onStatus = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.status(path, session), cb);
  server.onAppend = (
    path: string,
    flags: string[],
    date: string | Date | null,
    raw: Buffer,
    session: ImapSession,
    cb: Callback,
  ) => bridge(() => hooks.append(path, flags, date ? new Date(date) : null, raw, session), cb, true);
  server.onFetch = (mailbox: string, options: FetchOptions, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.fetch(mailbox, options, session), cb);
  server.onStore = (mailbox: string, options: StoreOptions, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.store(mailbox, options, session), cb, true);
  server.onExpunge = (
    mailbox: string,
    options: { isUid: boolean; messages?: number[]; silent?: boolean },
    session: ImapSession,
    cb: Callback,
  ) => bridge(() => hooks.expunge(mailbox, options, session), cb);
  server.onCopy = (
    _conn: unknown,
    mailbox: string,
    options: { destination: string; messages: number[] },
    session: ImapSession,
    cb: Callback,
  ) => bridge(() => hooks.copy(mailbox, options, session, false), cb, true);
  // Unlike onCopy, imap-core calls onMove without the connection.
  server.onMove = (
    mailbox: string,
    options: { destination: string; messages: number[] },
    session: ImapSession,
    cb: Callback,
  ) => bridge(() => hooks.copy(mailbox, options, session, true), cb, true);
  server.onSearch = (
    mailbox: string,
    options: { query: SearchTerm[]; isUid: boolean },
    session: ImapSession,
    cb: Callback,
  ) => bridge(async () => ({ uidList: await hooks.search(mailbox, options, session) }), cb);
  server.onGetQuotaRoot = (path: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.quotaRoot(path, session), cb);
  server.onGetQuota = (root: string, session: ImapSession, cb: Callback) =>
    bridge(() => hooks.quota(root, session), cb);
  server.onClose = (session: ImapSession, cb?: () => void) => {
    hooks.close(session);
    cb?.();
  };
  return server;
}
