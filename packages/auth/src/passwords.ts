/**
 * Password hashes. New passwords: argon2id (RFC 9106) from node:crypto, as a
 * PHC string. Accepted for imported accounts: bcrypt ($2a$/$2b$/$2y$) and
 * SHA-512-crypt ($6$), bare or with Dovecot's scheme prefix
 * ({ARGON2ID}, {BLF-CRYPT}, {SHA512-CRYPT}, {CRYPT}).
 */
import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { sha512Crypt } from './sha512-crypt.ts';

const argon2Async = promisify(argon2);

/**
 * OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): strong, and cheap
 * enough for a mail server where clients log in often on a 2-core host.
 */
export const ARGON2_PARAMS = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32 } as const;

const b64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '');

export async function hashPassword(password: string): Promise<string> {
  const nonce = randomBytes(16);
  const tag = await argon2Async('argon2id', { message: password, nonce, ...ARGON2_PARAMS });
  const { memory: m, passes: t, parallelism: p } = ARGON2_PARAMS;
  return `$argon2id$v=19$m=${m},t=${t},p=${p}$${b64(nonce)}$${b64(tag)}`;
}

const PHC =
  /^\$(argon2id|argon2i|argon2d)\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const SHA512 = /^\$6\$(rounds=\d+\$)?[^$]{0,16}\$[./A-Za-z0-9]{86}$/;

export type HashScheme = 'argon2' | 'bcrypt' | 'sha512-crypt';

/** Strips a Dovecot-style `{SCHEME}` prefix. */
function bare(hash: string): string {
  const m = /^\{(ARGON2ID|ARGON2I|BLF-CRYPT|SHA512-CRYPT|CRYPT)\}(.*)$/i.exec(hash);
  return m ? m[2]! : hash;
}

/** The scheme of a stored hash, or null when it is not one we can verify. */
export function hashScheme(hash: string): HashScheme | null {
  const h = bare(hash);
  if (PHC.test(h)) return 'argon2';
  if (BCRYPT.test(h)) return 'bcrypt';
  if (SHA512.test(h)) return 'sha512-crypt';
  return null;
}

/** Normalises an imported hash (drops a `{SCHEME}` prefix); throws when it cannot be verified later. */
export function importHash(hash: string): string {
  const h = bare(hash.trim());
  if (!hashScheme(h)) {
    throw new Error(
      'unsupported password hash: use argon2id (PHC string), bcrypt ($2a$/$2b$/$2y$) or SHA-512-crypt ($6$)',
    );
  }
  return h;
}

export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  const h = bare(hash);
  const phc = PHC.exec(h);
  if (phc) {
    const [, algo, m, t, p, salt, expected] = phc as unknown as [
      string,
      'argon2id' | 'argon2i' | 'argon2d',
      string,
      string,
      string,
      string,
      string,
    ];
    const want = Buffer.from(expected, 'base64');
    // Refuse absurd parameters from a tampered store instead of allocating them.
    if (Number(m) > 4 * 1024 * 1024 || Number(t) > 100 || Number(p) > 64 || want.length < 4) return false;
    const got = await argon2Async(algo, {
      message: password,
      nonce: Buffer.from(salt, 'base64'),
      memory: Number(m),
      passes: Number(t),
      parallelism: Number(p),
      tagLength: want.length,
    });
    return timingSafeEqual(got, want);
  }
  if (BCRYPT.test(h)) return bcrypt.compare(password, h);
  if (SHA512.test(h)) {
    const got = Buffer.from(sha512Crypt(password, h));
    const want = Buffer.from(h);
    return got.length === want.length && timingSafeEqual(got, want);
  }
  return false;
}

/** True when a hash should be replaced by a fresh argon2id one at the next successful login. */
export function needsRehash(hash: string): boolean {
  const m = PHC.exec(bare(hash));
  return !(
    m &&
    m[1] === 'argon2id' &&
    Number(m[2]) === ARGON2_PARAMS.memory &&
    Number(m[3]) === ARGON2_PARAMS.passes &&
    Number(m[4]) === ARGON2_PARAMS.parallelism
  );
}
