// Our LMTP boundary with the incumbents on either side, as DESIGN.md promises admins can swap them:
// Postfix in front of our MDA, and our MTA in front of Dovecot's LMTP server. Real private
// instances on loopback (see peers.ts); in CI they must run, elsewhere a machine without them skips.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, RawClient, type Rig, rig } from './harness.ts';
import {
  type DovecotLmtp,
  type PostfixFront,
  peersMissing,
  startDovecotLmtp,
  startPostfix,
} from './peers.ts';

const missing = peersMissing();
if (missing && process.env.CI) throw new Error(`the peer tests must run in CI: ${missing}`);

/** Sends one message over SMTP with exactly these envelope lines; returns the RCPT reply. */
async function smtp(
  port: number,
  mailFrom: string,
  rcpt: string,
  subject: string,
  body = 'hello\r\n',
): Promise<string> {
  const c = await RawClient.open(port);
  try {
    assert.match(await c.cmd('EHLO client.example'), /^250/);
    // The raw client writes latin1: UTF-8 goes as its bytes.
    assert.match(await c.cmd(Buffer.from(`MAIL FROM:${mailFrom}`).toString('latin1')), /^250/);
    const answer = await c.cmd(`RCPT TO:<${rcpt}>`);
    if (!answer.startsWith('250')) return answer;
    assert.match(await c.cmd('DATA'), /^354/);
    c.write(Buffer.from(`From: a@ext.org\r\nSubject: ${subject}\r\n\r\n${body}.\r\n`).toString('latin1'));
    assert.match(await c.read(), /^250/);
    return answer;
  } finally {
    c.close();
  }
}

describe('Postfix in front of our MDA', { skip: missing ?? false }, () => {
  let r: Rig;
  let front: PostfixFront;
  before(async () => {
    r = await rig();
    await r.store.addAlias({
      address: 'fwd@example.org',
      targets: ['carl@example.org', 'out@elsewhere.net'],
    });
    front = await startPostfix({ domain: 'example.org', lmtpPort: r.lmtpPort });
  });
  after(async () => {
    await front?.stop();
    await r?.close();
  });

  const subjects = async (who: string) =>
    (await r.inbox(who)).map((m) => /Subject: ([^\r\n]*)/.exec(m.toString())?.[1] ?? '');

  it('stores two different messages that carry the same client ENVID, ours in form or not', async () => {
    for (const envid of ['mailwerk.abc123', `mailwerk.abc123.${'A'.repeat(22)}`]) {
      await smtp(front.port, `<a@ext.org> ENVID=${envid}`, 'bob@example.org', `first ${envid}`);
      await smtp(front.port, `<a@ext.org> ENVID=${envid}`, 'bob@example.org', `second ${envid}`);
      await eventually(async () => {
        const s = await subjects('bob@example.org');
        return s.includes(`first ${envid}`) && s.includes(`second ${envid}`);
      }, 20_000);
    }
    // Postfix did pass the ENVID on (our MDA offers DSN), so the MDA really saw it and did not take it as a key.
    assert.match(front.log(), /status=sent \(250 2\.0\.0 <bob@example\.org> delivered\)/);
  });

  it('gets a forward refused at RCPT (Postfix bounces it), never stranded in our queue', async () => {
    await smtp(front.port, '<a@ext.org>', 'fwd@example.org', 'forward behind postfix');
    const line = await eventually(
      async () => front.log().match(/to=<fwd@example\.org>.*status=bounced[^\n]*/)?.[0],
      20_000,
    );
    assert.match(line, /550 5\.3\.5 <fwd@example\.org> forwards to addresses outside/);
    assert.deepEqual(await r.store.listQueue(), []);
    assert.ok(!(await subjects('carl@example.org')).includes('forward behind postfix'));
  });
});

describe("Our MTA in front of Dovecot's LMTP", { skip: missing ?? false }, () => {
  let r: Rig;
  let dovecot: DovecotLmtp;
  before(async () => {
    dovecot = await startDovecotLmtp();
    r = await rig({}, { lmtp: `127.0.0.1:${dovecot.port}` });
  });
  after(async () => {
    await r?.close();
    await dovecot?.stop();
  });

  it("delivers with dots as sent (stuffed on the way, unstuffed by Dovecot) and logs Dovecot's own reply", async () => {
    // On the wire to us: "..x" is ".x" and ".." is "."; we stuff them again toward Dovecot.
    await smtp(r.smtpPort, '<a@ext.org>', 'bob@example.org', 'to dovecot', 'a\r\n..x\r\n..\r\nb\r\n');
    const [msg] = await eventually(async () => {
      const m = dovecot.messages('bob@example.org');
      return m.length ? m : null;
    });
    // Dovecot's Maildir keeps LF line ends.
    assert.match(msg!.toString(), /Subject: to dovecot\r?\n\r?\na\r?\n\.x\r?\n\.\r?\nb\r?\n$/);
    const reply = await eventually(async () => r.attempts.find((a) => a.includes('bob@example.org')));
    // Dovecot's wording, not one we made up.
    assert.match(reply, /^250 2\.0\.0 <bob@example\.org> .*Saved/);
  });

  it('refuses a non-ASCII sender toward an LMTP server without SMTPUTF8 (553 5.6.7), never turned into <>', async () => {
    await smtp(r.smtpPort, '<jörg@ext.org> SMTPUTF8', 'ann@example.org', 'utf8 sender');
    const reply = await eventually(async () => r.attempts.find((a) => a.includes('SMTPUTF8')));
    assert.match(reply, /^553 5\.6\.7 /);
    assert.equal(dovecot.messages('ann@example.org').length, 0);
  });
});
