/** ENABLE (RFC 5161), NAMESPACE (RFC 2342), COMPRESS (RFC 4978) and IDLE (RFC 2177). */
import { bad, no } from '../errors.ts';
import { AUTHENTICATED, type Command } from './types.ts';

export const ENABLE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const enabled: string[] = [];
    const want = [c.word('=')];
    while (c.take(' ')) want.push(c.word('='));
    c.end();
    for (const w of want) {
      if (w === 'CONDSTORE' && !s.condstore) {
        s.condstore = true;
        enabled.push(w);
      } else if (w === 'IMAP4REV2' && !s.rev2) {
        // RFC 9051 §6.3.1: the rev2 behaviour from here on (before SELECT, as ENABLE asks).
        s.rev2 = true;
        enabled.push('IMAP4rev2');
      } else if (w === 'QRESYNC' && !s.qresync) {
        // RFC 7162 §3.2.3: QRESYNC turns CONDSTORE on with it.
        s.qresync = true;
        s.condstore = true;
        enabled.push(w);
      } else if (w === 'UTF8=ACCEPT' && !s.utf8) {
        // RFC 6855 §3: before a mailbox is selected, so names are never seen in both encodings.
        if (s.state.kind === 'selected') throw bad('ENABLE UTF8=ACCEPT before SELECT');
        s.utf8 = true;
        enabled.push(w);
      }
    }
    s.untagged(`ENABLED${enabled.map((e) => ` ${e}`).join('')}`);
    return 'ENABLE completed';
  },
};

/** UNAUTHENTICATE (RFC 8437): sign out and stay connected, to sign in again (as another user, say). */
export const UNAUTHENTICATE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    c.end();
    s.signedOut();
    return 'UNAUTHENTICATE completed';
  },
};

export const NAMESPACE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    c.end();
    // One personal namespace with "/" between levels; no shared or other users' folders.
    s.untagged('NAMESPACE (("" "/")) NIL NIL');
    return 'NAMESPACE completed';
  },
};

export const COMPRESS: Command = {
  states: AUTHENTICATED,
  async run(s, c, { tag }) {
    const mechanism = c.word();
    c.end();
    if (mechanism !== 'DEFLATE') throw bad('Only DEFLATE is supported');
    if (s.compressed) throw no('COMPRESSIONACTIVE', 'Compression is active already');
    s.write(`${tag} OK DEFLATE active\r\n`);
    await s.flush();
    s.startCompression();
    return null;
  },
};

export const IDLE: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    c.end();
    await s.continueRequest('idling');
    const done = await s.idle();
    if (s.state.kind === 'logout') return null;
    if (!done) throw bad('Expected DONE');
    return 'IDLE terminated';
  },
};
