/**
 * Checks on the envelope addresses a client gives, shared by the MX and
 * submission, each answered with the RFC's reply:
 *
 * - RFC 6531 §3.4: a non-ASCII address is allowed only in a transaction that
 *   asked for SMTPUTF8, and it must be UTF-8: 553 5.6.7 otherwise.
 * - RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
 * - Senders: a local part that could do harm in whatever processes it later
 *   (a shell, a path) is refused: backquotes and `$`, `|`, a dot at either
 *   end or two in a row (`../`), control characters. Postfix has the same
 *   reflexes for commands and paths; no real mailbox needs these.
 */
import { reply, type SmtpError } from '@mailwerk/smtp';
import {
  type Expansion,
  expandRecipient,
  expansionRefusal,
  isStoreError,
  type MailStore,
} from '@mailwerk/store';

const MAX_LOCAL_OCTETS = 64;

/** An address as the SMTP engine decoded it (UTF-8; undecodable bytes became U+FFFD). */
export function checkUtf8(address: string, smtputf8: boolean): SmtpError | null {
  if (!/[^\x00-\x7f]/.test(address)) return null;
  if (!smtputf8)
    return reply(553, '5.6.7', `<${address}> non-ASCII address without the SMTPUTF8 parameter (RFC 6531)`);
  if (address.includes('\ufffd')) return reply(553, '5.6.7', 'the address is not valid UTF-8');
  return null;
}

/** The syntax of an envelope sender: null when acceptable, else the reply. `<>` is always acceptable. */
export function checkSenderSyntax(address: string): SmtpError | null {
  if (address === '') return null;
  const at = address.lastIndexOf('@');
  const local = at > 0 ? address.slice(0, at) : address;
  if (Buffer.byteLength(local) > MAX_LOCAL_OCTETS)
    return reply(
      553,
      '5.1.7',
      `sender local part longer than ${MAX_LOCAL_OCTETS} octets (RFC 5321 §4.5.3.1.1)`,
    );
  const bare = local.startsWith('"') && local.endsWith('"') && local.length >= 2 ? local.slice(1, -1) : local;
  if (
    /[`$|\u0000-\u001f\u007f]/.test(bare) ||
    bare.startsWith('.') ||
    bare.endsWith('.') ||
    bare.includes('..')
  )
    return reply(
      553,
      '5.1.7',
      `<${address.slice(0, 80)}> sender local part has characters that are not accepted`,
    );
  return null;
}

/**
 * A local recipient is taken at RCPT only if mail to it can be delivered: it
 * resolves to an account or an alias whose every local target does, and no
 * alias loop is on the way. What would be accepted and bounced later goes to
 * a sender that may be forged (backscatter), so it is refused now: 550 5.1.1
 * for an address (or alias target) that does not exist, 550 5.4.6 for a
 * loop (RFC 3463). A store that fails is not an answer: the error goes up
 * and becomes 451. Returns the expansion, which the MX uses again at DATA.
 */
export async function checkDeliverable(
  store: MailStore,
  address: string,
  /** A domain the caller has just found local (not looked up again). */
  knownLocal?: string,
): Promise<Expansion> {
  try {
    return await expandRecipient(
      store,
      address,
      async (d) => d === knownLocal || (await store.getDomain(d)) !== null,
    );
  } catch (err) {
    const refusal = expansionRefusal(err, address);
    if (refusal) throw reply(refusal.code, refusal.enhanced, refusal.text);
    if (isStoreError(err, 'invalid')) throw reply(501, '5.1.3', `<${address}> bad recipient address syntax`);
    throw err;
  }
}
