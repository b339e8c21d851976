/**
 * One error type per kind. Protocol layers map `code` to their wire replies in
 * one place (SMTP reply + enhanced status, IMAP NO/BAD + response code, CLI
 * message + exit status); the store never knows about protocols.
 */
export type StoreErrorCode =
  /** The named object does not exist. */
  | 'not_found'
  /** A unique name is already taken. */
  | 'exists'
  /** The input is malformed (bad address, bad mailbox name …). */
  | 'invalid'
  /** The operation would leave dangling data (a domain that still has users …). */
  | 'conflict'
  /** The account's quota does not leave room for this. */
  | 'over_quota'
  /** A queue entry's lease expired or was taken by another worker. */
  | 'lease_lost'
  /** A stored row that does not parse (a damaged database, a bug in an older version). */
  | 'corrupt';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
  }
}

export const isStoreError = (err: unknown, code?: StoreErrorCode): err is StoreError =>
  err instanceof StoreError && (code === undefined || err.code === code);
