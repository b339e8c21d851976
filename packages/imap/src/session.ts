/**
 * One IMAP connection: bytes in (framer → commands), commands run one at a
 * time from the command table, responses out with backpressure.
 *
 * Invariants:
 * - Nothing a client sends can throw past `execute`: a syntax error is a
 *   BAD, a refused operation a NO with a response code, our own failure a
 *   `NO [SERVERBUG]` with a log line carrying the session id; the session
 *   and the process go on (errors.ts is the one mapping).
 * - Commands run strictly in order; a pipelined command waits in `queue`,
 *   and reading from the socket pauses while the queue is long.
 * - After STARTTLS and COMPRESS nothing read before the switch is acted on.
 * - Output is buffered per command and written with backpressure; a client
 *   that does not read for `writeTimeoutMs` is disconnected, so no response
 *   is ever buffered without bound.
 * - Untagged EXPUNGE is sent only where RFC 3501 §7.4.1 allows it.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { createDeflateRaw, createInflateRaw, type DeflateRaw, constants as zlibConstants } from 'node:zlib';
import type { MailEvent } from '@mailwerk/bus';
import { PacedWriter } from '@mailwerk/tls';
import { fetchMessages } from './commands/fetch.ts';
import { COMMANDS } from './commands/index.ts';
import { ImapByeError, ImapSyntaxError, toResponse } from './errors.ts';
import type { NotifyState } from './notify-session.ts';
import { Cursor } from './protocol/cursor.ts';
import type { Chunk } from './protocol/encode.ts';
import { type Frame, FrameError, Framer, type LiteralRequest } from './protocol/framer.ts';
import type { Selected } from './selected.ts';
import type { ServiceContext } from './service.ts';

/** RFC 3501 §9 and Dovecot's imap_max_line_length: the text of one command. */
export const MAX_LINE = 64 * 1024;
/** Literals outside APPEND are short strings (names, search terms); before sign-in, a user name or password. */
const MAX_SMALL_LITERAL = 64 * 1024;
const MAX_LOGIN_LITERAL = 4 * 1024;
/** Commands waiting to run before reading pauses. */
const MAX_QUEUED = 32;
/** Output is written out once this much has been built. */
const FLUSH_AT = 64 * 1024;
/** Written but not yet taken by the client: past this, the command waits (so at most this is buffered). */
const MAX_PENDING = 1024 * 1024;

export type State =
  | { kind: 'not-authenticated' }
  | { kind: 'authenticated'; user: User }
  | { kind: 'selected'; user: User; mailbox: Selected }
  | { kind: 'logout' };

export interface User {
  id: string;
  address: string;
}

type QueueItem = Frame | { refusal: string };

export class Session {
  readonly id = randomBytes(6).toString('base64url');
  readonly ctx: ServiceContext;
  readonly remoteAddress: string;
  state: State = { kind: 'not-authenticated' };
  secure: boolean;
  private condstoreOn = false;
  /**
   * CONDSTORE (RFC 7162 §3.1), on from ENABLE or the first command that uses it. Turned on while a
   * mailbox is selected, it says the mailbox's HIGHESTMODSEQ at once (as Dovecot does; clients that
   * enable it by a FETCH MODSEQ then know where they stand).
   */
  get condstore(): boolean {
    return this.condstoreOn;
  }
  set condstore(on: boolean) {
    if (on && !this.condstoreOn && this.state.kind === 'selected')
      this.untagged(`OK [HIGHESTMODSEQ ${this.state.mailbox.modseq}] Highest`);
    this.condstoreOn = on;
  }
  /** QRESYNC (RFC 7162 §3.2): VANISHED instead of EXPUNGE, SELECT … (QRESYNC …); it implies CONDSTORE. */
  qresync = false;
  /** IMAP4rev2 (RFC 9051) ENABLEd: no \Recent, SEARCH answers with ESEARCH. */
  rev2 = false;
  utf8 = false;
  compressed = false;
  /** Failed sign-ins on this connection. */
  authFailures = 0;
  /** NOTIFY in force (RFC 5465), or null: none was given, updates come as RFC 3501 has them. */
  notify: NotifyState | null = null;

  private socket: Socket;
  /** Where commands are read from: the socket, or the inflater after COMPRESS. */
  private input: Duplex;
  private output: Writable;
  private deflate: DeflateRaw | null = null;
  private readonly framer: Framer;
  private readonly queue: QueueItem[] = [];
  private waiter: ((item: QueueItem | null) => void) | null = null;
  private out: Chunk[] = [];
  private outBytes = 0;
  private closed = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private unwatch: (() => void) | null = null;
  /** Set while IDLE waits for DONE: changes are sent as they come. */
  private idling = false;
  private syncing: Promise<void> | null = null;
  /** A command is running (IDLE included): NOTIFY's updates wait for its end (or go out in IDLE). */
  private busy = false;
  /** NOTIFY's updates being written between commands; the next command waits for them. */
  private pushing: Promise<void> | null = null;
  private pushAgain = false;
  private readonly onClose: () => void;

  constructor(
    ctx: ServiceContext,
    socket: Socket,
    secure: boolean,
    remoteAddress: string,
    onClose: () => void,
  ) {
    this.ctx = ctx;
    this.socket = socket;
    this.input = socket;
    this.output = new PacedWriter(socket, MAX_PENDING);
    this.secure = secure;
    this.remoteAddress = remoteAddress;
    this.onClose = onClose;
    this.framer = new Framer({
      maxLine: MAX_LINE,
      onLiteral: (r) => this.literalDecision(r),
      onContinue: () => this.writeNow('+ Ready for literal data\r\n'),
      onRefused: (response) => this.enqueue({ refusal: response }),
    });
    this.attach(socket);
    socket.once('close', () => this.close());
    this.touch();
  }

  // ---- input ---------------------------------------------------------------

  private attach(source: Duplex): void {
    this.input = source;
    source.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.touch();
    let frames: Frame[];
    try {
      frames = this.framer.push(chunk);
    } catch (err) {
      if (err instanceof FrameError) {
        this.bye(err.message);
        return;
      }
      throw err;
    }
    for (const f of frames) this.enqueue(f);
  }

  private enqueue(item: QueueItem): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(item);
      return;
    }
    this.queue.push(item);
    if (this.queue.length >= MAX_QUEUED) this.input.pause();
  }

  /** The next command (or line, for AUTHENTICATE and IDLE); null once the connection is gone. */
  nextFrame(): Promise<QueueItem | null> {
    if (this.closed) return Promise.resolve(null);
    const item = this.queue.shift();
    if (this.queue.length < MAX_QUEUED / 2 && this.input.isPaused()) this.input.resume();
    if (item) return Promise.resolve(item);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** A whole line sent in answer to a continuation request; null when the connection closed. */
  async readLine(): Promise<string | null> {
    const item = await this.nextFrame();
    if (!item) return null;
    if ('refusal' in item) return '';
    return item.parts.length === 1 ? (item.parts[0] as string) : '';
  }

  private literalDecision(r: LiteralRequest): string | null {
    const head = (r.head[0] as string) ?? '';
    const m = /^(\S+) +(UID +)?(\S+)/.exec(head);
    const tag = m?.[1] ?? '*';
    const command = m?.[3]?.toUpperCase() ?? '';
    // A literal for a command that will be refused anyway is not worth reading.
    const entry = COMMANDS.get(m?.[2] ? `UID ${command}` : command);
    if (!entry) return `${tag} BAD Unknown command`;
    if (!entry.states.includes(this.state.kind)) return `${tag} BAD ${command} is not allowed now`;
    if (command === 'APPEND') {
      if (this.state.kind !== 'authenticated' && this.state.kind !== 'selected')
        return `${tag} BAD Sign in first`;
      if (r.size > this.ctx.maxMessageSize)
        return `${tag} NO [TOOBIG] The message is larger than the limit of ${this.ctx.maxMessageSize} octets`;
      // MULTIAPPEND holds every message of the command until all have come: twice the message limit in all.
      let before = 0;
      for (const p of r.head) if (typeof p !== 'string') before += p.length;
      if (before + r.size > 2 * this.ctx.maxMessageSize)
        return `${tag} NO [TOOBIG] These messages together are larger than ${2 * this.ctx.maxMessageSize} octets; send fewer at a time`;
      return null;
    }
    const max = this.state.kind === 'not-authenticated' ? MAX_LOGIN_LITERAL : MAX_SMALL_LITERAL;
    if (r.size > max) return `${tag} NO [TOOBIG] Literal too large for ${command || 'this command'}`;
    return null;
  }

  // ---- output --------------------------------------------------------------

  /** Adds to the response being built. */
  write(...chunks: Chunk[]): void {
    this.writeChunks(chunks);
  }

  /** The same for a long list (a spread of 100,000 arguments would overflow the stack). */
  writeChunks(chunks: readonly Chunk[]): void {
    for (const c of chunks) {
      this.out.push(c);
      this.outBytes += c.length;
    }
  }

  untagged(text: string): void {
    this.write(`* ${text}\r\n`);
  }

  /** Sends what has been built; waits while the client is not reading (up to the write timeout). */
  async flush(): Promise<void> {
    if (this.out.length === 0 || this.closed) {
      this.out = [];
      this.outBytes = 0;
      return;
    }
    // Runs of text become one buffer each; literal bytes go as they are.
    const buffers: Buffer[] = [];
    let text = '';
    for (const c of this.out) {
      if (typeof c === 'string') text += c;
      else {
        if (text) buffers.push(Buffer.from(text, 'utf8'));
        text = '';
        buffers.push(c);
      }
    }
    if (text) buffers.push(Buffer.from(text, 'utf8'));
    const data = buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers);
    this.out = [];
    this.outBytes = 0;
    this.output.write(data);
    if (this.deflate) this.deflate.flush(zlibConstants.Z_SYNC_FLUSH);
    // Up to MAX_PENDING may wait in the writer (fewer round trips for a long FETCH); beyond, wait.
    if (this.output.writableLength > MAX_PENDING) await this.drained();
  }

  /**
   * Whether enough has been built to send it now (long FETCH responses):
   * `if (s.full) await s.flush()`, so a loop over many small responses does
   * not wait for a promise at each.
   */
  get full(): boolean {
    return this.outBytes >= FLUSH_AT;
  }

  private drained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.output.removeListener('drain', done);
        this.socket.removeListener('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.ctx.log('info', 'imap client stopped reading; disconnected', this.fields());
        this.destroy();
        done();
      }, this.ctx.writeTimeoutMs);
      this.output.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Writes at once, outside the command's response (continuation requests). */
  private writeNow(text: string): void {
    if (this.closed) return;
    this.output.write(text);
    if (this.deflate) this.deflate.flush(zlibConstants.Z_SYNC_FLUSH);
  }

  /** A continuation request (`+ text`), sent at once. */
  async continueRequest(text: string): Promise<void> {
    this.write(`+ ${text}\r\n`);
    await this.flush();
  }

  // ---- life cycle ------------------------------------------------------------

  /** Reads and runs commands until the connection ends. */
  async run(greeting: string): Promise<void> {
    this.untagged(greeting);
    await this.flush();
    for (;;) {
      const item = await this.nextFrame();
      if (!item || this.closed) return;
      if ('refusal' in item) {
        this.write(`${item.refusal}\r\n`);
        await this.flush();
        continue;
      }
      while (this.pushing) await this.pushing;
      this.busy = true;
      try {
        await this.execute(item);
      } finally {
        this.busy = false;
      }
      if (this.notify?.pending) this.schedulePush();
      if (this.state.kind === 'logout') {
        await this.end();
        return;
      }
    }
  }

  /** Runs one command, answering it whatever happens. */
  async execute(frame: Frame): Promise<void> {
    const c = new Cursor(frame.parts);
    let tag = '*';
    let name = '';
    // The name the command is counted under: only names of the table (a client chooses the rest).
    let counted = 'unknown';
    const started = performance.now();
    const answered = (outcome: 'OK' | 'NO' | 'BAD') =>
      this.ctx.onCommand(counted, (performance.now() - started) / 1000, outcome);
    let expungeAllowed = true;
    try {
      tag = c.atom(']');
      if (tag.includes('+')) throw new ImapSyntaxError('Invalid tag');
      c.space();
      name = c.word();
      let uid = false;
      if (name === 'UID') {
        c.space();
        name = c.word();
        uid = true;
      }
      const command = COMMANDS.get(uid ? `UID ${name}` : name);
      if (!command) throw new ImapSyntaxError(`Unknown command ${name.slice(0, 32)}`);
      counted = uid ? `UID ${name}` : name;
      if (!command.states.includes(this.state.kind))
        throw new ImapSyntaxError(
          this.state.kind === 'not-authenticated'
            ? 'Sign in first'
            : this.state.kind === 'authenticated' && command.states.includes('selected')
              ? 'No mailbox selected'
              : `${name} is not allowed now`,
        );
      expungeAllowed = !command.noExpunge;
      // The space before the arguments; each command reads its own.
      if (c.peek() === ' ') c.space();
      const done = this.ctx.activity(
        `imap session ${this.id} (${this.remoteAddress}): ${uid ? 'UID ' : ''}${name}`,
      );
      let text: string | null;
      try {
        text = await command.run(this, c, { tag, uid });
      } finally {
        done();
      }
      await this.afterCommand(expungeAllowed);
      if (text !== null) this.write(`${tag} OK ${text}\r\n`);
      answered('OK');
    } catch (err) {
      if (err instanceof ImapByeError) {
        this.bye(err.message);
        return;
      }
      const r = toResponse(err);
      answered(r.kind);
      if (r.serverBug)
        this.ctx.onError(err, `imap session ${this.id} (${name || 'command'}, ${this.remoteAddress})`);
      else if (r.kind === 'BAD')
        this.ctx.log('info', 'imap client error', { ...this.fields(), command: name, error: r.text });
      await this.afterCommand(expungeAllowed).catch(() => undefined);
      this.write(`${tag} ${r.kind}${r.code ? ` [${r.code}]` : ''} ${r.text}\r\n`);
    }
    await this.flush();
  }

  /** Untagged updates for the selected mailbox, after a command (RFC 3501 §7: the server may send them then). */
  private async afterCommand(expunge: boolean): Promise<void> {
    if (this.state.kind === 'selected') {
      const sel = this.state.mailbox;
      if (sel.dirty || (expunge && sel.expunged.size)) await this.sync(expunge);
    }
    await this.tellNotified();
  }

  /**
   * Reads the journal for the selected mailbox and writes what changed (one sync at a time). Under
   * NOTIFY (RFC 5465 §5.1, §5.2): flag changes only with FlagChange, and new messages followed by the
   * FETCH that MessageNew asked for.
   */
  async sync(expunge = true): Promise<void> {
    while (this.syncing) await this.syncing;
    if (this.state.kind !== 'selected') return;
    const sel = this.state.mailbox;
    const group = this.notify?.spec.selected ?? null;
    const flags = !this.notify || Boolean(group?.events.has('FlagChange'));
    const top = sel.uids.last;
    this.syncing = sel.sync(this, expunge, flags);
    try {
      await this.syncing;
    } finally {
      this.syncing = null;
    }
    // RFC 5465 §5.2: not for what this session put here itself (its APPEND or COPY said so).
    const fresh =
      group?.fetch && sel.uids.last > top
        ? sel.uids.byUid([[top + 1, sel.uids.last]]).filter((u) => !sel.madeByUs.has(u))
        : [];
    sel.madeByUs.clear();
    if (fresh.length)
      await fetchMessages(
        this,
        sel,
        fresh,
        { items: group!.fetch!, changedSince: null, vanished: false },
        true,
      );
  }

  /** What NOTIFY owes for mailboxes other than the selected one. */
  private async tellNotified(): Promise<void> {
    if (!this.notify?.pending || this.state.kind === 'not-authenticated' || this.state.kind === 'logout')
      return;
    const selectedId = this.state.kind === 'selected' ? this.state.mailbox.mailbox.id : null;
    await this.notify.flush(this, this.state.user.id, selectedId);
  }

  /** NOTIFY's updates, written at once when no command runs (in IDLE too), else after the command. */
  private schedulePush(): void {
    if ((this.busy && !this.idling) || this.closed) return;
    if (this.pushing) {
      this.pushAgain = true;
      return;
    }
    this.pushing = this.push().finally(() => {
      this.pushing = null;
      if (this.pushAgain) {
        this.pushAgain = false;
        this.schedulePush();
      }
    });
  }

  private async push(): Promise<void> {
    try {
      if (this.state.kind === 'selected' && this.state.mailbox.dirty && this.notify?.spec.selected)
        // SELECTED-DELAYED (§6.1.2): expunges wait for a command that may report them, or IDLE.
        await this.sync(this.idling || this.notify.spec.selected.filter === 'SELECTED');
      await this.tellNotified();
      await this.flush();
    } catch (err) {
      this.ctx.onError(err, `imap session ${this.id} (NOTIFY update)`);
    }
  }

  /** Subscribes to the account's changes once signed in. */
  signedIn(user: User): void {
    this.state = { kind: 'authenticated', user };
    this.unwatch = this.ctx.notifier.watch({ accountId: user.id, onEvent: (e) => this.onEvent(e) });
  }

  /**
   * Back to the state before sign-in (UNAUTHENTICATE, RFC 8437 §3): no mailbox, no account's changes,
   * and what ENABLE turned on is off again; TLS and COMPRESS stay as they are.
   */
  signedOut(): void {
    this.unwatch?.();
    this.unwatch = null;
    this.state = { kind: 'not-authenticated' };
    this.notify = null;
    this.condstore = false;
    this.qresync = false;
    this.rev2 = false;
    this.utf8 = false;
  }

  private onEvent(event: MailEvent | null): void {
    const sel = this.state.kind === 'selected' ? this.state.mailbox : null;
    if (this.notify && event && this.notify.notice(event, sel?.mailbox.id ?? null)) this.schedulePush();
    if (!sel) return;
    if (event && event.mailboxId !== sel.mailbox.id) return;
    if (event?.type === 'mailbox.change') {
      // Renamed or deleted elsewhere: a deleted selected mailbox ends the session (as Dovecot does).
      this.ctx.store.getMailboxById(sel.mailbox.id).then(
        (mb) => {
          if (!mb && this.state.kind === 'selected' && this.state.mailbox === sel)
            this.bye('Selected mailbox was deleted');
        },
        () => undefined,
      );
      return;
    }
    // NOTIFY without SELECTED (or SELECTED NONE): no message events of the selected mailbox (§3.1).
    if (this.notify && !this.notify.spec.selected) return;
    sel.dirty = true;
    if (this.idling) void this.idleSync();
    else if (this.notify) this.schedulePush();
  }

  private async idleSync(): Promise<void> {
    try {
      await this.sync(true);
      await this.flush();
    } catch (err) {
      this.ctx.onError(err, `imap session ${this.id} (IDLE update)`);
    }
  }

  /** IDLE (RFC 2177): updates go out as they happen until the client sends DONE. */
  async idle(): Promise<boolean> {
    this.idling = true;
    try {
      await this.sync(true);
      await this.flush();
      const item = await this.nextFrame();
      if (!item) return false;
      return (
        !('refusal' in item) && item.parts.length === 1 && (item.parts[0] as string).toUpperCase() === 'DONE'
      );
    } finally {
      this.idling = false;
    }
  }

  /** STARTTLS (RFC 3501 §6.2.1, RFC 2595 §4): anything the client sent after the command in the clear is dropped. */
  async startTls(context: SecureContext): Promise<void> {
    this.framer.reset();
    this.queue.length = 0;
    const plain = this.socket;
    plain.removeAllListeners('data');
    const tls = new TLSSocket(plain, { isServer: true, secureContext: context });
    tls.on('error', () => plain.destroy());
    await new Promise<void>((resolve) => {
      tls.once('secure', () => resolve());
      plain.once('close', () => resolve());
    });
    this.socket = tls;
    this.output = new PacedWriter(tls, MAX_PENDING);
    this.secure = true;
    this.attach(tls);
  }

  /** COMPRESS=DEFLATE (RFC 4978): from the next byte on, both directions are raw DEFLATE. */
  startCompression(): void {
    this.framer.reset();
    this.queue.length = 0;
    this.socket.removeAllListeners('data');
    const inflate = createInflateRaw();
    const deflate = createDeflateRaw({ level: 6 });
    inflate.on('error', () => this.destroy());
    deflate.on('error', () => this.destroy());
    this.socket.pipe(inflate);
    deflate.pipe(new PacedWriter(this.socket, MAX_PENDING));
    this.attach(inflate);
    this.output = deflate;
    this.deflate = deflate;
    this.compressed = true;
  }

  /** Ends the session with `* BYE text`. */
  bye(text: string): void {
    if (this.closed) return;
    this.out = [];
    this.outBytes = 0;
    this.write(`* BYE ${text}\r\n`);
    void this.flush().then(() => this.end());
  }

  /**
   * Closes after what was written has gone out: the compressor, when there is
   * one, ends the socket once it has flushed (so LOGOUT's BYE and OK arrive).
   */
  async end(): Promise<void> {
    if (this.closed) return;
    this.state = { kind: 'logout' };
    const socket = this.socket;
    await new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      const timer = setTimeout(resolve, 2000);
      timer.unref();
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.output.end();
    });
    this.close();
  }

  destroy(): void {
    this.socket.destroy();
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.state = { kind: 'logout' };
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.unwatch?.();
    this.unwatch = null;
    const w = this.waiter;
    this.waiter = null;
    w?.(null);
    this.queue.length = 0;
    if (!this.socket.destroyed) this.socket.destroy();
    this.onClose();
  }

  /** Inactivity ends the session: 30 minutes once signed in (RFC 3501 §5.4), less before. */
  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ms = this.state.kind === 'not-authenticated' ? this.ctx.loginTimeoutMs : this.ctx.idleTimeoutMs;
    this.idleTimer = setTimeout(() => this.bye('Autologout; idle for too long'), ms);
    this.idleTimer.unref();
  }

  /** Fields for log lines about this session. */
  fields(): Record<string, unknown> {
    return {
      session: this.id,
      client: this.remoteAddress,
      ...('user' in this.state ? { user: this.state.user.address } : {}),
    };
  }
}
