/**
 * A message's MIME structure is stored as JSON and parsed only when read:
 * FETCH FLAGS, SEARCH by flags and the POP3 listing never pay for it, and a
 * structure that does not parse fails only the reader that needs it (see
 * `StoreError('corrupt')`), not every listing of the mailbox.
 */
import { type MessageStructure, parseMessage, type SortFields } from '@mailwerk/mime';
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
