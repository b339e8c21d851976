/**
 * Whether a Sieve vacation action (RFC 5230) answers this message, and the reply it sends: pure, no
 * I/O. The once-per-sender-per-period memory (§4.2) is the caller's (the store's `once` key).
 *
 * No reply (RFC 5230 §4.5, §4.6; RFC 3834 §2):
 * - to the null sender <>, to mail marked as spam, to mail with Auto-Submitted other than "no";
 * - to mailing lists (any List-* field, RFC 2369 and RFC 2919; Precedence bulk, list or junk) and to
 *   what asks not to be auto-answered (X-Auto-Response-Suppress: OOF or All, as Exchange writes it);
 * - to senders that are robots by name (MAILER-DAEMON, owner-*, *-request, LISTSERV, majordomo), or
 *   that are the user;
 * - when none of the user's addresses (the recipient, the account, :addresses) is in To, Cc, Bcc or
 *   their Resent- forms: the user got it as a Bcc of a list or a forward, and the reply would tell a
 *   stranger that the address exists and who reads it.
 *
 * The reply (§5, RFC 3834 §3, §5): to the envelope sender, from the recipient (or :from when it is one
 * of the user's addresses), Subject "Auto: " and the original one (or :subject), In-Reply-To and
 * References, Auto-Submitted: auto-replied; sent with the null envelope sender (§5.1) so that it cannot
 * bounce back into a loop.
 */
import { randomBytes } from 'node:crypto';
import { flatAddresses, parseAddressList } from '@mailwerk/mime';
import type { Vacation } from '@mailwerk/sieve';
import { rfc5322Date } from '@mailwerk/smtp';
import { encodeWords } from 'nodemailer/lib/mime-funcs/index.js';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp/index.js';

export interface VacationContext {
  /** The envelope sender; '' for <>. */
  sender: string;
  /** The envelope recipient this delivery is for. */
  recipient: string;
  /** The account's own address. */
  account: string;
  /** The decoded values of a header field of the message, in order. */
  header(name: string): string[];
  /** The names of the message's header fields, lower-cased. */
  fieldNames: string[];
  spam: boolean;
  hostname: string;
  now?: Date;
}

/** `from`: the reply's From address, bare (its domain signs it). */
export type VacationDecision = { skip: string } | { to: string; from: string; message: Buffer };

/** An address as compared here: lower-cased, without a +detail (RFC 5233), so bob+x@ is bob@. */
function canonical(address: string): string {
  const a = address.trim().toLowerCase();
  const at = a.lastIndexOf('@');
  const local = at < 0 ? a : a.slice(0, at);
  const plus = local.indexOf('+');
  return (plus < 0 ? local : local.slice(0, plus)) + (at < 0 ? '' : a.slice(at));
}

const addressesIn = (values: string[]): string[] => values.flatMap((v) => flatAddresses(parseAddressList(v)));

const ROBOT =
  /^(mailer-daemon|listserv|majordomo|owner-.*|.*-request|.*-bounces?|noreply|no-reply|do-not-reply)$/i;

/** A header field value safe to write: one line, no control characters. */
const oneLine = (s: string) =>
  s
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[\x00-\x1f\x7f]/g, '')
    .trim();

/** A header field, encoded as RFC 2047 words where it is not ASCII, folded at 78 (RFC 5322 §2.1.1). */
export function headerField(name: string, value: string): string {
  const v = /^[\x20-\x7e]*$/.test(value) ? value : encodeWords(value, 'Q', 52);
  const words = `${name}: ${v}`.split(' ');
  let line = '';
  const lines: string[] = [];
  for (const w of words) {
    if (line && line.length + 1 + w.length > 78) {
      lines.push(line);
      line = ` ${w}`;
    } else line = line ? `${line} ${w}` : w;
  }
  lines.push(line);
  return `${lines.join('\r\n')}\r\n`;
}

export function vacationReply(action: Vacation, ctx: VacationContext): VacationDecision {
  const { sender } = ctx;
  if (sender === '') return { skip: 'the sender is <>' };
  if (ctx.spam) return { skip: 'the message is marked as spam' };
  const auto = ctx.header('auto-submitted')[0];
  if (auto !== undefined && auto.trim().split(/[\s;]/)[0]!.toLowerCase() !== 'no')
    return { skip: `the message is auto-submitted (${oneLine(auto).slice(0, 40)})` };
  const list = ctx.fieldNames.find((n) => n.startsWith('list-'));
  if (list) return { skip: `the message comes from a mailing list (${list})` };
  if (ctx.header('precedence').some((p) => /^\s*(bulk|list|junk)\b/i.test(p)))
    return { skip: 'the message is bulk mail (Precedence)' };
  if (ctx.header('x-auto-response-suppress').some((v) => /\b(oof|all)\b/i.test(v)))
    return { skip: 'the sender asks for no auto-replies (X-Auto-Response-Suppress)' };
  const senderLocal = sender.slice(0, sender.lastIndexOf('@'));
  if (ROBOT.test(senderLocal)) return { skip: 'the sender is a robot by its name' };
  const mine = new Set([ctx.recipient, ctx.account, ...action.addresses].map(canonical));
  if (mine.has(canonical(sender))) return { skip: 'the sender is the user' };
  const named = addressesIn(
    ['to', 'cc', 'bcc', 'resent-to', 'resent-cc', 'resent-bcc'].flatMap((h) => ctx.header(h)),
  );
  if (!named.some((a) => mine.has(canonical(a))))
    return { skip: "none of the user's addresses is in To, Cc or Bcc" };

  // :from only when it is the user's own (no forged senders through Sieve).
  const fromEntry = action.from ? addressesIn([action.from])[0] : undefined;
  const own = fromEntry !== undefined && mine.has(canonical(fromEntry));
  const from = own ? fromEntry : ctx.recipient;
  const original = ctx.header('subject')[0];
  const subject = oneLine(action.subject ?? (original ? `Auto: ${original}` : 'Automated reply'));
  const messageId = ctx.header('message-id')[0]?.trim();
  const references = [...(ctx.header('references')[0]?.split(/\s+/) ?? []), ...(messageId ? [messageId] : [])]
    .filter((r) => /^<[^<>\s]+>$/.test(r))
    .slice(-20);
  let head =
    headerField('From', own ? oneLine(action.from!) : from) +
    headerField('To', `<${sender}>`) +
    headerField('Subject', subject) +
    `Date: ${rfc5322Date(ctx.now ?? new Date())}\r\n` +
    `Message-ID: <${randomBytes(12).toString('hex')}@${ctx.hostname}>\r\n` +
    (messageId && /^<[^<>\s]+>$/.test(messageId) ? `In-Reply-To: ${messageId}\r\n` : '') +
    (references.length ? headerField('References', references.join(' ')) : '') +
    'Auto-Submitted: auto-replied (vacation)\r\n' +
    'MIME-Version: 1.0\r\n';
  let body: string;
  if (action.mime) {
    // §5.8: with :mime the reason is a MIME entity of its own: its header fields follow ours.
    const entity = action.reason.replace(/\r?\n/g, '\r\n');
    const split = entity.indexOf('\r\n\r\n');
    if (split < 0) return { skip: 'the :mime reason has no header and body' };
    head += `${entity.slice(0, split)}\r\n`;
    body = entity.slice(split + 4);
  } else {
    head += 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n';
    body = qpWrap(qpEncode(action.reason.replace(/\r?\n/g, '\r\n')), 76);
  }
  return {
    to: sender,
    from,
    message: Buffer.from(`${head}\r\n${body.endsWith('\r\n') ? body : `${body}\r\n`}`),
  };
}
