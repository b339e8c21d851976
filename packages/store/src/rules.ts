/**
 * Rules every adapter applies the same way (like flags.ts and
 * mailbox-name.ts): recording a delivery attempt per recipient, and what a
 * valid Sieve script name and DKIM key are.
 */
import { randomUUID } from 'node:crypto';
import { StoreError } from './errors.ts';
import { readReply } from './reply.ts';
import {
  type AttemptResult,
  contentId,
  type DkimKey,
  type NewQueueEntry,
  type QueueEntry,
  type QueueRecipient,
} from './types.ts';

/**
 * The blob a new message or queue entry refers to: `blobId`, checked against `data` when both are given
 * (an id that is not the bytes' hash would file them under another body's name); the content id of
 * `data` when only the bytes are given, so that the caller and the adapter do not hash them twice.
 */
export function blobRef(blobId: string | undefined, data: Buffer | undefined): string {
  if (data === undefined) {
    if (blobId === undefined) throw new StoreError('invalid', 'blobId or data is needed');
    return blobId;
  }
  const id = contentId(data);
  if (blobId !== undefined && blobId !== id)
    throw new StoreError('invalid', 'blobId is not the content id of data');
  return id;
}

/**
 * A queue entry's id: sortable by time, unique across processes and hosts (40 random bits after the
 * time). The random part from randomUUID, which Node draws from a cache it fills in batches: a
 * randomBytes call of its own cost about 25 µs here, once a message.
 */
export const newQueueId = (now = Date.now()): string => {
  const u = randomUUID();
  return now.toString(36).padStart(9, '0') + u.slice(0, 8) + u.slice(9, 11);
};

/**
 * The entry `enqueue` stores for `input`: every recipient pending, not tried yet. Also what the MX's
 * delivery before its reply (QueueRunner.deliverNow) works on while nothing is stored.
 */
export function newQueueEntry(input: NewQueueEntry, id: string, now: Date): QueueEntry {
  return {
    id,
    sender: input.sender,
    recipients: input.recipients.map((r) => ({
      address: r.address,
      state: 'pending',
      attempts: 0,
      ...(r.orcpt !== undefined ? { orcpt: r.orcpt } : {}),
      ...(r.notify !== undefined ? { notify: r.notify } : {}),
    })),
    blobId: input.blobId,
    size: input.size,
    createdAt: now,
    nextAttemptAt: input.nextAttemptAt ?? now,
    attempts: 0,
    held: false,
    leaseOwner: input.lease?.owner ?? null,
    leaseUntil: input.lease?.until ?? null,
    meta: input.meta ?? {},
  };
}

/** The recipients after an attempt: each pending one that was tried takes its new state and reply. */
export function applyAttempt(
  recipients: QueueRecipient[],
  attempt: AttemptResult,
  at: Date,
): QueueRecipient[] {
  const byAddress = new Map(attempt.results.map((x) => [x.address, x]));
  return recipients.map((rc) => {
    const res = byAddress.get(rc.address);
    if (!res || rc.state !== 'pending') return rc;
    return {
      ...rc,
      state: res.state,
      attempts: rc.attempts + 1,
      lastAttemptAt: at,
      ...(res.reply !== undefined ? { lastReply: res.reply } : {}),
    };
  });
}

const STATES = new Set(['pending', 'delivered', 'failed']);

/**
 * Checks a queue entry's recipients as read back from storage; throws with
 * what is wrong. An entry that fails this is quarantined by the adapter (kept
 * aside, never leased, listed as such) instead of failing every reader.
 */
export function checkQueueRecipients(value: unknown): QueueRecipient[] {
  if (!Array.isArray(value) || value.length === 0) throw new Error('recipients are not a list');
  for (const r of value) {
    if (typeof r !== 'object' || r === null) throw new Error('a recipient is not an object');
    const x = r as Record<string, unknown>;
    if (typeof x.address !== 'string' || !STATES.has(x.state as string) || typeof x.attempts !== 'number')
      throw new Error('a recipient lacks its address, state or attempts');
    const reply = readReply(x.lastReply);
    if (reply) x.lastReply = reply;
    else delete x.lastReply;
  }
  return value as QueueRecipient[];
}

const MAX_SIEVE_NAME = 128;

export function checkSieveName(name: string): void {
  if (name.length === 0 || name.length > MAX_SIEVE_NAME || /[\u0000-\u001f\u007f/]/.test(name))
    throw new StoreError('invalid', `invalid Sieve script name "${name}"`);
}

/** RFC 6376 §3.1: a selector is dot-separated sub-domain labels. */
const SELECTOR =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function checkDkimKey(key: Pick<DkimKey, 'selector' | 'algorithm'>): void {
  if (!SELECTOR.test(key.selector))
    throw new StoreError('invalid', `invalid DKIM selector "${key.selector}"`);
  if (key.algorithm !== 'rsa-sha256' && key.algorithm !== 'ed25519-sha256')
    throw new StoreError('invalid', `unknown DKIM algorithm ${String(key.algorithm)}`);
}

/** Why a removed key's selector is not taken again (resolvers may cache its record for the TTL or longer). */
export const retiredMessage = (domain: string, selector: string): string =>
  `${domain} had a DKIM key with selector ${selector}, removed; resolvers may still hold its record, so choose another`;
