/** ENABLE (RFC 5161), NAMESPACE (RFC 2342), COMPRESS (RFC 4978) and IDLE (RFC 2177). */
import { bad, no } from '../errors.ts';
import { NotifySpec, readNotify } from '../notify.ts';
import { NotifyState } from '../notify-session.ts';
import { AUTHENTICATED, type Command } from './types.ts';
import { decodeName, user, validName } from './util.ts';

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

/**
 * NOTIFY (RFC 5465): which events of which mailboxes the client is told of, from now on without asking
 * (notify.ts, notify-session.ts). SET replaces what was asked before; NONE asks for nothing.
 */
export const NOTIFY: Command = {
  states: AUTHENTICATED,
  async run(s, c) {
    const req = readNotify(c);
    // §6.5, §6.6: names that are not mailboxes (or do not decode) are kept out, not refused.
    const groups = req.groups.map((g) => ({
      ...g,
      decoded: g.names.flatMap((n) => {
        const name = validName(decodeName(s, n));
        return name === null ? [] : [name];
      }),
    }));
    const state = new NotifyState(new NotifySpec(groups));
    const boxes = await state.start(s, user(s).id);
    s.notify = state;
    const sel = s.state.kind === 'selected' ? s.state.mailbox : null;
    // §3.1: with STATUS, the present state of every other mailbox whose message events are asked for.
    if (req.status)
      for (const mb of boxes)
        if (mb.id !== sel?.mailbox.id && state.spec.wants(mb, 'MessageNew', false)) await state.status(s, mb);
    // §3.1: a NOTIFY SET is also a NOOP for the selected mailbox: what accumulated is told now.
    if (sel && req.groups.length) sel.dirty = true;
    return 'NOTIFY completed';
  },
};
