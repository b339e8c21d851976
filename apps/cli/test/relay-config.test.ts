// mta.relay_host as the MTA reads it at start: the AUTH password from its file, and the mistakes refused
// with a message naming the key (a world-readable password file, AUTH without TLS, a user without a file).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { relayHost } from '../../../packages/runtime/src/services/mta.ts';

const base = {
  host: 'smtp.provider.example',
  port: 587,
  tls: 'starttls' as const,
  verify_certificate: true,
  user: '',
  password_file: '',
  domains: ['Listed.Example'],
};

describe('mta.relay_host', () => {
  it('reads the password from the first line of an owner-only file, and refuses the mistakes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailwerk-relay-'));
    try {
      const good = join(dir, 'good');
      await writeFile(good, 'the secret\nignored\n', { mode: 0o600 });
      const open = join(dir, 'open');
      await writeFile(open, 'the secret\n', { mode: 0o644 });
      assert.deepEqual(relayHost({ ...base, user: 'me', password_file: good }), {
        host: 'smtp.provider.example',
        port: 587,
        tls: 'starttls',
        verifyCertificate: true,
        domains: ['listed.example'],
        auth: { user: 'me', pass: 'the secret' },
      });
      assert.equal(relayHost(base).auth, undefined);
      assert.throws(
        () => relayHost({ ...base, user: 'me', password_file: open }),
        /readable by others \(mode 644\); chmod 600/,
      );
      assert.throws(
        () => relayHost({ ...base, user: 'me', password_file: good, tls: 'none' }),
        /AUTH over an unencrypted connection is refused/,
      );
      assert.throws(() => relayHost({ ...base, user: 'me' }), /user is set, password_file is not/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
