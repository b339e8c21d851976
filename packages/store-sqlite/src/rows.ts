/** Rows to domain objects. */
import {
  type Account,
  type Alias,
  checkQueueRecipients,
  type Mailbox,
  type Message,
  type MessageMeta,
  type QueueEntry,
  type QueueRecipient,
  type SieveScript,
  type SpecialUse,
  type TlsItem,
  withStructure,
} from '@mailwerk/store';
import type { Row } from './sql.ts';

export const toAccount = (r: Row): Account => ({
  id: String(r.id),
  address: r.address as string,
  domain: r.domain as string,
  displayName: r.display_name as string,
  passwordHash: r.password_hash as string,
  quotaBytes: r.quota_bytes === null ? null : Number(r.quota_bytes),
  usedBytes: Number(r.used_bytes),
  disabled: r.disabled === 1,
  createdAt: new Date(Number(r.created_at)),
});

export const toAlias = (r: Row): Alias => ({
  address: r.address as string,
  domain: r.domain as string,
  targets: JSON.parse(r.targets as string),
  createdAt: new Date(Number(r.created_at)),
});

export const toMailbox = (r: Row): Mailbox => ({
  id: String(r.id),
  accountId: String(r.account_id),
  name: r.name as string,
  specialUse: (r.special_use as SpecialUse | null) ?? null,
  subscribed: r.subscribed === 1,
  uidValidity: Number(r.uid_validity),
  uidNext: Number(r.uid_next),
  highestModseq: Number(r.highest_modseq),
  createdAt: new Date(Number(r.created_at)),
});

export const toMessageMeta = (r: Row): MessageMeta => ({
  id: String(r.id),
  accountId: String(r.account_id),
  mailboxId: String(r.mailbox_id),
  uid: Number(r.uid),
  modseq: Number(r.modseq),
  flags: JSON.parse(r.flags as string),
  internalDate: new Date(Number(r.internal_date)),
  savedAt: r.saved_at === null || r.saved_at === undefined ? null : new Date(Number(r.saved_at)),
  size: Number(r.size),
  blobId: r.blob_id as string,
});

export const toMessage = (r: Row): Message => withStructure(toMessageMeta(r), r.structure as string);

/** Reads a queue row; one whose recipients or meta do not parse comes back quarantined (with the reason). */
export function toQueueEntry(r: Row): QueueEntry {
  const base = {
    id: r.id as string,
    sender: r.sender as string,
    blobId: r.blob_id as string,
    size: Number(r.size),
    createdAt: new Date(Number(r.created_at)),
    nextAttemptAt: new Date(Number(r.next_attempt_at)),
    attempts: Number(r.attempts),
    held: r.held === 1,
    leaseOwner: (r.lease_owner as string | null) ?? null,
    leaseUntil:
      r.lease_until === null || r.lease_until === undefined ? null : new Date(Number(r.lease_until)),
  };
  let recipients: QueueRecipient[];
  let meta: Record<string, unknown>;
  try {
    recipients = checkQueueRecipients(JSON.parse(r.recipients as string)).map((rc) => ({
      ...rc,
      ...(rc.lastAttemptAt ? { lastAttemptAt: new Date(rc.lastAttemptAt) } : {}),
    }));
    meta = JSON.parse(r.meta as string) as Record<string, unknown>;
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta))
      throw new Error('meta is not an object');
  } catch (err) {
    return { ...base, recipients: [], meta: {}, quarantined: `unreadable: ${(err as Error).message}` };
  }
  const q = r.quarantine as string | null | undefined;
  return { ...base, recipients, meta, ...(q ? { quarantined: q } : {}) };
}

export const toSieve = (r: Row): SieveScript => ({
  accountId: String(r.account_id),
  name: r.name as string,
  content: r.content as string,
  active: r.active === 1,
  updatedAt: new Date(Number(r.updated_at)),
});

export const toTlsItem = (r: Row): TlsItem => ({
  name: r.name as string,
  cert: r.cert as string,
  key: r.key as string,
  notAfter: r.not_after === null ? null : new Date(Number(r.not_after)),
  updatedAt: new Date(Number(r.updated_at)),
});
