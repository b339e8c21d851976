/**
 * CAPABILITY (RFC 3501 §6.1.1), NOOP, LOGOUT and ID (RFC 2971).
 * Capabilities are what works in the current state: STARTTLS only before
 * TLS and sign-in, AUTH= mechanisms only where a password may be sent,
 * COMPRESS only until it is active; nothing non-standard.
 */
import { bad } from '../errors.ts';
import { utf8 } from '../protocol/cursor.ts';
import { str } from '../protocol/encode.ts';
import type { Session } from '../session.ts';
import { ANY, type Command } from './types.ts';

export function capabilities(s: Session): string[] {
  const caps = ['IMAP4rev1', 'IMAP4rev2', 'SASL-IR', 'LITERAL+', 'ID', 'ENABLE', 'IDLE'];
  if (s.state.kind === 'not-authenticated') {
    if (!s.secure) caps.push('STARTTLS');
    // RFC 3501 §6.2.3 and RFC 8314: no password in the clear unless the admin allows it.
    if (s.secure || s.ctx.allowPlaintext) caps.push('AUTH=PLAIN', 'AUTH=LOGIN');
    else caps.push('LOGINDISABLED');
    return caps;
  }
  caps.push(
    'NAMESPACE',
    'UNSELECT',
    'UIDPLUS',
    'MOVE',
    'CONDSTORE',
    'SPECIAL-USE',
    'CHILDREN',
    'QUOTA',
    'QUOTA=RES-STORAGE',
    `APPENDLIMIT=${s.ctx.maxMessageSize}`,
  );
  if (!s.compressed) caps.push('COMPRESS=DEFLATE');
  caps.push('STATUS=SIZE', 'UTF8=ACCEPT', 'ESEARCH', 'SEARCHRES', 'WITHIN', 'LIST-EXTENDED', 'LIST-STATUS');
  caps.push('SORT', 'SORT=DISPLAY', 'ESORT', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES', 'MULTIAPPEND');
  caps.push('CONTEXT=SEARCH', 'CONTEXT=SORT', 'CATENATE', 'NOTIFY');
  caps.push(
    'CREATE-SPECIAL-USE',
    'QRESYNC',
    'BINARY',
    'OBJECTID',
    'UNAUTHENTICATE',
    'PREVIEW',
    'PARTIAL',
    'SAVEDATE',
  );
  return caps;
}

export const capabilityLine = (s: Session): string => capabilities(s).join(' ');

export const CAPABILITY: Command = {
  states: ANY,
  async run(s, c) {
    c.end();
    s.untagged(`CAPABILITY ${capabilityLine(s)}`);
    return 'CAPABILITY completed';
  },
};

export const NOOP: Command = {
  states: ANY,
  async run(s, c) {
    c.end();
    // RFC 3501 §6.1.2: the chance for pending updates; the command ends with them. Not under a NOTIFY
    // that asks for no message events of the selected mailbox (RFC 5465 §3.1: SELECTED NONE).
    if (s.state.kind === 'selected' && (!s.notify || s.notify.spec.selected)) s.state.mailbox.dirty = true;
    return 'NOOP completed';
  },
};

export const LOGOUT: Command = {
  states: ANY,
  async run(s, c) {
    c.end();
    s.untagged('BYE Logging out');
    s.state = { kind: 'logout' };
    return 'LOGOUT completed';
  },
};

/** RFC 2971 §3.3: at most 30 pairs, field names up to 30 octets, values up to 1024. */
export const ID: Command = {
  states: ANY,
  async run(s, c) {
    const client: Record<string, string | null> = {};
    if (c.peek() === '(') {
      let n = 0;
      let key: string | null = null;
      c.list(() => {
        const v = c.nstring();
        if (key === null) {
          if (v === null || v.length > 30) throw bad('Invalid ID field name');
          key = utf8(v);
        } else {
          if (v !== null && v.length > 1024) throw bad('ID value too long');
          if (++n > 30) throw bad('Too many ID fields');
          client[key] = v === null ? null : utf8(v);
          key = null;
        }
      });
      if (key !== null) throw bad('ID field without a value');
    } else if (c.word() !== 'NIL') throw bad('Expected a list or NIL');
    c.end();
    if (Object.keys(client).length) s.ctx.log('info', 'imap client id', { ...s.fields(), id: client });
    s.untagged(`ID (${['name', 'Mailwerk', 'vendor', 'Mailwerk'].map((x) => str(x)).join(' ')})`);
    return 'ID completed';
  },
};
