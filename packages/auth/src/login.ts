/**
 * One sign-in check for every protocol (IMAP, POP3, submission): the
 * throttle's verdict, its delay, the password check, and the bookkeeping.
 * An unknown user costs the same hash verification as a wrong password, so
 * neither the answer nor its timing tells them apart.
 */
import { hashPassword, needsRehash, verifyPassword } from './passwords.ts';
import type { AuthFailure, AuthThrottle } from './throttle.ts';

export interface LoginSubject {
  passwordHash: string;
  disabled: boolean;
}

export type LoginVerdict<A> = { ok: true; account: A } | { ok: false; reason: 'blocked' | 'invalid' };

let dummyHash: Promise<string> | null = null;

export async function checkLogin<A extends LoginSubject>(o: {
  throttle: AuthThrottle;
  /** The protocol, for the log line of a refusal (AuthThrottle's onFailure). */
  service: AuthFailure['service'];
  /** The protocol session's id, for the same line. */
  session?: string;
  /** The client's address. */
  ip: string;
  user: string;
  password: string;
  /** The account for a user name, or null (a malformed name is null too). */
  find(user: string): Promise<A | null>;
  /** Called after a success with a hash in today's scheme, when the stored one is older. */
  rehash?(account: A, hash: string): Promise<void>;
}): Promise<LoginVerdict<A>> {
  const refuse = (reason: 'blocked' | 'invalid'): LoginVerdict<A> => {
    o.throttle.report({
      service: o.service,
      ip: o.ip,
      user: o.user,
      reason,
      ...(o.session ? { session: o.session } : {}),
    });
    return { ok: false, reason };
  };
  const verdict = await o.throttle.check(o.ip, o.user);
  if (verdict.blocked) return refuse('blocked');
  if (verdict.delayMs) await new Promise((r) => setTimeout(r, verdict.delayMs));
  let account: A | null = null;
  try {
    account = await o.find(o.user);
  } catch {
    account = null;
  }
  dummyHash ??= hashPassword('not a password');
  const usable = account && !account.disabled ? account : null;
  const ok = await verifyPassword(usable ? usable.passwordHash : await dummyHash, o.password);
  if (!ok || !usable) {
    await o.throttle.failed(o.ip, o.user);
    return refuse('invalid');
  }
  await o.throttle.succeeded(o.ip, o.user);
  if (o.rehash && needsRehash(usable.passwordHash)) {
    const rehash = o.rehash;
    hashPassword(o.password)
      .then((h) => rehash(usable, h))
      .catch(() => undefined);
  }
  return { ok: true, account: usable };
}
