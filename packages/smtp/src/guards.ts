/**
 * Protocol guards for servers facing the internet (the MX), on smtp-server's
 * connection class (pinned to an exact version for this reason). Each is
 * enabled by a server option, so LMTP and submission keep smtp-server's
 * behaviour:
 *
 * - `strictProtocol`: a client that talks before the greeting, or sends
 *   message data before the 354 reply (RFC 2920 §3.1: DATA ends a pipelined
 *   group), breaks the protocol: 554 5.5.0 and the connection is closed. The
 *   354 goes out one turn of the event loop after DATA, so a body sent right
 *   behind DATA, even in a write of its own, is seen waiting. Web traffic
 *   (GET, POST, CONNECT … as a browser or proxy sends it) gets 221 and a
 *   close, as Postfix does.
 * - `strictLineEndings`: RFC 5321 §2.3.8: commands end with CRLF. A bare LF
 *   (smtp-server would take it as a line end) or a bare CR inside a line (it
 *   would be cut off silently) is answered 521 5.5.2 and the connection is
 *   closed, as Postfix's smtpd_forbid_bare_newline does.
 * - `commandTimeoutMs`: a client that takes longer than this for one
 *   command, even one byte at a time, gets 421 4.4.2.
 * - `minDataRate` (bytes per second, after `dataGraceMs`): a message
 *   transfer slower than this gets 421 4.4.2.
 * Every check runs per connection: one slow client never holds up another.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

interface GuardOptions {
  strictProtocol?: boolean;
  strictLineEndings?: boolean;
  commandTimeoutMs?: number;
  minDataRate?: number;
  dataGraceMs?: number;
}

interface Conn {
  _server: { options: GuardOptions };
  _ready: boolean;
  _parser:
    | (SMTPStream & {
        _earlyData?: boolean;
        _bareLineEnding?: boolean;
        _current?: number;
        dataBytes: number;
        writableLength: number;
      })
    | null;
  _dataStream: unknown;
  _socket: { once(ev: string, fn: () => void): void };
  send(code: number, text: string, context?: unknown): void;
  close(): void;
  _onCommand(command: Buffer, callback?: () => void): void;
  handler_DATA(command: Buffer, callback: () => void): void;
  init(): void;
  _createParser(): unknown;
  checkPace(): void;
  _guardTimer?: NodeJS.Timeout;
  _lastCommandAt?: number;
  _dataStartedAt?: number;
}

const WEB = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|TRACE|PATCH|CONNECT)\s+\S+(\s+HTTP\/\d(\.\d)?)?\s*$/i;
const PIPELINED_DATA = /(^|\n)DATA[ \t]*\r?\n[\s\S]/i;

export function installProtocolGuards(): void {
  const proto = SMTPConnection.prototype as unknown as Conn & { _guards?: boolean };
  if (proto._guards) return;
  proto._guards = true;

  const streamProto = SMTPStream.prototype as unknown as {
    _write(chunk: Buffer, encoding: string, next: (err?: Error) => void): void;
    _dataMode: boolean;
    _remainder: string;
    _earlyData?: boolean;
    _strict?: boolean;
    _strictLines?: boolean;
    _bareLineEnding?: boolean;
    _current?: number;
  };
  const write = streamProto._write;
  streamProto._write = function guardedWrite(chunk, encoding, next) {
    // What of the parser's writable buffer is this chunk (the rest arrived after it and waits).
    this._current = chunk?.length ?? 0;
    if (!this._dataMode && chunk?.length) {
      const text = this._remainder + chunk.toString('latin1');
      // Bytes after a DATA line in the same read arrived before our 354 could have.
      if (this._strict && PIPELINED_DATA.test(text)) this._earlyData = true;
      // A LF without its CR, or a CR without its LF (a CR at the very end may still get its LF).
      if (this._strictLines && /(^|[^\r])\n|\r(?!\n|$)/.test(text)) this._bareLineEnding = true;
    }
    return write.call(this, chunk, encoding, next);
  };

  const onCommand = proto._onCommand;
  proto._onCommand = function guardedCommand(command, callback) {
    const o = this._server.options;
    if (o.strictLineEndings && (this._parser?._bareLineEnding || command?.includes(0x0d))) {
      this.send(521, '5.5.2 bare CR or LF in a command: SMTP lines end with CRLF (RFC 5321 §2.3.8)', false);
      return this.close();
    }
    if (o.strictProtocol) {
      if (!this._ready) {
        this.send(554, '5.5.0 protocol violation: the client spoke before the greeting', false);
        return this.close();
      }
      if (WEB.test((command ?? '').toString())) {
        this.send(221, '2.7.0 this is a mail server, not a web server or proxy; goodbye', false);
        return this.close();
      }
    }
    this._lastCommandAt = Date.now();
    return onCommand.call(this, command, callback);
  };

  const handlerData = proto.handler_DATA;
  proto.handler_DATA = function guardedData(command, callback) {
    if (!this._server.options.strictProtocol) {
      this._dataStartedAt = Date.now();
      return handlerData.call(this, command, callback);
    }
    // A full turn of the event loop (through one poll for input) before the 354: what the client sent
    // behind DATA without waiting for it has been read by then, and waits in the parser (its writable
    // buffer, or the rest of the same read).
    const later = (fn: () => void) => setImmediate(() => setImmediate(fn));
    later(() => {
      const p = this._parser;
      // Bytes beyond the chunk that held DATA arrived behind it, before our 354.
      if (p?._earlyData || (p?.writableLength ?? 0) > (p?._current ?? 0)) {
        this.send(554, '5.5.0 protocol violation: message data was sent before the 354 reply', false);
        return this.close();
      }
      this._dataStartedAt = Date.now();
      handlerData.call(this, command, callback);
    });
  };

  // A new parser comes with every connection and after STARTTLS; each learns whether to watch for early data.
  const createParser = proto._createParser;
  proto._createParser = function guardedParser() {
    const parser = createParser.call(this) as { _strict?: boolean; _strictLines?: boolean };
    parser._strict = Boolean(this._server.options.strictProtocol);
    parser._strictLines = Boolean(this._server.options.strictLineEndings);
    return parser;
  };

  const init = proto.init;
  proto.init = function guardedInit() {
    const o = this._server.options;
    if (o.commandTimeoutMs || o.minDataRate) {
      this._lastCommandAt = Date.now();
      const every = Math.max(100, Math.min(1000, (o.commandTimeoutMs ?? 4000) / 4));
      this._guardTimer = setInterval(() => this.checkPace(), every);
      this._guardTimer.unref();
      this._socket.once('close', () => clearInterval(this._guardTimer));
    }
    return init.call(this);
  };

  proto.checkPace = function checkPace(this: Conn) {
    const o = this._server.options;
    const now = Date.now();
    if (this._dataStream && this._dataStartedAt && o.minDataRate) {
      const elapsed = now - this._dataStartedAt;
      const bytes = this._parser?.dataBytes ?? 0;
      if (elapsed > (o.dataGraceMs ?? 30_000) && (bytes * 1000) / elapsed < o.minDataRate) {
        clearInterval(this._guardTimer);
        this.send(
          421,
          `4.4.2 message data arrives too slowly (${Math.round((bytes * 1000) / elapsed)} bytes/s); closing`,
          false,
        );
      }
      return;
    }
    if (!this._dataStream && o.commandTimeoutMs && now - (this._lastCommandAt ?? now) > o.commandTimeoutMs) {
      clearInterval(this._guardTimer);
      this.send(421, '4.4.2 too slow: no complete command in time; closing', false);
    }
  };
}
