// SPF, DKIM, DMARC on the MX: mailauth with the DNS answered from a table on loopback (no query leaves
// the host), mail sent by nodemailer over loopback, the verdicts seen in the mailbox.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import nodemailer from 'nodemailer';
import { generateDkimKey } from '../src/index.ts';
import { eventually, type Rig, rig } from './harness.ts';

const dnsError = (code: string) => Object.assign(new Error(code), { code });

describe('inbound authentication (SPF, DKIM, DMARC)', () => {
  let r: Rig;
  const key = generateDkimKey('ed25519');
  // The senders' DNS: 127.0.0.1 is allowed to send for good.example and rejecting.example's
  // SPF names another host; rejecting.example and quarantining.example publish strict DMARC.
  const txt: Record<string, string[]> = {
    'good.example': ['v=spf1 ip4:127.0.0.1 -all'],
    '_dmarc.good.example': ['v=DMARC1; p=reject'],
    'sel._domainkey.good.example': [`v=DKIM1; k=ed25519; p=${key.publicKey}`],
    'rejecting.example': ['v=spf1 ip4:192.0.2.99 -all'],
    '_dmarc.rejecting.example': ['v=DMARC1; p=reject'],
    'quarantining.example': ['v=spf1 ip4:192.0.2.99 -all'],
    '_dmarc.quarantining.example': ['v=DMARC1; p=quarantine'],
  };
  const queried: string[] = [];
  const resolver = async (name: string, rrtype: string) => {
    queried.push(`${rrtype} ${name}`);
    if (rrtype === 'TXT' && txt[name]) return txt[name]!.map((t) => [t]);
    throw dnsError('ENOTFOUND');
  };

  before(async () => {
    r = await rig({}, {}, { authentication: { hostname: 'mx.test.example', resolver } });
  });
  after(() => r.close());

  const send = async (from: string, subject: string, raw?: Buffer) => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, ignoreTLS: true });
    try {
      return await t.sendMail({
        envelope: { from, to: ['bob@example.org'] },
        raw: raw ?? `From: ${from}\r\nTo: bob@example.org\r\nSubject: ${subject}\r\n\r\nHello.\r\n`,
      });
    } finally {
      t.close();
    }
  };
  const find = async (subject: string, mailbox = 'INBOX') =>
    eventually(async () =>
      (await r.inbox('bob@example.org', mailbox))
        .map((b) => b.toString())
        .find((t) => t.includes(`Subject: ${subject}`)),
    );

  it('adds Authentication-Results with our authserv-id: SPF, DKIM and DMARC pass for an aligned, signed message', async () => {
    const body = Buffer.from(
      'From: ann@good.example\r\nTo: bob@example.org\r\nSubject: signed\r\n\r\nHello.\r\n',
    );
    const sig = await dkimSign(body, {
      signingDomain: 'good.example',
      selector: 'sel',
      privateKey: key.privateKey,
      signatureData: [{ signingDomain: 'good.example', selector: 'sel', privateKey: key.privateKey }],
    });
    assert.match(sig.signatures, /^DKIM-Signature: /);
    await send('ann@good.example', 'signed', Buffer.concat([Buffer.from(sig.signatures), body]));
    const got = await find('signed');
    assert.match(got, /Authentication-Results: mx\.test\.example;/);
    assert.match(got, /spf=pass/);
    assert.match(got, /dkim=pass/);
    assert.match(got, /dmarc=pass/);
    assert.ok(queried.includes('TXT good.example'));
  });

  it('refuses mail that fails DMARC with p=reject: 550 5.7.1', async () => {
    await assert.rejects(send('ceo@rejecting.example', 'spoofed'), (err: { response?: string }) => {
      assert.match(
        err.response ?? '',
        /^550 5\.7\.1 message rejected by the sender domain's DMARC policy: .*dmarc=fail \(p=reject\)/,
      );
      return true;
    });
  });

  it('files mail that fails DMARC p=reject into Junk instead when the admin asks for that', async () => {
    const junk = await rig(
      {},
      {},
      { authentication: { hostname: 'mx.test.example', resolver, dmarcReject: 'junk' } },
    );
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: junk.smtpPort, ignoreTLS: true });
      const info = await t.sendMail({
        envelope: { from: 'ceo@rejecting.example', to: ['bob@example.org'] },
        raw: 'From: ceo@rejecting.example\r\nTo: bob@example.org\r\nSubject: spoofed but kept\r\n\r\nHello.\r\n',
      });
      t.close();
      assert.match(info.response, /^250 /);
      const got = await eventually(async () =>
        (await junk.inbox('bob@example.org', 'Junk'))
          .map((b) => b.toString())
          .find((x) => x.includes('spoofed but kept')),
      );
      assert.match(got, /X-Spam-Reason: DMARC policy of the sender domain: .*dmarc=fail \(p=reject\)/);
    } finally {
      await junk.close();
    }
  });

  it('files mail that fails DMARC with p=quarantine into Junk', async () => {
    await send('news@quarantining.example', 'quarantined');
    const got = await find('quarantined', 'Junk');
    assert.match(got, /X-Spam: Yes/);
    assert.match(got, /dmarc=fail/);
    assert.ok(!(await r.inbox('bob@example.org')).some((b) => b.toString().includes('Subject: quarantined')));
  });

  it('removes an Authentication-Results field forged in our name, keeps others, and drops outside X-Spam fields', async () => {
    const forged = Buffer.from(
      'Authentication-Results: mx.test.example; dkim=pass header.d=bank.example\r\nAuthentication-Results: other.example; spf=pass\r\nX-Spam: No\r\nFrom: ann@good.example\r\nTo: bob@example.org\r\nSubject: forged\r\n\r\nHello.\r\n',
    );
    await send('ann@good.example', 'forged', forged);
    const got = await find('forged');
    assert.doesNotMatch(got, /header\.d=bank\.example/);
    assert.match(got, /Authentication-Results: other\.example; spf=pass/);
    assert.doesNotMatch(got, /X-Spam: No/);
    assert.equal(got.match(/Authentication-Results: mx\.test\.example/g)?.length, 1);
  });
});
