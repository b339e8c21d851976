/**
 * The key that makes LMTP delivery exactly-once between our MTA and our MDA.
 *
 * The MTA sends ENVID=mailwerk.<queue id>.<mac>, the mac an HMAC-SHA256 of the
 * queue id under the installation's secret (`MailStore.secret`), so only a
 * process that shares the store can make one. The MDA takes the ENVID as the
 * delivery key only when the mac checks out: a retried delivery of the same
 * queue entry is then stored once. Any other ENVID (a client's, passed on by
 * another MTA in front, RFC 3461 §4.4) is only an envelope id, never a key,
 * so nobody can make the MDA drop a different message as a "duplicate".
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import type { MailStore } from './types.ts';

const SECRET = 'lmtp-delivery-key';
const OURS = /^mailwerk\.([0-9a-z]{1,40})\.([A-Za-z0-9_-]{22})$/;
const secrets = new WeakMap<MailStore, Promise<KeyObject>>();

/**
 * The secret as a KeyObject, made once per store: on Node 24, createHmac given the key's bytes makes a
 * KeyObject of them on every call, about 25 µs, five times the HMAC itself (two a message).
 */
function secretOf(store: MailStore): Promise<KeyObject> {
  let s = secrets.get(store);
  if (!s) {
    s = store.secret(SECRET).then((bytes) => createSecretKey(bytes));
    // A failed read is tried again next time.
    s.catch(() => secrets.delete(store));
    secrets.set(store, s);
  }
  return s;
}

const mac = (secret: KeyObject, id: string) =>
  createHmac('sha256', secret).update(id).digest('base64url').slice(0, 22);

/** The ENVID our MTA sends with a queue entry. */
export async function deliveryEnvid(store: MailStore, queueId: string): Promise<string> {
  return `mailwerk.${queueId}.${mac(await secretOf(store), queueId)}`;
}

/** The delivery key an ENVID carries (`mailwerk.<queue id>`), or null when it is not one of ours. */
export async function deliveryKeyOf(
  store: MailStore,
  envid: string | null | undefined,
): Promise<string | null> {
  const m = envid ? OURS.exec(envid) : null;
  if (!m) return null;
  const want = Buffer.from(mac(await secretOf(store), m[1]!));
  const got = Buffer.from(m[2]!);
  return want.length === got.length && timingSafeEqual(want, got) ? `mailwerk.${m[1]}` : null;
}
