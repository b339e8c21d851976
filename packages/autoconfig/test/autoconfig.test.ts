// Account setup answers over real HTTP and HTTPS on loopback, fetched with curl as a client would,
// and parsed by python3's XML parser to prove they are well-formed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MailStore } from '@mailwerk/store';
import { openSqliteStore } from '@mailwerk/store-sqlite';
import { generateSelfSigned } from '@mailwerk/tls';
import { autoconfigHandler } from '../src/index.ts';

const run = (cmd: string, args: string[], input?: string) =>
  new Promise<{ code: number; out: string }>((resolve) => {
    const c = execFile(cmd, args, (err, out) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out }),
    );
    if (input !== undefined) c.stdin?.end(input);
  });

const PARSE = `
import sys, json, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
strip = lambda t: t.split('}')[-1]
out = []
for el in root.iter():
    if strip(el.tag) in ('incomingServer', 'outgoingServer'):
        out.append([el.get('type'), el.findtext('port'), el.findtext('socketType'), el.findtext('hostname'), el.findtext('username')])
    if strip(el.tag) == 'Protocol':
        f = {strip(c.tag): c.text for c in el}
        out.append([f['Type'], f['Port'], f['SSL'], f['Server'], f['LoginName']])
print(json.dumps(out))
`;

describe('autoconfig and autodiscover', () => {
  let dir: string;
  let store: MailStore;
  let httpPort: number;
  let httpsPort: number;
  const servers: Array<{ close(): void }> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailwerk-autoconfig-'));
    store = openSqliteStore({ path: join(dir, 'db.sqlite'), blobs: 'sqlite' });
    await store.addDomain('example.org');
    const handler = autoconfigHandler(store, {
      hostname: 'mail.example.org',
      imaps: 993,
      imap: 143,
      pop3s: 995,
      pop3: 110,
      submissions: 465,
      submission: 587,
      mtaStsMode: 'testing',
    });
    const http = createServer((req, res) => void handler(req, res));
    const tls = await generateSelfSigned('autoconfig.example.org');
    const https = createTlsServer({ key: tls.key, cert: tls.cert }, (req, res) => void handler(req, res));
    for (const s of [http, https]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    httpPort = (http.address() as AddressInfo).port;
    httpsPort = (https.address() as AddressInfo).port;
    servers.push(http, https);
  });
  after(async () => {
    for (const s of servers) s.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers Thunderbird over HTTP with the TLS services first and the address as user name', async () => {
    const r = await run('curl', [
      '-sS',
      '-H',
      'Host: autoconfig.example.org',
      `http://127.0.0.1:${httpPort}/mail/config-v1.1.xml?emailaddress=alice%40example.org`,
    ]);
    assert.equal(r.code, 0);
    const servers = JSON.parse((await run('python3', ['-c', PARSE], r.out)).out) as string[][];
    assert.deepEqual(servers, [
      ['imap', '993', 'SSL', 'mail.example.org', '%EMAILADDRESS%'],
      ['imap', '143', 'STARTTLS', 'mail.example.org', '%EMAILADDRESS%'],
      ['pop3', '995', 'SSL', 'mail.example.org', '%EMAILADDRESS%'],
      ['pop3', '110', 'STARTTLS', 'mail.example.org', '%EMAILADDRESS%'],
      ['smtp', '465', 'SSL', 'mail.example.org', '%EMAILADDRESS%'],
      ['smtp', '587', 'STARTTLS', 'mail.example.org', '%EMAILADDRESS%'],
    ]);
    // The well-known path on the domain itself, the domain taken from the Host.
    const wk = await run('curl', [
      '-sS',
      '-H',
      'Host: example.org',
      `http://127.0.0.1:${httpPort}/.well-known/autoconfig/mail/config-v1.1.xml`,
    ]);
    assert.match(wk.out, /<domain>example\.org<\/domain>/);
  });

  it('answers Outlook over HTTPS', async () => {
    const request = `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.org</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`;
    const r = await run('curl', [
      '-sSk',
      '-X',
      'POST',
      '-H',
      'Content-Type: text/xml',
      '--data-binary',
      request,
      `https://127.0.0.1:${httpsPort}/autodiscover/autodiscover.xml`,
    ]);
    assert.equal(r.code, 0);
    const protocols = JSON.parse((await run('python3', ['-c', PARSE], r.out)).out) as string[][];
    assert.deepEqual(protocols, [
      ['IMAP', '993', 'on', 'mail.example.org', 'alice@example.org'],
      ['POP3', '995', 'on', 'mail.example.org', 'alice@example.org'],
      ['SMTP', '465', 'on', 'mail.example.org', 'alice@example.org'],
    ]);
  });

  it("answers current Outlook's autodiscover.json as Exchange Online does: JSON naming the v1 XML", async () => {
    for (const path of [
      '/autodiscover/autodiscover.json?Email=alice%40example.org&Protocol=AutodiscoverV1&RedirectCount=1',
      '/autodiscover/autodiscover.json/v1.0/alice@example.org?Protocol=AutodiscoverV1&RedirectCount=1',
    ]) {
      const r = await run('curl', [
        '-sSk',
        '-H',
        'Host: autodiscover.example.org',
        `https://127.0.0.1:${httpsPort}${path}`,
      ]);
      assert.equal(r.code, 0);
      assert.deepEqual(JSON.parse(r.out), {
        Protocol: 'AutodiscoverV1',
        Url: 'https://autodiscover.example.org/autodiscover/autodiscover.xml',
      });
    }
    // Outlook asks for other protocols too (ActiveSync, EWS): refused as Exchange refuses an unknown one.
    const ews = await run('curl', [
      '-sk',
      '-w',
      ' %{http_code}',
      `https://127.0.0.1:${httpsPort}/autodiscover/autodiscover.json?Email=alice%40example.org&Protocol=ActiveSync`,
    ]);
    assert.match(ews.out, /"ErrorCode":"InvalidProtocol"[^\n]*\n 400$/);
    const elsewhere = await run('curl', [
      '-sk',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `https://127.0.0.1:${httpsPort}/autodiscover/autodiscover.json/v1.0/bob@elsewhere.example?Protocol=AutodiscoverV1`,
    ]);
    assert.equal(elsewhere.out, '404');
  });

  it('gives iPhone and Mac users a configuration profile that a property-list parser reads with the right servers', async () => {
    const r = await run('curl', [
      '-sSk',
      '-D',
      '-',
      `https://127.0.0.1:${httpsPort}/apple/mobileconfig?email=alice%40example.org`,
    ]);
    assert.equal(r.code, 0);
    assert.match(r.out, /content-type: application\/x-apple-aspen-config/i);
    const body = r.out.slice(r.out.indexOf('<?xml'));
    const parsed = JSON.parse(
      (
        await run(
          'python3',
          ['-c', 'import sys, json, plistlib; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))'],
          body,
        )
      ).out,
    ) as { PayloadType: string; PayloadContent: Array<Record<string, unknown>> };
    assert.equal(parsed.PayloadType, 'Configuration');
    const mail = parsed.PayloadContent[0]!;
    assert.equal(mail.PayloadType, 'com.apple.mail.managed');
    assert.deepEqual(
      [
        mail.EmailAddress,
        mail.IncomingMailServerHostName,
        mail.IncomingMailServerPortNumber,
        mail.IncomingMailServerUseSSL,
        mail.IncomingMailServerUsername,
        mail.OutgoingMailServerHostName,
        mail.OutgoingMailServerPortNumber,
        mail.OutgoingMailServerUseSSL,
      ],
      [
        'alice@example.org',
        'mail.example.org',
        993,
        true,
        'alice@example.org',
        'mail.example.org',
        465,
        true,
      ],
    );
    const missing = await run('curl', [
      '-sk',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `https://127.0.0.1:${httpsPort}/apple/mobileconfig?email=bob%40elsewhere.example`,
    ]);
    assert.equal(missing.out, '404');
  });

  it('serves the MTA-STS policy on mta-sts.<domain> over HTTPS (RFC 8461 §3.2), for local domains only', async () => {
    const r = await run('curl', [
      '-sSk',
      '-D',
      '-',
      '-H',
      'Host: mta-sts.example.org',
      `https://127.0.0.1:${httpsPort}/.well-known/mta-sts.txt`,
    ]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^content-type: text\/plain/im);
    const body = r.out.slice(r.out.indexOf('\r\n\r\n') + 4);
    assert.equal(body, 'version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n');
    const other = await run('curl', [
      '-sk',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      'Host: mta-sts.elsewhere.example',
      `https://127.0.0.1:${httpsPort}/.well-known/mta-sts.txt`,
    ]);
    assert.equal(other.out, '404');
  });

  it('says nothing for domains that are not local, and 404 for other paths', async () => {
    const other = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://127.0.0.1:${httpPort}/mail/config-v1.1.xml?emailaddress=bob%40elsewhere.example`,
    ]);
    assert.equal(other.out, '404');
    const outlook = await run('curl', [
      '-sk',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-X',
      'POST',
      '--data-binary',
      '<EMailAddress>x@elsewhere.example</EMailAddress>',
      `https://127.0.0.1:${httpsPort}/autodiscover/autodiscover.xml`,
    ]);
    assert.equal(outlook.out, '404');
    const path = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://127.0.0.1:${httpPort}/admin`,
    ]);
    assert.equal(path.out, '404');
  });
});
