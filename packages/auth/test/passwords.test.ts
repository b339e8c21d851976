import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  hashPassword,
  hashScheme,
  importHash,
  needsRehash,
  sha512Crypt,
  verifyPassword,
} from '../src/index.ts';

// Known answers from glibc crypt(3) (via python3's crypt module) and Drepper's specification.
const SHA512_VECTORS: Array<[string, string]> = [
  [
    'pw',
    '$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/',
  ],
  [
    'Hello world!',
    '$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1',
  ],
  [
    'Hello world!',
    '$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.',
  ],
  [
    'pässwörd long password that is longer than sixty-four bytes in total length!!',
    '$6$rounds=1000$0123456789abcdef$kV3tjFYAq1uhs5C0Tp0XjE.ywqrnTAHdCCHRP3QnVlctCPiklV1jZ9f50ukPVWrbMPNxRkOHTdnlTzPNJxCR/.',
  ],
  ['', '$6$x$QSmr1Bx2g4O6BzKvdkgOcyU6H91X6I/XBv5pSalMhSPkwdH6Beo3F455xZJg0v//bxVK5F4OE5k1.0xuR26MK0'],
];

describe('passwords', () => {
  it('hashes new passwords with argon2id and verifies them', async () => {
    const h = await hashPassword('correct horse');
    assert.match(h, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.equal(await verifyPassword(h, 'correct horse'), true);
    assert.equal(await verifyPassword(h, 'correct horsE'), false);
    assert.notEqual(await hashPassword('correct horse'), h, 'salted');
    assert.equal(needsRehash(h), false);
  });

  for (const [pw, hash] of SHA512_VECTORS) {
    it(`SHA-512-crypt matches glibc for ${hash.slice(0, 24)}…`, async () => {
      assert.equal(sha512Crypt(pw, hash), hash);
      assert.equal(await verifyPassword(hash, pw), true);
      assert.equal(await verifyPassword(`{SHA512-CRYPT}${hash}`, pw), true);
      assert.equal(await verifyPassword(hash, `${pw}x`), false);
    });
  }

  it('verifies bcrypt hashes (OpenBSD test vector) and Dovecot prefixes', async () => {
    const h = '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW';
    assert.equal(await verifyPassword(h, 'U*U'), true);
    assert.equal(await verifyPassword(`{BLF-CRYPT}${h}`, 'U*U'), true);
    assert.equal(await verifyPassword(h, 'U*V'), false);
    assert.equal(needsRehash(h), true);
  });

  it('accepts only hashes it can verify for import', () => {
    assert.equal(hashScheme(SHA512_VECTORS[0]![1]), 'sha512-crypt');
    assert.equal(importHash(`{SHA512-CRYPT}${SHA512_VECTORS[0]![1]}`), SHA512_VECTORS[0]![1]);
    for (const bad of ['plaintext', '$1$md5$abc', '{PLAIN}secret', '$5$sha256$x', '']) {
      assert.throws(() => importHash(bad), /unsupported password hash/);
    }
  });

  it('refuses tampered argon2 parameters without allocating them', async () => {
    const h = await hashPassword('x');
    const evil = h.replace('m=19456', 'm=99999999');
    assert.equal(await verifyPassword(evil, 'x'), false);
  });
});
