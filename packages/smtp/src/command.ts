/**
 * The arguments of MAIL FROM and RCPT TO (RFC 5321 §4.1.1.2, §4.1.1.3, §4.1.2)
 * and their ESMTP parameters (SIZE RFC 1870, BODY RFC 6152, SMTPUTF8
 * RFC 6531, RET/ENVID/NOTIFY/ORCPT RFC 3461, AUTH RFC 4954 §5).
 *
 * One pass over the line, no backtracking: the path between angle brackets
 * (quoted local parts may hold spaces, `>` and escaped quotes), then
 * space-separated `KEY[=VALUE]` pairs. What is wrong gets the reply RFC 5321
 * and RFC 3463 name: a bad path 501 (x.1.7 sender, x.1.3 recipient), a
 * parameter this server does not know 555 5.5.4 (§4.1.1.11), a bad value 501
 * 5.5.4. The address is returned as it was written, apart from a source route
 * (`@a,@b:`), which §4.1.2 says to accept and ignore; what the address may be
 * is the hooks' business.
 */
import { reply, type SmtpError } from './reply.ts';

export type SmtpParams = Record<string, string | true>;

export interface SmtpAddress {
  address: string;
  /** ESMTP parameters by upper-case name; ENVID and ORCPT are xtext-decoded (RFC 3461 §4). */
  params: SmtpParams;
}

const MAIL_PARAMS = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID', 'AUTH']);
const RCPT_PARAMS = new Set(['NOTIFY', 'ORCPT']);
/** Parameters that are a flag: a value is an error. */
const FLAGS = new Set(['SMTPUTF8']);
const NOTIFY = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);
const CONTROL = /[\u0000-\u001f\u007f]/;
const SOURCE_ROUTE = /^@[^,:@\s]+(?:,@[^,:@\s]+)*:/;

/** RFC 3461 §4: "+XX" is the byte XX; a "+" without two hex digits after it is an error (null). */
export function decodeXtext(value: string): string | null {
  if (!value.includes('+')) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c !== '+') {
      out += c;
      continue;
    }
    const hex = value.slice(i + 1, i + 3);
    if (!/^[0-9A-F]{2}$/i.test(hex)) return null;
    out += String.fromCharCode(Number.parseInt(hex, 16));
    i += 2;
  }
  return out;
}

/**
 * Parses what follows the verb of MAIL or RCPT (`FROM:<a@b> SIZE=10`). The result is the address and
 * its parameters, or the reply that refuses the command.
 */
export function parsePath(kind: 'MAIL' | 'RCPT', arg: string): SmtpAddress | SmtpError {
  const word = kind === 'MAIL' ? 'FROM' : 'TO';
  // Made when needed: an Error takes its stack when created (~15 µs, measured in the MX's profile).
  const bad = () =>
    kind === 'MAIL'
      ? reply(501, '5.1.7', 'bad sender address syntax')
      : reply(501, '5.1.3', 'bad recipient address syntax');
  let i = 0;
  while (arg[i] === ' ') i++;
  if (arg.slice(i, i + word.length).toUpperCase() !== word)
    return reply(501, '5.5.4', `syntax: ${kind} ${word}:<address>`);
  i += word.length;
  while (arg[i] === ' ') i++;
  if (arg[i] !== ':') return reply(501, '5.5.4', `syntax: ${kind} ${word}:<address>`);
  i++;
  while (arg[i] === ' ') i++;
  let address: string;
  if (arg[i] === '<') {
    // Up to the closing bracket, which a quoted string (with its escapes) may not end.
    let j = i + 1;
    let quoted = false;
    for (; j < arg.length; j++) {
      const c = arg[j];
      if (quoted) {
        if (c === '\\') j++;
        else if (c === '"') quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === '>') break;
      else if (c === '<' || c === ' ') return bad();
    }
    if (j >= arg.length) return bad();
    address = arg.slice(i + 1, j);
    i = j + 1;
    if (i < arg.length && arg[i] !== ' ') return bad();
  } else {
    // Without brackets (not RFC 5321, but sent by old clients; Postfix takes it too): up to a space.
    const j = arg.indexOf(' ', i);
    address = arg.slice(i, j === -1 ? arg.length : j);
    i = j === -1 ? arg.length : j;
    if (!address || address.includes('<') || address.includes('>')) return bad();
  }
  if (CONTROL.test(address)) return bad();
  address = address.replace(SOURCE_ROUTE, '');
  if (kind === 'RCPT' && !address) return bad();
  const params: SmtpParams = {};
  const allowed = kind === 'MAIL' ? MAIL_PARAMS : RCPT_PARAMS;
  for (const part of arg.slice(i).split(' ')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const key = (eq === -1 ? part : part.slice(0, eq)).toUpperCase();
    if (!allowed.has(key)) return reply(555, '5.5.4', `${key.slice(0, 40)} parameter not recognized`);
    if (key in params) return reply(501, '5.5.4', `${key} given twice`);
    if (eq === -1) {
      if (!FLAGS.has(key)) return reply(501, '5.5.4', `${key} needs a value`);
      params[key] = true;
      continue;
    }
    if (FLAGS.has(key)) return reply(501, '5.5.4', `${key} takes no value`);
    const value = key === 'ENVID' || key === 'ORCPT' ? decodeXtext(part.slice(eq + 1)) : part.slice(eq + 1);
    if (value === null || !value || CONTROL.test(value)) return reply(501, '5.5.4', `bad ${key} value`);
    params[key] = value;
  }
  const refused = checkParams(params);
  if (refused) return refused;
  return { address, params };
}

/** The values each parameter may have. */
function checkParams(p: SmtpParams): SmtpError | null {
  if (typeof p.SIZE === 'string' && !/^\d{1,15}$/.test(p.SIZE)) return reply(501, '5.5.4', 'bad SIZE value');
  if (typeof p.BODY === 'string') {
    const body = p.BODY.toUpperCase();
    if (body !== '7BIT' && body !== '8BITMIME') return reply(501, '5.5.4', 'BODY must be 7BIT or 8BITMIME');
    p.BODY = body;
  }
  if (typeof p.RET === 'string') {
    const ret = p.RET.toUpperCase();
    if (ret !== 'FULL' && ret !== 'HDRS') return reply(501, '5.5.4', 'RET must be FULL or HDRS');
    p.RET = ret;
  }
  if (typeof p.ENVID === 'string' && p.ENVID.length > 100)
    return reply(501, '5.5.4', 'ENVID longer than 100 characters (RFC 3461 section 4.4)');
  if (typeof p.NOTIFY === 'string') {
    const values = p.NOTIFY.toUpperCase().split(',');
    if (!values.every((v) => NOTIFY.has(v)) || (values.includes('NEVER') && values.length > 1))
      return reply(501, '5.5.4', 'NOTIFY is NEVER, or any of SUCCESS, FAILURE and DELAY');
    p.NOTIFY = values.join(',');
  }
  // RFC 3461 §4.2: ORCPT=addr-type;xtext
  if (typeof p.ORCPT === 'string' && !/^[A-Za-z0-9-]+;./.test(p.ORCPT))
    return reply(501, '5.5.4', 'bad ORCPT value');
  return null;
}
