/**
 * Rules every adapter applies the same way (like flags.ts and
 * mailbox-name.ts): recording a delivery attempt per recipient, and what a
 * valid Sieve script name and DKIM key are.
 */
import { StoreError } from './errors.ts';
import { readReply } from './reply.ts';
import type { AttemptResult, DkimKey, QueueRecipient } from './types.ts';

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
