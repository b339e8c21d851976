import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig, parseByteSize, resolveConfigPath, sampleConfig } from '../src/index.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailwerk-config-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function write(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('configuration', () => {
  it('the generated sample is a valid file that yields the defaults', async () => {
    const text = sampleConfig();
    const p = await write('sample.toml', text);
    const fromSample = loadConfig({ path: p, env: {} });
    const defaults = loadConfig({ path: join(dir, 'missing.toml'), optional: true, env: {} });
    assert.deepEqual({ ...fromSample, source: null }, defaults);
    assert.equal(defaults.mta.smtp_port, 25);
    assert.equal(defaults.limits.message_size, 50 * 1024 * 1024);
    // Every key is documented with its environment variable.
    for (const key of ['smtp_port', 'message_size', 'mongodb_url', 'allow_plaintext_auth']) {
      assert.match(text, new RegExp(`^# Type: .*MAILWERK_[A-Z_]*${key.toUpperCase()}\\.\\n${key} = `, 'm'));
    }
  });

  it('derives paths from data_dir, relative to the file', async () => {
    const p = await write('rel.toml', 'data_dir = "data"\nhostname = "mail.example.org"\n');
    const c = loadConfig({ path: p, env: {} });
    assert.equal(c.data_dir, join(dir, 'data'));
    assert.equal(c.store.sqlite_path, join(dir, 'data', 'mailwerk.sqlite'));
    assert.equal(c.tls.cert, join(dir, 'data', 'tls', 'cert.pem'));
    assert.equal(c.mda.lmtp, `unix:${join(dir, 'data', 'lmtp.sock')}`);
    assert.equal(c.hostname, 'mail.example.org');
  });

  it('applies environment overrides over the file', async () => {
    const p = await write('env.toml', '[mta]\nsmtp_port = 2525\n');
    const c = loadConfig({
      path: p,
      env: {
        MAILWERK_MTA__SMTP_PORT: '3525',
        MAILWERK_LIMITS__MESSAGE_SIZE: '10 MB',
        MAILWERK_TLS__ALLOW_PLAINTEXT_AUTH: 'true',
        MAILWERK_DATA_DIR: '/srv/mail',
      },
    });
    assert.equal(c.mta.smtp_port, 3525);
    assert.equal(c.limits.message_size, 10_000_000);
    assert.equal(c.tls.allow_plaintext_auth, true);
    assert.equal(c.data_dir, '/srv/mail');
  });

  it('refuses an invalid file naming the key and reason of every problem', async () => {
    const p = await write(
      'bad.toml',
      'data_dir = 5\ntypo_key = 1\n[mta]\nsmtp_port = 70000\n[limits]\nmessage_size = "12 parsecs"\nmax_recipients = 0\n[store]\nbackend = "oracle"\n',
    );
    const err = (() => {
      try {
        loadConfig({ path: p, env: {} });
      } catch (e) {
        return e;
      }
      assert.fail('loaded an invalid file');
    })();
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    const text = err.problems.join('\n');
    for (const key of [
      'data_dir',
      'typo_key',
      'mta.smtp_port',
      'limits.message_size',
      'limits.max_recipients',
      'store.backend',
    ]) {
      assert.ok(text.includes(key), `${key} in ${text}`);
    }
    assert.match(text, /12 parsecs/);
    assert.equal(err.problems.length, 6);
  });

  it('refuses broken TOML, a missing required file, and cross-field mistakes', async () => {
    assert.throws(() => loadConfig({ path: join(dir, 'nope.toml'), env: {} }), /does not exist/);
    const broken = await write('broken.toml', 'hostname = "unterminated\n');
    assert.throws(() => loadConfig({ path: broken, env: {} }), /not valid TOML/);
    const mongo = await write('mongo.toml', '[store]\nbackend = "mongodb"\n[tls]\ncert = "/x.pem"\n');
    assert.throws(
      () => loadConfig({ path: mongo, env: {} }),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 2,
    );
  });

  it('finds the file from the flag, MAILWERK_CONFIG, ./mailwerk.toml or /etc', () => {
    assert.equal(resolveConfigPath('/a/b.toml', {}), '/a/b.toml');
    assert.equal(resolveConfigPath(undefined, { MAILWERK_CONFIG: '/c.toml' }), '/c.toml');
    assert.equal(
      resolveConfigPath(undefined, {}, () => true),
      join(process.cwd(), 'mailwerk.toml'),
    );
    assert.equal(
      resolveConfigPath(undefined, {}, () => false),
      '/etc/mailwerk/mailwerk.toml',
    );
  });
});

describe('byte sizes', () => {
  const good: Array<[string | number, number]> = [
    [0, 0],
    [1234, 1234],
    ['1234', 1234],
    ['10K', 10240],
    ['10 KiB', 10240],
    ['10 kb', 10000],
    ['1.5G', 1.5 * 1024 ** 3],
    ['2 GB', 2e9],
    ['50M', 50 * 1024 ** 2],
    ['1T', 1024 ** 4],
  ];
  for (const [input, want] of good)
    it(`${JSON.stringify(input)} = ${want}`, () => assert.equal(parseByteSize(input), want));
  for (const bad of ['12 parsecs', '', 'M', '-5', '1e9', -1, 1.5, '10 MBB']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseByteSize(bad), /invalid size/));
  }
});
