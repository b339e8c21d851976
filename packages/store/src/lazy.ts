/**
 * A message's MIME structure is stored as JSON and parsed only when read:
 * FETCH FLAGS, SEARCH by flags and the POP3 listing never pay for it, and a
 * structure that does not parse fails only the reader that needs it (see
 * `StoreError('corrupt')`), not every listing of the mailbox.
 */
import { type EnvelopeAddress, type MessageStructure, parseMessage, type SortFields } from '@mailwerk/mime';
import { isStoreError, StoreError } from './errors.ts';
import type { MailStore, Message } from './types.ts';

/** A message whose structure is parsed on first read; the getter lives on the prototype (objects stay in fast mode). */
class StoredMessage implements Message {
  id: string;
  accountId: string;
  mailboxId: string;
  uid: number;
  modseq: number;
  flags: string[];
  internalDate: Date;
  savedAt: Date | null;
  size: number;
  blobId: string;
  private json: string;
  private parsed: MessageStructure | undefined;

  constructor(m: Omit<Message, 'structure'>, json: string) {
    this.id = m.id;
    this.accountId = m.accountId;
    this.mailboxId = m.mailboxId;
    this.uid = m.uid;
    this.modseq = m.modseq;
    this.flags = m.flags;
    this.internalDate = m.internalDate;
    this.savedAt = m.savedAt ?? null;
    this.size = m.size;
    this.blobId = m.blobId;
    this.json = json;
    this.parsed = undefined;
  }

  get structure(): MessageStructure {
    if (this.parsed === undefined) {
      try {
        this.parsed = JSON.parse(this.json) as MessageStructure;
      } catch {
        throw new StoreError(
          'corrupt',
          `message ${this.id} (uid ${this.uid}): its stored structure does not parse`,
        );
      }
    }
    return this.parsed;
  }

  /** What JSON and assert.deepEqual see: the plain message. */
  toJSON(): Message {
    return {
      id: this.id,
      accountId: this.accountId,
      mailboxId: this.mailboxId,
      uid: this.uid,
      modseq: this.modseq,
      flags: this.flags,
      internalDate: this.internalDate,
      savedAt: this.savedAt,
      size: this.size,
      blobId: this.blobId,
      structure: this.structure,
    };
  }
}

export function withStructure(message: Omit<Message, 'structure'>, json: string): Message {
  return new StoredMessage(message, json);
}

/**
 * A message's structure, or, when the stored one is damaged, the structure
 * parsed again from its bytes (which are intact: they live apart, named by
 * their hash). `onDamaged` is told, so the reader can log it once.
 */
export async function readStructure(
  store: MailStore,
  m: Message,
  onDamaged?: (m: Message, err: StoreError) => void,
): Promise<MessageStructure> {
  try {
    return m.structure;
  } catch (err) {
    if (!isStoreError(err, 'corrupt')) throw err;
    onDamaged?.(m, err);
    return parseMessage(await store.blobs.get(m.blobId));
  }
}

/**
 * A message's sort fields from the stored JSON text of its structure. MessageStructure is written by
 * JSON.stringify with `sort` as its last key, so the object after the last `,"sort":` is read alone
 * (a few hundred bytes instead of the whole structure); no other key of a structure holds an object
 * named `sort`. Whatever does not read as sort fields that way is read whole. Null when there are none
 * (a structure stored before they were kept) or the text is damaged: the reader falls back to the
 * structure, as for a damaged one.
 */
export function sortFieldsOf(json: unknown): SortFields | null {
  if (typeof json !== 'string') return null;
  const fields = (v: unknown) =>
    v && typeof v === 'object' && Array.isArray((v as SortFields).references) ? (v as SortFields) : null;
  const at = json.lastIndexOf(',"sort":{');
  if (at !== -1 && json.endsWith('}')) {
    try {
      const tail = fields(JSON.parse(json.slice(at + 8, -1)));
      if (tail) return tail;
    } catch {
      // Read whole below.
    }
  }
  try {
    return fields((JSON.parse(json) as { sort?: unknown } | null)?.sort);
  } catch {
    return null;
  }
}

/** An address as packed: [name, address] or [name, address, route]. */
type PackedAddress = [string, string] | [string, string, string];

const packAddress = (a: EnvelopeAddress | null): PackedAddress | null =>
  a ? (a.route ? [a.name, a.address, a.route] : [a.name, a.address]) : null;

function unpackAddress(v: unknown): EnvelopeAddress | null | undefined {
  if (v === null) return null;
  if (!Array.isArray(v) || typeof v[0] !== 'string' || typeof v[1] !== 'string') return undefined;
  return typeof v[2] === 'string'
    ? { name: v[0], address: v[1], route: v[2] }
    : { name: v[0], address: v[1] };
}

/**
 * Sort fields as a store keeps them beside a message (SQLite's message_sort): a JSON array, version first,
 * `[1, sent, subject, subjectKey, from, to, cc, messageId, references]`, each address [name, address(,
 * route)] or null. An array of strings reads about three times as fast as the same fields as objects
 * with their names, which is most of the first SORT of a big mailbox.
 */
export function packSortFields(f: SortFields): string {
  return JSON.stringify([
    1,
    f.sent,
    f.subject,
    f.subjectKey ?? null,
    packAddress(f.from),
    packAddress(f.to),
    packAddress(f.cc),
    f.messageId,
    f.references,
  ]);
}

/** The fields packSortFields wrote, or null when the text is not that (damaged): the reader then reads the message. */
export function unpackSortFields(text: unknown): SortFields | null {
  if (typeof text !== 'string') return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== 9 || v[0] !== 1) return null;
  const [, sent, subject, subjectKey, from, to, cc, messageId, references] = v as unknown[];
  const first = [unpackAddress(from), unpackAddress(to), unpackAddress(cc)] as const;
  if (
    (sent !== null && typeof sent !== 'number') ||
    typeof subject !== 'string' ||
    (subjectKey !== null && typeof subjectKey !== 'string') ||
    first[0] === undefined ||
    first[1] === undefined ||
    first[2] === undefined ||
    (messageId !== null && typeof messageId !== 'string') ||
    !Array.isArray(references) ||
    !references.every((r) => typeof r === 'string')
  )
    return null;
  // One shape for every message read (no key added or left out), which keeps the sort's reads fast.
  const fields: SortFields = {
    sent,
    subject,
    subjectKey: subjectKey ?? undefined,
    from: first[0],
    to: first[1],
    cc: first[2],
    messageId,
    references,
  };
  return fields;
}
