// ACME end to end: a real `mailwerk start` orders its certificate from Pebble (Debian's pebble, the ACME
// test CA, a private instance on loopback) through HTTP-01 and through TLS-ALPN-01; IMAP, POP3, SMTP and
// HTTPS then present it, which openssl s_client verifies against Pebble's root; `mailwerk cert renew`
// replaces it without a restart. Pebble resolves every name through a DNS server of the test's own that
// answers 127.0.0.1, and validates on the ports the sandbox's account set-up listens on.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { generateSelfSigned } from '@mailwerk/tls';
import { decode, encode, type Question } from 'dns-packet';
import { freePort, initialised, type Sandbox, type Service } from './helpers.ts';

const PEBBLE = '/usr/bin/pebble';
const run = promisify(execFile);

/** Answers A 127.0.0.1 for every name, and nothing (NOERROR) for every other type. */
async function loopbackDns() {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const query = decode(msg);
    const q = query.questions?.[0] as Question | undefined;
    const answers = q?.type === 'A' ? [{ type: 'A' as const, name: q.name, ttl: 60, data: '127.0.0.1' }] : [];
    socket.send(
      encode({ id: query.id, type: 'response', flags: 0x0180, questions: query.questions, answers }),
      rinfo.port,
      rinfo.address,
    );
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(socket.address() as AddressInfo).port}`, close: () => socket.close() };
}

/** Retries `check` until it returns a value, or fails with the last error after `ms`. */
async function until<T>(what: string, check: () => Promise<T | null>, ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end)
      throw new Error(`${what}: not within ${ms} ms (${(last as Error)?.message ?? 'no error'})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Pebble {
  directory: string;
  /** Pebble's API certificate: what mailwerk must trust to talk to it (NODE_EXTRA_CA_CERTS). */
  apiCa: string;
  /** The root that signs the certificates Pebble issues. */
  rootFile: string;
  stop(): Promise<void>;
}

async function startPebble(dir: string, dns: string, httpPort: number, tlsPort: number): Promise<Pebble> {
  const api = await generateSelfSigned('localhost');
  const apiCa = join(dir, 'pebble-api.pem');
  await writeFile(apiCa, api.cert);
  await writeFile(join(dir, 'pebble-api.key'), api.key);
  const [port, mgmt] = [await freePort(), await freePort()];
  const config = join(dir, 'pebble.json');
  await writeFile(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${mgmt}`,
        certificate: apiCa,
        privateKey: join(dir, 'pebble-api.key'),
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const child: ChildProcess = spawn(PEBBLE, ['-config', config, '-dnsserver', dns], {
    // No random sleep before validating, no nonce refused at random, no authorization reused: every
    // order is validated through the challenge under test.
    env: { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (d) => {
    log += d;
  });
  child.stderr!.on('data', (d) => {
    log += d;
  });
  const agent = new Agent({ ca: api.cert });
  const get = (url: string) =>
    new Promise<string>((resolve, reject) => {
      import('node:https').then(({ get }) =>
        get(url, { agent }, (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () =>
            res.statusCode === 200 ? resolve(body) : reject(new Error(`${res.statusCode}`)),
          );
        }).on('error', reject),
      );
    });
  const directory = `https://127.0.0.1:${port}/dir`;
  await until(`pebble answering (${log})`, () => get(directory));
  const rootFile = join(dir, 'pebble-root.pem');
  await writeFile(rootFile, await get(`https://127.0.0.1:${mgmt}/roots/0`));
  return {
    directory,
    apiCa,
    rootFile,
    async stop() {
      child.kill();
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** What openssl s_client says of the certificate served on `port`, verified against `root` for `name`. */
async function verified(port: number, root: string, name: string, starttls?: string): Promise<string | null> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', name, '-CAfile', root];
  args.push('-verify_hostname', name, '-verify_return_error', '-showcerts');
  if (starttls) args.push('-starttls', starttls);
  const r = await new Promise<{ out: string; code: number | null }>((resolve) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    // openssl exits at once when nothing listens yet: its stdin is closed by then (EPIPE), which is
    // "not yet" for the caller's until(), not a failure of the test (seen once in CI).
    child.stdin.on('error', () => {});
    child.stdin.end('Q\n');
    const timer = setTimeout(() => child.kill(), 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ out, code });
    });
  });
  return /Verify return code: 0 \(ok\)/.test(r.out) ? r.out : null;
}

/** The serial number and DNS names of the certificate a new TLS connection to `port` is shown. */
function served(port: number): Promise<{ serial: string; names: string[] }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port, servername: 'mail.example.org', rejectUnauthorized: false },
      () => {
        const c = s.getPeerCertificate();
        s.destroy();
        resolve({
          serial: c.serialNumber,
          names: (c.subjectaltname ?? '')
            .split(', ')
            .map((n) => n.replace(/^DNS:/, ''))
            .sort(),
        });
      },
    );
    s.once('error', reject);
  });
}

// The third run: challenge "auto" while another server holds the set-up HTTP port, as a web server holds
// port 80 on many machines. The access service starts all the same and orders through TLS-ALPN-01.
for (const [challenge, portTaken] of [
  ['http-01', false],
  ['tls-alpn-01', false],
  ['auto', true],
] as const) {
  const expected = challenge === 'auto' ? 'tls-alpn-01' : challenge;
  describe(`ACME with Pebble: an order through ${expected}${portTaken ? ', "auto" with the HTTP port taken' : ''}`, {
    skip: !existsSync(PEBBLE) && 'needs pebble (scripts/test-deps.sh)',
  }, () => {
    let sb: Sandbox;
    let dns: Awaited<ReturnType<typeof loopbackDns>>;
    let pebble: Pebble;
    let svc: Service;
    let holder: NetServer | null = null;
    const ports: Record<string, number> = {};
    let env: Record<string, string> = {};
    before(async () => {
      sb = await initialised();
      assert.equal((await sb.run(['domain', 'add', 'example.org'])).code, 0);
      for (const k of [
        'smtp',
        'submission',
        'submissions',
        'imap',
        'imaps',
        'pop3',
        'pop3s',
        'http',
        'https',
      ])
        ports[k] = await freePort();
      dns = await loopbackDns();
      pebble = await startPebble(sb.dir, dns.address, ports.http!, ports.https!);
      env = {
        NODE_EXTRA_CA_CERTS: pebble.apiCa,
        MAILWERK_TLS__ACME__ENABLED: 'true',
        MAILWERK_TLS__ACME__DIRECTORY_URL: pebble.directory,
        MAILWERK_TLS__ACME__CHALLENGE: challenge,
        MAILWERK_TLS__ACME__EMAIL: 'postmaster@example.org',
        MAILWERK_TLS__RELOAD_CHECK_SECONDS: '1',
        MAILWERK_ACCESS__AUTOCONFIG: 'true',
        MAILWERK_ACCESS__AUTOCONFIG_HTTP_PORT: String(ports.http),
        MAILWERK_ACCESS__AUTOCONFIG_HTTPS_PORT: String(ports.https),
        MAILWERK_MTA__LISTEN: '127.0.0.1',
        MAILWERK_MTA__SMTP_PORT: String(ports.smtp),
        MAILWERK_MTA__SUBMISSION_PORT: String(ports.submission),
        MAILWERK_MTA__SUBMISSIONS_PORT: String(ports.submissions),
        MAILWERK_ACCESS__LISTEN: '127.0.0.1',
        MAILWERK_ACCESS__IMAP_PORT: String(ports.imap),
        MAILWERK_ACCESS__IMAPS_PORT: String(ports.imaps),
        MAILWERK_ACCESS__POP3_PORT: String(ports.pop3),
        MAILWERK_ACCESS__POP3S_PORT: String(ports.pop3s),
        MAILWERK_CHECKS__AUTHENTICATION: 'false',
      };
      if (portTaken) {
        holder = createNetServer((s) => s.destroy());
        await new Promise<void>((resolve) => holder!.listen(ports.http, '127.0.0.1', resolve));
      }
      svc = await sb.spawn(['start'], /IMAP \(TLS\)\s+127\.0\.0\.1:\d+\s+running/, env);
    });
    after(async () => {
      if (process.env.ACME_DEBUG) console.log(svc?.output());
      await svc?.kill();
      await pebble?.stop();
      dns?.close();
      await sb.cleanup();
      holder?.close();
    });

    it('gets a certificate for the host and the set-up names, and IMAP, POP3, SMTP and HTTPS present it', async () => {
      await until('IMAP over TLS verified against Pebble', () =>
        verified(ports.imaps!, pebble.rootFile, 'mail.example.org'),
      );
      assert.deepEqual((await served(ports.imaps!)).names, [
        'autoconfig.example.org',
        'autodiscover.example.org',
        'mail.example.org',
        'mta-sts.example.org',
      ]);
      // Every other process takes it from the store within tls.reload_check_seconds.
      await until('POP3 over TLS', () => verified(ports.pop3s!, pebble.rootFile, 'mail.example.org'), 15_000);
      await until(
        'SMTP after STARTTLS',
        () => verified(ports.smtp!, pebble.rootFile, 'mail.example.org', 'smtp'),
        15_000,
      );
      await until(
        'IMAP after STARTTLS',
        () => verified(ports.imap!, pebble.rootFile, 'mail.example.org', 'imap'),
        15_000,
      );
      await until('HTTPS', () => verified(ports.https!, pebble.rootFile, 'autoconfig.example.org'), 15_000);
      assert.match(svc.output(), new RegExp(`"msg":"ordering a certificate".*"challenge":"${expected}"`));
      assert.equal(
        /the set-up HTTP port is not free: ACME validates through TLS-ALPN-01/.test(svc.output()),
        portTaken,
      );
      assert.match(svc.output(), /"msg":"certificate issued"/);
      const status = JSON.parse((await sb.run(['--json', 'status'], '', env)).stdout) as {
        certificate: { source: string };
      };
      assert.equal(status.certificate.source, 'acme');
    });

    it('orders again when a domain is added, for its set-up names too', async (t) => {
      if (challenge !== 'http-01') return t.skip('the http-01 run covers it');
      assert.equal((await sb.run(['domain', 'add', 'example.net'], '', env)).code, 0);
      await until('the new names on IMAP', async () =>
        (await served(ports.imaps!)).names.includes('mta-sts.example.net') ? true : null,
      );
      assert.ok(await verified(ports.imaps!, pebble.rootFile, 'autoconfig.example.net'));
      assert.match(svc.output(), /"due":"the names changed"/);
    });

    it('mailwerk cert renew orders a new one, which every service presents without a restart', async (t) => {
      if (portTaken) return t.skip('the runs with the HTTP port free cover it');
      const before = await served(ports.imaps!);
      const pids = (await run('pgrep', ['-P', String(svc.child.pid)])).stdout.trim().split('\n').sort();
      const r = await sb.run(['cert', 'renew'], '', env);
      assert.equal(r.code, 0, r.stderr);
      await until('a new certificate on IMAP', async () =>
        (await served(ports.imaps!)).serial !== before.serial ? true : null,
      );
      await until('the new certificate on SMTP', async () =>
        (await verified(ports.smtp!, pebble.rootFile, 'mail.example.org', 'smtp')) &&
        (await served(ports.pop3s!)).serial !== before.serial
          ? true
          : null,
      );
      assert.deepEqual(
        (await run('pgrep', ['-P', String(svc.child.pid)])).stdout.trim().split('\n').sort(),
        pids,
        'no service restarted',
      );
    });
  });
}
