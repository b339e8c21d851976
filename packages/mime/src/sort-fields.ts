/**
 * What SORT and THREAD (RFC 5256) read of a message, made when it is parsed
 * (delivery, APPEND, import) and kept in its structure, so the first SORT or
 * THREAD of a big mailbox reads no message bytes and decodes no header again.
 * Bounded: the subject is cut to MAX_SORT_TEXT characters, the references to
 * MAX_REFERENCES ids of the first 20,000 characters of the field.
 */
import type { AddressEntry, EnvelopeAddress } from './address.ts';
import { MAX_SORT_TEXT, subjectKey } from './collation.ts';
import { parseHeaderDate } from './date.ts';
import type { Envelope } from './index.ts';
import { decodeWords } from './words.ts';

export { MAX_SORT_TEXT };
export const MAX_REFERENCES = 100;

export interface SortFields {
  /** The Date: field's instant (ms), or null when there is none or it does not parse (RFC 5256 §2.2). */
  sent: number | null;
  /** Subject: decoded (RFC 2047), '' when there is none. */
  subject: string;
  /**
   * The casemapped base subject (collation.ts subjectKey): SORT (SUBJECT)'s key, made here so the first SORT
   * of a mailbox does not make it for every message. Absent in fields kept before it was.
   */
  subjectKey?: string | undefined;
  /** The first address of From:, To: and Cc: (RFC 5256 §3: the first "addr-mailbox"; RFC 5957: its display). */
  from: EnvelopeAddress | null;
  to: EnvelopeAddress | null;
  cc: EnvelopeAddress | null;
  /** Its own Message-ID, without the brackets. */
  messageId: string | null;
  /** References: ids in order, else In-Reply-To's first (RFC 5256 §3 REFERENCES step 1). */
  references: string[];
}

/** The first address of a field, a group's first member counted (RFC 5256 §3: the first "addr-mailbox"). */
export function firstAddress(list: AddressEntry[] | null | undefined): EnvelopeAddress | null {
  for (const e of list ?? []) {
    if ('group' in e) {
      if (e.group[0]) return e.group[0];
    } else return e;
  }
  return null;
}

/** The msg-ids of a References:, In-Reply-To: or Message-ID: value, in order (`<…>` each, without the brackets). */
export function messageIds(value: string | null | undefined, max = MAX_REFERENCES): string[] {
  const out: string[] = [];
  if (!value) return out;
  for (const m of value.slice(0, 20_000).matchAll(/<([^<>\s]+)>/g)) {
    out.push(m[1]!);
    if (out.length >= max) break;
  }
  return out;
}

/** A message's thread ancestry (RFC 5256 §3 REFERENCES step 1, RFC 5322 §3.6.4): References, else In-Reply-To's first. */
export function ancestors(
  references: string | null | undefined,
  inReplyTo: string | null | undefined,
): string[] {
  const refs = messageIds(references);
  return refs.length ? refs : messageIds(inReplyTo, 1);
}

/** The sort fields of a message with envelope `env` whose References: field is `references`. */
export function sortFields(env: Envelope, references: string | null | undefined): SortFields {
  const subject = env.subject ? decodeWords(env.subject).slice(0, MAX_SORT_TEXT) : '';
  return {
    sent: env.date ? (parseHeaderDate(env.date)?.time ?? null) : null,
    subject,
    subjectKey: subjectKey(subject),
    from: firstAddress(env.from),
    to: firstAddress(env.to),
    cc: firstAddress(env.cc),
    messageId: messageIds(env.messageId, 1)[0] ?? null,
    references: ancestors(references, env.inReplyTo),
  };
}
