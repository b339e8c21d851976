/**
 * STARTTLS (RFC 3501 §6.2.1), LOGIN (§6.2.3) and AUTHENTICATE (§6.2.2) with
 * PLAIN (RFC 4616) and LOGIN, and an initial response (SASL-IR, RFC 4959).
 * A password is taken only over TLS unless the admin allows otherwise; failed
 * sign-ins are throttled per address and account (one count shared with
 * submission and POP3) and logged with the user name and client address.
 */
import { checkLogin } from '@mailwerk/auth';
import { normalizeAddress } from '@mailwerk/store';
import { bad, ImapByeError, no } from '../errors.ts';
import { utf8 } from '../protocol/cursor.ts';
import type { Session } from '../session.ts';
import { capabilityLine } from './capability.ts';
import type { Command } from './types.ts';

/** Failed sign-ins on one connection before it is closed (the throttle slows each of them as well). */
const MAX_FAILURES = 10;

function requirePrivacy(s: Session): void {
  if (!s.secure && !s.ctx.allowPlaintext)
    throw no('PRIVACYREQUIRED', 'Passwords are not taken over an unencrypted connection: use STARTTLS first');
}

async function login(s: Session, username: string, password: string): Promise<string> {
  const store = s.ctx.store;
  const v = await checkLogin({
    throttle: s.ctx.throttle,
    service: 'imap',
    session: s.id,
    ip: s.remoteAddress,
    user: username,
    password,
    find: (u) => store.getAccountByAddress(normalizeAddress(u)),
    rehash: async (a, passwordHash) => void (await store.updateAccount(a.id, { passwordHash })),
  });
  if (v.ok) {
    s.signedIn({ id: v.account.id, address: v.account.address });
    s.ctx.log('info', 'imap login', s.fields());
    return `[CAPABILITY ${capabilityLine(s)}] Logged in`;
  }
  if (++s.authFailures >= MAX_FAILURES) throw new ImapByeError('Too many failed sign-ins');
  if (v.reason === 'blocked')
    throw no('UNAVAILABLE', 'Too many failed logins from your address; try again later');
  throw no('AUTHENTICATIONFAILED', 'Authentication failed');
}

export const STARTTLS: Command = {
  states: ['not-authenticated'],
  async run(s, c, { tag }) {
    c.end();
    if (s.secure) throw bad('TLS is active already');
    s.write(`${tag} OK Begin TLS negotiation now\r\n`);
    await s.flush();
    await s.startTls(s.ctx.secureContext);
    return null;
  },
};

export const LOGIN: Command = {
  states: ['not-authenticated'],
  async run(s, c) {
    const username = utf8(c.astring());
    c.space();
    const password = utf8(c.astring());
    c.end();
    requirePrivacy(s);
    return login(s, username, password);
  },
};

function decodeBase64(line: string): string {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line) || line.length % 4 !== 0) throw bad('Invalid base64');
  return Buffer.from(line, 'base64').toString('utf8');
}

export const AUTHENTICATE: Command = {
  states: ['not-authenticated'],
  async run(s, c) {
    const mechanism = c.word();
    let initial: string | null = null;
    if (c.take(' ')) initial = c.atom('=');
    c.end();
    if (mechanism !== 'PLAIN' && mechanism !== 'LOGIN')
      throw no('CANNOT', 'Unsupported mechanism; use PLAIN or LOGIN');
    requirePrivacy(s);
    /** A client response: the initial one (SASL-IR, `=` for empty) or the next line; `*` cancels (RFC 3501 §6.2.2). */
    const response = async (prompt: string): Promise<string> => {
      let line: string | null;
      if (initial !== null) {
        line = initial === '=' ? '' : initial;
        initial = null;
      } else {
        await s.continueRequest(prompt);
        line = await s.readLine();
        if (line === null) throw new ImapByeError('Connection closed');
      }
      if (line === '*') throw bad('Authentication cancelled');
      return decodeBase64(line);
    };
    if (mechanism === 'PLAIN') {
      const [authzid, authcid, password, ...rest] = (await response('')).split('\0');
      if (authcid === undefined || password === undefined || rest.length) throw bad('Invalid PLAIN response');
      // No proxy authorisation: the identity to act as must be the one signing in.
      if (authzid && authzid !== authcid)
        throw no('AUTHORIZATIONFAILED', 'Signing in as another user is not supported');
      return login(s, authcid, password);
    }
    const username = await response(Buffer.from('Username:').toString('base64'));
    const password = await response(Buffer.from('Password:').toString('base64'));
    return login(s, username, password);
  },
};
