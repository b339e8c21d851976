// A blob's id is the SHA-256 of its bytes in hex: the ids stored in every database depend on it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentId } from '../src/types.ts';

describe('contentId', () => {
  it('is the SHA-256 of the bytes, in lower-case hex (FIPS 180-2 test vectors)', () => {
    assert.equal(
      contentId(Buffer.from('abc')),
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    assert.equal(
      contentId(Buffer.alloc(0)),
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });
});
