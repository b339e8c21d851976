/**
 * Object identifiers (OBJECTID, RFC 8474): MAILBOXID, EMAILID and THREADID,
 * each made from what does not change when a message is copied or moved or
 * the server restarts, so none needs storing:
 * - MAILBOXID: the store's mailbox id and its UIDVALIDITY (both survive
 *   RENAME; a mailbox deleted and made again gets a new UIDVALIDITY, so its
 *   MAILBOXID is never one an earlier mailbox had, §4.1, even where the
 *   store gives its row id again);
 * - EMAILID: "M" and the message's content id (the blob id: the same bytes
 *   in another mailbox are the same email, §5.1);
 * - THREADID: "T" and a digest of the thread's first Message-ID: the first
 *   of References, else In-Reply-To, else the message's own Message-ID, so a
 *   reply and what it answers share it as long as clients write References
 *   as RFC 5322 §3.6.4 asks; NIL for a message with none of the three.
 * All are 1*255 of ALPHA, DIGIT, "_" and "-" (§4).
 */
import { createHash } from 'node:crypto';
import { ancestryOf } from './sort.ts';

export const mailboxId = (mb: { id: string; uidValidity: number }): string => {
  const id = `${mb.id}_${mb.uidValidity}`;
  return /^[A-Za-z0-9_-]{1,255}$/.test(id) ? id : digest(id);
};

export const emailId = (blobId: string): string =>
  `M${/^[A-Za-z0-9_-]{1,250}$/.test(blobId) ? blobId : digest(blobId)}`;

const digest = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);

/** The THREADID of a message whose header is `header`, or null (NIL). */
export function threadId(header: string): string | null {
  const { references, messageId } = ancestryOf(header);
  const root = references[0] ?? messageId;
  return root ? `T${digest(root)}` : null;
}
