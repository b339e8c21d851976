// MTA-STS for outbound mail (RFC 8461): the policy parsers (tables and fast-check), the caching rules,
// and delivery against real servers on loopback: an HTTPS policy host and SMTP servers whose
// certificates match their names or do not. DNS answers come from a table (test resolver) and every
// connection goes to loopback (test dialer); nothing leaves the host.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, LookupFunction } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { generateSelfSigned } from '@mailwerk/tls';
import fc from 'fast-check';
import {
  currentPolicy,
  httpsPolicyFetcher,
  memoryPolicyCache,
  mxMatches,
  OutboundDelivery,
  parseStsPolicy,
  parseStsRecord,
} from '../src/index.ts';
import { deliverOne, dialByAddress, type RemoteServer, remoteServer, tableResolver } from './remote.ts';

describe('MTA-STS: parsing', () => {
  const records: Array<[string, string | null]> = [
    ['v=STSv1; id=20261201T010203;', '20261201T010203'],
    ['v=STSv1;id=abc', 'abc'],
    ['v=STSv1; id=abc; ext=1', 'abc'],
    ['v=STSv2; id=abc;', null],
    ['id=abc; v=STSv1;', null],
    ['v=STSv1; id=not-alnum;', null],
    ['v=STSv1; id=123456789012345678901234567890123;', null],
    ['v=STSv1;', null],
    ['', null],
  ];
  for (const [txt, id] of records)
    it(`TXT ${JSON.stringify(txt)} → ${id}`, () => assert.equal(parseStsRecord(txt), id));

  const good =
    'version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n';
  const policies: Array<[string, string, ReturnType<typeof parseStsPolicy>]> = [
    [
      'a full policy (RFC 8461 §3.2)',
      good,
      { mode: 'enforce', mx: ['mail.example.com', '*.example.net'], maxAge: 604800 },
    ],
    [
      'LF line ends, a trailing dot',
      'version: STSv1\nmode: testing\nmx: MX.Example.org.\nmax_age: 86400',
      { mode: 'testing', mx: ['mx.example.org'], maxAge: 86400 },
    ],
    [
      'mode none needs no mx',
      'version: STSv1\nmode: none\nmax_age: 0\n',
      { mode: 'none', mx: [], maxAge: 0 },
    ],
    [
      'unknown keys are ignored',
      `${good}future: thing\n`,
      { mode: 'enforce', mx: ['mail.example.com', '*.example.net'], maxAge: 604800 },
    ],
    ['no version', 'mode: enforce\nmx: a.example\nmax_age: 1\n', null],
    ['another version', good.replace('STSv1', 'STSv2'), null],
    ['an unknown mode', good.replace('enforce', 'strict'), null],
    ['enforce without mx', 'version: STSv1\nmode: enforce\nmax_age: 10\n', null],
    ['max_age over a year', good.replace('604800', '31557601'), null],
    ['max_age not a number', good.replace('604800', '1w'), null],
    ['no max_age', 'version: STSv1\nmode: enforce\nmx: a.example\n', null],
    ['an HTML error page', '<html><body>Not found</body></html>', null],
  ];
  for (const [name, text, want] of policies) it(name, () => assert.deepEqual(parseStsPolicy(text), want));

  it('matches MX hosts: a wildcard is one whole left-most label, names compare case-insensitively', () => {
    const p = ['mail.example.com', '*.example.net'];
    assert.equal(mxMatches('MAIL.example.com.', p), true);
    assert.equal(mxMatches('mx1.example.net', p), true);
    assert.equal(mxMatches('a.b.example.net', p), false);
    assert.equal(mxMatches('example.net', p), false);
    assert.equal(mxMatches('evilexample.net', p), false);
    assert.equal(mxMatches('mail.example.com.evil', p), false);
  });

  it('never throws on any text, and reads back any valid policy (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3000 }), (s) => {
        parseStsRecord(s);
        const p = parseStsPolicy(s);
        assert.ok(p === null || ['enforce', 'testing', 'none'].includes(p.mode));
      }),
      { numRuns: 2000 },
    );
    const label = fc.stringMatching(/^[a-z0-9]{1,12}$/);
    fc.assert(
      fc.property(
        fc.constantFrom('enforce', 'testing'),
        fc.array(fc.tuple(fc.boolean(), fc.array(label, { minLength: 2, maxLength: 4 })), {
          minLength: 1,
          maxLength: 5,
        }),
        fc.integer({ min: 0, max: 31_557_600 }),
        fc.constantFrom('\n', '\r\n'),
        (mode, mxs, maxAge, eol) => {
          const mx = mxs.map(([wild, labels]) => `${wild ? '*.' : ''}${labels.join('.')}`);
          const text = [
            'version: STSv1',
            `mode: ${mode}`,
            ...mx.map((m) => `mx: ${m}`),
            `max_age: ${maxAge}`,
          ].join(eol);
          assert.deepEqual(parseStsPolicy(text), { mode, mx, maxAge });
        },
      ),
    );
  });
});

describe('MTA-STS: which policy applies (RFC 8461 §5.1)', () => {
  const policyText = (mode: string, age = 3600) =>
    `version: STSv1\nmode: ${mode}\nmx: *.a.example\nmax_age: ${age}\n`;
  it('fetches when the id is new, keeps it for max_age, fetches again when the id changes, and keeps a cached one when the TXT record goes or the fetch fails', async () => {
    let fetched = 0;
    let body: string | null = policyText('enforce');
    const fetch = async () => {
      fetched++;
      return body;
    };
    const txt: Record<string, string[][]> = { '_mta-sts.a.example': [['v=STSv1; id=one']] };
    const resolver = {
      resolveTxt: async (n: string) =>
        txt[n] ?? Promise.reject(Object.assign(new Error('no'), { code: 'ENOTFOUND' })),
    };
    const cache = memoryPolicyCache();
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    assert.equal((await currentPolicy('a.example', resolver, fetch, cache, t0))?.mode, 'enforce');
    assert.equal((await currentPolicy('A.example', resolver, fetch, cache, t0 + 1000))?.mode, 'enforce');
    assert.equal(fetched, 1, 'the same id: the cached policy');
    body = policyText('testing');
    txt['_mta-sts.a.example'] = [['v=STSv1; id=two']];
    assert.equal((await currentPolicy('a.example', resolver, fetch, cache, t0 + 2000))?.mode, 'testing');
    assert.equal(fetched, 2);
    delete txt['_mta-sts.a.example'];
    assert.equal(
      (await currentPolicy('a.example', resolver, fetch, cache, t0 + 3000))?.mode,
      'testing',
      'the record gone: the cache holds',
    );
    assert.equal(
      await currentPolicy('a.example', resolver, fetch, cache, t0 + 3_603_000),
      null,
      'until it expires',
    );
    txt['_mta-sts.a.example'] = [['v=STSv1; id=three']];
    body = null;
    assert.equal(
      await currentPolicy('a.example', resolver, fetch, cache, t0 + 3_700_000),
      null,
      'no policy to be had: none',
    );
    // Two STSv1 records are no record (§3.1).
    txt['_mta-sts.b.example'] = [['v=STSv1; id=x'], ['v=STSv1; id=y']];
    body = policyText('enforce');
    assert.equal(await currentPolicy('b.example', resolver, fetch, memoryPolicyCache(), t0), null);
  });
});

describe('MTA-STS: outbound delivery against real servers on loopback', () => {
  let good: RemoteServer;
  let wrongName: RemoteServer;
  let policyHost: Server;
  let untrustedPolicyHost: Server;
  const policies: Record<string, string> = {};
  let ca = '';
  let out: OutboundDelivery;
  const ports: Record<string, number> = {};

  before(async () => {
    const mxGood = await generateSelfSigned('mx.good.example');
    const mxOther = await generateSelfSigned('somebody-else.example');
    const stsDomains = ['good.example', 'mismatch.example', 'notlisted.example', 'testing.example'];
    const policyCerts = new Map<string, { key: string; cert: string }>();
    for (const d of stsDomains) policyCerts.set(`mta-sts.${d}`, await generateSelfSigned(`mta-sts.${d}`));
    ca = [mxGood.cert, mxOther.cert, ...[...policyCerts.values()].map((c) => c.cert)].join('\n');
    good = await remoteServer({ key: mxGood.key, cert: mxGood.cert });
    wrongName = await remoteServer({ key: mxOther.key, cert: mxOther.cert });
    const serve = (s: Server) => {
      s.listen(0, '127.0.0.1');
      return once(s, 'listening');
    };
    const { createSecureContext } = await import('node:tls');
    const first = policyCerts.get('mta-sts.good.example')!;
    policyHost = createServer(
      {
        key: first.key,
        cert: first.cert,
        // Each mta-sts name with its own certificate.
        SNICallback: (name, cb) => {
          const c = policyCerts.get(name);
          cb(null, c ? createSecureContext(c) : undefined);
        },
      },
      (req, res) => {
        const domain = String(req.headers.host)
          .replace(/^mta-sts\./, '')
          .replace(/:\d+$/, '');
        const text = req.url === '/.well-known/mta-sts.txt' ? policies[domain] : undefined;
        if (!text) return res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'text/plain' }).end(text);
      },
    );
    await serve(policyHost);
    // Same answers, but with a certificate nobody trusts.
    const untrusted = await generateSelfSigned('mta-sts.untrusted.example');
    untrustedPolicyHost = createServer({ key: untrusted.key, cert: untrusted.cert }, (_req, res) =>
      res
        .writeHead(200, { 'content-type': 'text/plain' })
        .end('version: STSv1\nmode: enforce\nmx: nothing.example\nmax_age: 600\n'),
    );
    await serve(untrustedPolicyHost);
    ports.policy = (policyHost.address() as AddressInfo).port;
    ports.untrusted = (untrustedPolicyHost.address() as AddressInfo).port;

    const enforce = (mx: string) => `version: STSv1\nmode: enforce\nmx: ${mx}\nmax_age: 86400\n`;
    policies['good.example'] = enforce('mx.good.example');
    policies['mismatch.example'] = enforce('mx.mismatch.example');
    policies['notlisted.example'] = enforce('*.elsewhere.example');
    policies['testing.example'] = 'version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 86400\n';
    const domains = [
      'good.example',
      'mismatch.example',
      'notlisted.example',
      'testing.example',
      'untrusted.example',
    ];
    const resolver = tableResolver({
      mx: Object.fromEntries(domains.map((d) => [d, [{ exchange: `mx.${d}`, priority: 10 }]])),
      a: Object.fromEntries(domains.map((d, i) => [`mx.${d}`, [`192.0.2.${i + 1}`]])),
      txt: Object.fromEntries(domains.map((d) => [`_mta-sts.${d}`, [['v=STSv1; id=1']]])),
    });
    // The MX of good.example presents its own name; every other MX presents somebody else's certificate.
    const smtpPort = (address: string) => (address === '192.0.2.1' ? good.port : wrongName.port);
    const lookup: LookupFunction = (_host, options, cb) => {
      if ((options as { all?: boolean }).all)
        (cb as unknown as (e: null, a: unknown[]) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
      else cb(null, '127.0.0.1', 4);
    };
    const fetchGood = httpsPolicyFetcher({ lookup, port: ports.policy, ca });
    const fetchUntrusted = httpsPolicyFetcher({ lookup, port: ports.untrusted, ca });
    out = new OutboundDelivery({
      hostname: 'mail.example.org',
      resolver,
      dialer: dialByAddress(smtpPort),
      mtaSts: { fetch: (d) => (d === 'untrusted.example' ? fetchUntrusted(d) : fetchGood(d)) },
      tlsCa: ca,
      idleMs: 200,
    });
  });
  after(async () => {
    out.close();
    await good.close();
    await wrongName.close();
    policyHost.close();
    untrustedPolicyHost.close();
  });

  it('delivers over verified TLS to an MX the enforce policy names whose certificate matches', () =>
    deliverOne(out, 'good.example', good, { secure: true }));

  it('defers, and sends nothing, when the MX of an enforce policy presents a certificate for another name', () =>
    deliverOne(out, 'mismatch.example', wrongName, {
      deferred: /^451 4\.7\.5 .*MTA-STS policy \(enforce\)/,
    }));

  it('defers when the enforce policy names none of the MX hosts', () =>
    deliverOne(out, 'notlisted.example', wrongName, { deferred: /names none of its MX hosts/ }));

  it('delivers under a testing policy as before (TLS when offered, the certificate not required to match)', () =>
    deliverOne(out, 'testing.example', wrongName));

  it('takes no policy from a policy host whose certificate is not valid, and delivers as without one', () =>
    deliverOne(out, 'untrusted.example', wrongName));
});
