/**
 * The IMAP error kinds, mapped to the wire in one place (`toResponse`):
 * - `SyntaxError_` (a command we cannot parse, or one not valid in this state): tagged BAD;
 * - `UserError` (a valid command that cannot be done: no such mailbox, over quota): tagged NO
 *   with a response code (RFC 5530) so clients can act on it;
 * - `ByeError`: the session ends with `* BYE`;
 * - anything else is our bug or a broken store: tagged `NO [SERVERBUG]` (or `NO [UNAVAILABLE]` for a
 *   store that is temporarily failing), logged with the session id, and the session goes on.
 * A StoreError becomes the UserError its code names.
 */
import { isStoreError } from '@mailwerk/store';

/** A command that does not parse, or is not allowed now: tagged BAD. */
export class ImapSyntaxError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

/** A command that parsed but cannot be done: tagged NO with a response code. */
export class ImapUserError extends Error {
  readonly code: string | undefined;
  constructor(code: string | undefined, message: string) {
    super(message);
    this.code = code;
  }
}

/** Ends the session: `* BYE text`, then the connection closes. */
export class ImapByeError extends Error {}

export const bad = (message: string, code?: string) => new ImapSyntaxError(message, code);
export const no = (code: string | undefined, message: string) => new ImapUserError(code, message);

export interface ErrorResponse {
  kind: 'BAD' | 'NO';
  code: string | undefined;
  text: string;
  /** Our own fault: worth a log line with the stack. */
  serverBug: boolean;
}

/** The one mapping from an error to the tagged response. */
export function toResponse(err: unknown): ErrorResponse {
  if (err instanceof ImapSyntaxError)
    return { kind: 'BAD', code: err.code, text: err.message, serverBug: false };
  if (err instanceof ImapUserError)
    return { kind: 'NO', code: err.code, text: err.message, serverBug: false };
  if (isStoreError(err, 'not_found'))
    return { kind: 'NO', code: 'NONEXISTENT', text: 'No such mailbox or message', serverBug: false };
  if (isStoreError(err, 'exists'))
    return { kind: 'NO', code: 'ALREADYEXISTS', text: 'It exists already', serverBug: false };
  if (isStoreError(err, 'over_quota'))
    return { kind: 'NO', code: 'OVERQUOTA', text: 'Over quota', serverBug: false };
  if (isStoreError(err, 'invalid') || isStoreError(err, 'conflict'))
    return { kind: 'NO', code: 'CANNOT', text: (err as Error).message, serverBug: false };
  return {
    kind: 'NO',
    code: 'SERVERBUG',
    text: 'Internal error; the administrator can find it in the log',
    serverBug: true,
  };
}
