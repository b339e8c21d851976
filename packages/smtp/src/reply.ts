/**
 * SMTP and LMTP replies with their enhanced status codes (RFC 3463): a
 * refusal is an SmtpError carrying both codes, written to the wire by the
 * engine (server.ts) as `code enhanced text`.
 */

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

/** The words of the MDA's reply to a recipient whose Sieve script rejected the message (RFC 5429). */
export const SIEVE_REFUSAL = 'refused by the recipient';

/** Whether a delivery reply is such a Sieve refusal (550 5.7.1 and those words). */
export const isSieveRefusal = (r: { code: number; enhanced: string; text: string }): boolean =>
  r.code === 550 && r.enhanced === '5.7.1' && r.text.includes(SIEVE_REFUSAL);
