/**
 * SMTP and LMTP replies with their enhanced status codes (RFC 3463), mapped
 * to the wire in one place.
 *
 * smtp-server picks an enhanced code from the reply code alone for errors
 * raised in hooks (so a relay refusal, 554, would read 5.6.0). `installReplyCodes`
 * wraps its reply writer once at this boundary: a reply text that starts with
 * its own enhanced code is sent as it is; every other reply keeps the code
 * smtp-server chooses. So every reply carries exactly one enhanced code.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export class SmtpError extends Error {
  readonly responseCode: number;
  readonly enhanced: string;
  constructor(code: number, enhanced: string, text: string) {
    super(`${enhanced} ${text}`);
    this.name = 'SmtpError';
    this.responseCode = code;
    this.enhanced = enhanced;
  }
}

export const reply = (code: number, enhanced: string, text: string) => new SmtpError(code, enhanced, text);

/**
 * The one mapping from an error met in a hook to the reply: an SmtpError is
 * the reply it carries; anything else (a store that failed, our bug) is
 * reported to `onError` and answered 451 4.3.0, so the client tries again
 * later rather than bouncing mail over a passing fault (RFC 5321 §4.2.5).
 * A StoreError of kind over_quota is the one user-facing condition the store
 * raises: 452 4.2.2 (RFC 3463), a temporary refusal.
 */
export function asReply(
  err: unknown,
  onError?: (err: unknown, context: string) => void,
  context = 'smtp',
): SmtpError {
  if (err instanceof SmtpError) return err;
  if (
    err instanceof Error &&
    (err as { code?: string; name?: string }).name === 'StoreError' &&
    (err as { code?: string }).code === 'over_quota'
  )
    return reply(452, '4.2.2', 'mailbox full, try again later');
  onError?.(err, context);
  return reply(451, '4.3.0', 'local error in processing, try again later');
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

export function installReplyCodes(): void {
  if (installed) return;
  installed = true;
  const proto = SMTPConnection.prototype as unknown as {
    send(code: number, data?: unknown, context?: unknown): void;
  };
  const original = proto.send;
  proto.send = function send(code: number, data?: unknown, context?: unknown) {
    if (typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false);
    return original.call(this, code, data, context);
  };
}

/**
 * smtp-server refuses a recipient such as `"a@ext"@local` with a syntax error
 * before any hook sees it. It is a relay trick, and an admin reading the log
 * should see it refused as one: servers created with `refuseQuotedRouting`
 * answer such RCPTs 554 5.7.1 (the recipient is refused either way).
 */
export function installRelayGuard(): void {
  const proto = SMTPConnection.prototype as unknown as {
    handler_RCPT(command: Buffer | string, callback: () => void): void;
    send(code: number, data?: unknown, context?: unknown): void;
    _server: { options: { refuseQuotedRouting?: boolean } };
  };
  if ((proto as { _relayGuard?: boolean })._relayGuard) return;
  (proto as { _relayGuard?: boolean })._relayGuard = true;
  const original = proto.handler_RCPT;
  proto.handler_RCPT = function handlerRcpt(command, callback) {
    if (this._server.options.refuseQuotedRouting) {
      const m = /^RCPT\s+TO\s*:\s*<("(?:[^"\\]|\\.)*")@([^<>@]*)>/i.exec(command.toString());
      if (m && /[@%!:]/.test(m[1]!)) {
        this.send(554, `5.7.1 <${m[1]}@${m[2]}> relay access denied`.replace(/[\r\n]/g, ''));
        return callback();
      }
    }
    return original.call(this, command, callback);
  };
}

/**
 * smtp-server waits a fixed 100 ms before its greeting to catch clients that
 * talk first. That pause is paid by every connection: an LMTP hop or an MX
 * taking one message per connection (the common case) could not exceed
 * connections / 0.1 s. Servers created with `greetingDelayMs` use that delay
 * instead (0: greet at once). smtp-server is pinned to an exact version
 * because this reaches into its connection setup.
 */
export function installGreetingDelay(): void {
  const proto = SMTPConnection.prototype as unknown as {
    init(): void;
    connectionReady(): void;
    send(code: number, data?: unknown, context?: unknown): void;
    _setListeners(done: () => void): void;
    _server: { options: { greetingDelayMs?: number; maxClients?: number }; connections: Set<unknown> };
    name: string;
  };
  if ((proto as { _greetingDelay?: boolean })._greetingDelay) return;
  (proto as { _greetingDelay?: boolean })._greetingDelay = true;
  const original = proto.init;
  proto.init = function init() {
    // Replies are small separate writes (one per pipelined command): with Nagle's
    // algorithm each waits for the client's delayed ACK, up to 40 ms.
    (this as unknown as { _socket?: { setNoDelay?: (on: boolean) => void } })._socket?.setNoDelay?.(true);
    const delay = this._server.options.greetingDelayMs;
    if (delay === undefined) return original.call(this);
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      if (delay > 0) setTimeout(() => this.connectionReady(), delay).unref();
      else this.connectionReady();
    });
  };
}

/**
 * smtp-server lists AUTH in its EHLO reply before STARTTLS too (and answers
 * AUTH 538 then). RFC 3207 §4.2 and common sense: a client should not be
 * offered to send a password in the clear. Servers created with
 * `authAfterTls` list AUTH only once the connection is encrypted; AUTH stays
 * required before MAIL either way (smtp-server's own check, untouched).
 */
export function installAuthAfterTls(): void {
  const proto = SMTPConnection.prototype as unknown as {
    handler_EHLO(command: Buffer | string, callback: () => void): void;
    secure: boolean;
    _server: { options: { authAfterTls?: boolean; authMethods: string[] } };
    _authAfterTls?: boolean;
  };
  if (proto._authAfterTls) return;
  proto._authAfterTls = true;
  const original = proto.handler_EHLO;
  proto.handler_EHLO = function handlerEhlo(command, callback) {
    const options = this._server.options;
    if (!options.authAfterTls || this.secure) return original.call(this, command, callback);
    // handler_EHLO builds and sends its reply synchronously, so the swap is seen by this call only.
    const methods = options.authMethods;
    options.authMethods = [];
    try {
      return original.call(this, command, callback);
    } finally {
      options.authMethods = methods;
    }
  };
}

/** The words of the MDA's reply to a recipient whose Sieve script rejected the message (RFC 5429). */
export const SIEVE_REFUSAL = 'refused by the recipient';

/** Whether a delivery reply is such a Sieve refusal (550 5.7.1 and those words). */
export const isSieveRefusal = (r: { code: number; enhanced: string; text: string }): boolean =>
  r.code === 550 && r.enhanced === '5.7.1' && r.text.includes(SIEVE_REFUSAL);
