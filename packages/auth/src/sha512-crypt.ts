/**
 * SHA-512-crypt (`$6$`), as glibc crypt(3) and Dovecot's SHA512-CRYPT write
 * it, following Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
 * specification. Only verification matters here (imported accounts); new
 * passwords are hashed with argon2id.
 */
import { createHash } from 'node:crypto';

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ROUNDS_DEFAULT = 5000;
const ROUNDS_MIN = 1000;
const ROUNDS_MAX = 999_999_999;

/** Byte triplets of the final digest, in the order the spec encodes them. */
const ORDER: Array<[number, number, number]> = [];
for (let i = 0; i < 21; i++) {
  const t: [number, number, number] = [i, i + 21, i + 42];
  // (0,21,42), (22,43,1), (44,2,23), (3,24,45) …: each triplet rotated by i mod 3.
  const r = i % 3;
  ORDER.push([t[r]!, t[(r + 1) % 3]!, t[(r + 2) % 3]!]);
}

const sha512 = (...parts: Buffer[]) => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** `len` bytes made of `block` repeated (and the last copy cut short). */
function repeatTo(block: Buffer, len: number): Buffer {
  const out = Buffer.alloc(len);
  for (let off = 0; off < len; off += block.length)
    block.copy(out, off, 0, Math.min(block.length, len - off));
  return out;
}

function encode(b2: number, b1: number, b0: number, n: number): string {
  let w = (b2 << 16) | (b1 << 8) | b0;
  let out = '';
  for (let i = 0; i < n; i++) {
    out += ITOA64[w & 0x3f];
    w >>>= 6;
  }
  return out;
}

export function sha512Crypt(password: string, setting: string): string {
  const m = /^\$6\$(?:rounds=(\d+)\$)?([^$]*)/.exec(setting);
  if (!m) throw new Error('not a $6$ setting');
  const explicitRounds = m[1] !== undefined;
  const rounds = explicitRounds ? Math.min(ROUNDS_MAX, Math.max(ROUNDS_MIN, Number(m[1]))) : ROUNDS_DEFAULT;
  const saltStr = m[2]!.slice(0, 16);
  const P = Buffer.from(password, 'utf8');
  const S = Buffer.from(saltStr, 'utf8');

  const B = sha512(P, S, P);
  const a = createHash('sha512').update(P).update(S).update(repeatTo(B, P.length));
  for (let n = P.length; n > 0; n >>= 1) a.update(n & 1 ? B : P);
  const A = a.digest();

  const dp = createHash('sha512');
  for (let i = 0; i < P.length; i++) dp.update(P);
  const Pp = repeatTo(dp.digest(), P.length);
  const ds = createHash('sha512');
  for (let i = 0; i < 16 + A[0]!; i++) ds.update(S);
  const Sp = repeatTo(ds.digest(), S.length);

  let C = A;
  for (let i = 0; i < rounds; i++) {
    const c = createHash('sha512');
    c.update(i & 1 ? Pp : C);
    if (i % 3) c.update(Sp);
    if (i % 7) c.update(Pp);
    c.update(i & 1 ? C : Pp);
    C = c.digest();
  }

  let out = '';
  for (const [x, y, z] of ORDER) out += encode(C[x]!, C[y]!, C[z]!, 4);
  out += encode(0, 0, C[63]!, 2);
  return `$6$${explicitRounds ? `rounds=${rounds}$` : ''}${saltStr}$${out}`;
}
