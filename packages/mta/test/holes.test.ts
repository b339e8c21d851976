// The MX against protocol tricks, with a raw client that writes exactly the bytes of each case:
// line endings (RFC 5321 §2.3.8), UTF-8 addresses (RFC 6531 §3.4), a body sent before the 354,
// sender local parts (RFC 5321 §4.5.3.1.1), dot-stuffing (§4.5.2) and SMTP smuggling.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, RawClient, type Rig, rig } from './harness.ts';

describe('MX: protocol holes', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  const open = async () => {
    const c = await RawClient.open(r.smtpPort);
    assert.match(await c.cmd('EHLO client.example'), /^250/);
    return c;
  };

  it('answers a bare LF ending a command 521 5.5.2 and closes', async () => {
    const c = await RawClient.open(r.smtpPort);
    c.write('EHLO client.example\n');
    assert.match(await c.read(), /^521 5\.5\.2 /);
    await c.closedByServer();
  });

  it('answers a bare CR inside a command 521 5.5.2, instead of cutting the command there', async () => {
    const c = await open();
    c.write('MAIL FROM:<a@ext.org>\rRCPT TO:<bob@example.org>\r\n');
    assert.match(await c.read(), /^521 5\.5\.2 /);
    await c.closedByServer();
  });

  it('refuses a UTF-8 sender without SMTPUTF8, and bytes that are not UTF-8 with it, 553 5.6.7', async () => {
    const c = await open();
    c.write(Buffer.from('MAIL FROM:<jörg@ext.org>\r\n').toString('latin1'));
    assert.match(await c.read(), /^553 5\.6\.7 /);
    c.write(Buffer.from('MAIL FROM:<jörg@ext.org> SMTPUTF8\r\n').toString('latin1'));
    assert.match(await c.read(), /^250 /);
    assert.match(await c.cmd('RSET'), /^250/);
    c.write('MAIL FROM:<j\xffrg@ext.org> SMTPUTF8\r\n');
    assert.match(await c.read(), /^553 5\.6\.7 /);
    assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
    c.write(Buffer.from('RCPT TO:<bøb@example.org>\r\n').toString('latin1'));
    assert.match(await c.read(), /^553 5\.6\.7 /);
    c.close();
  });

  it('refuses a message sent right behind DATA, in a write of its own, before the 354', async () => {
    const c = await open();
    assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^250/);
    const before = (await r.inbox('bob@example.org')).length;
    // No Nagle: the body goes out as a segment of its own at once, as a client that does not wait sends it.
    c.socket.setNoDelay(true);
    c.write('DATA\r\n');
    await new Promise((r) => setImmediate(r));
    c.write('Subject: early\r\n\r\ntoo early\r\n.\r\n');
    assert.match(await c.read(), /^554 5\.5\.0 protocol violation: message data was sent before the 354/);
    await c.closedByServer();
    assert.equal((await r.inbox('bob@example.org')).length, before);
  });

  it('refuses sender local parts longer than 64 octets or holding shell and path tricks, 553 5.1.7', async () => {
    const c = await open();
    for (const sender of [
      `${'a'.repeat(1000)}@ext.org`,
      '$(id)@ext.org',
      'a`id`b@ext.org',
      '../../etc@ext.org',
      'a|b@ext.org',
    ]) {
      assert.match(await c.cmd(`MAIL FROM:<${sender}>`), /^553 5\.1\.7 /, sender.slice(0, 20));
    }
    assert.match(await c.cmd(`MAIL FROM:<${'a'.repeat(64)}@ext.org>`), /^250 /);
    c.close();
  });

  it('removes the leading dot of every line that has one (RFC 5321 §4.5.2), and stores "..\\r\\r\\n" as content', async () => {
    const c = await open();
    assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<carl@example.org>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Subject: dots\r\n\r\n..stuffed\r\n.not stuffed\r\n..\r\r\nend\r\n.\r\n');
    assert.match(await c.read(), /^250 /);
    c.close();
    const msg = await eventually(async () =>
      (await r.inbox('carl@example.org')).find((m) => m.includes('Subject: dots')),
    );
    assert.ok(
      msg.toString('latin1').endsWith('\r\n\r\n.stuffed\r\nnot stuffed\r\n.\r\r\nend\r\n'),
      JSON.stringify(msg.toString('latin1')),
    );
  });

  it('refuses a "." line with a bare LF (SMTP smuggling), and does not end the data there', async () => {
    const c = await open();
    assert.match(await c.cmd('MAIL FROM:<a@ext.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob@example.org>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Subject: smuggle\r\n\r\nfirst\n.\r\nMAIL FROM:<evil@ext.org>\r\n.\r\n');
    assert.match(await c.read(), /^554 5\.6\.0 message refused: a "\." line with a bare CR or LF/);
    // The smuggled MAIL was message text, never a command: the session is still in its first transaction's end.
    assert.match(await c.cmd('NOOP'), /^250/);
    c.close();
  });
});
