/**
 * ENVELOPE, BODY and BODYSTRUCTURE text, and the top-level header block (as
 * latin1 text, which clients read through BODY.PEEK[HEADER.FIELDS (…)] for
 * every message they list), by message content. Blobs are named
 * by the hash of their bytes and never change, so the text computed for one
 * is right for every message with those bytes, in every session of the
 * process (Dovecot keeps the same in its index cache). Bounded in bytes,
 * least recently used out first; a miss only costs the computation.
 */
export type TextKind = 'ENVELOPE' | 'BODY' | 'BODYSTRUCTURE' | 'HEADER';

type Entry = Partial<Record<TextKind, string>>;

export class TextCache {
  private readonly map = new Map<string, Entry>();
  private bytes = 0;
  private readonly max: number;

  constructor(maxBytes: number) {
    this.max = maxBytes;
  }

  /** The cached text of `kind` for `blobId`, or undefined (then a FETCH reads what makes it). */
  peek(blobId: string, kind: TextKind): string | undefined {
    return this.map.get(blobId)?.[kind];
  }

  /** The cached text of `kind` for `blobId`, or what `make` returns (then cached). */
  get(blobId: string, kind: TextKind, make: () => string): string {
    let entry = this.map.get(blobId);
    const hit = entry?.[kind];
    if (hit !== undefined) return hit;
    const value = make();
    if (this.max <= 0) return value;
    if (!entry) {
      entry = {};
      this.map.set(blobId, entry);
      this.bytes += blobId.length + 100;
    }
    entry[kind] = value;
    this.bytes += value.length + 16;
    if (this.bytes > this.max) this.evict();
    return value;
  }

  /**
   * Drops the oldest quarter at once (first in, first out: a hit does not
   * move an entry, which keeps hits to one map lookup). A Map iterates past
   * the slots of deleted entries, so evicting one entry per insert would cost
   * more with every eviction.
   */
  private evict(): void {
    const target = this.max * 0.75;
    for (const [k, e] of this.map) {
      if (this.bytes <= target) break;
      this.map.delete(k);
      this.bytes -= k.length + 100;
      for (const v of Object.values(e)) this.bytes -= v.length + 16;
    }
  }

  get size(): number {
    return this.bytes;
  }
}

/**
 * Values computed from a blob's bytes (which never change), by blob id, for
 * every session of the process; at most `max` of them, the oldest quarter
 * out at once when full. A miss only costs the computation.
 */
export class BlobMemo<T> {
  private readonly map = new Map<string, T>();
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get(blobId: string): T | undefined {
    return this.map.get(blobId);
  }

  set(blobId: string, value: T): void {
    if (this.max <= 0) return;
    this.map.set(blobId, value);
    if (this.map.size > this.max) {
      let n = Math.ceil(this.max / 4);
      for (const k of this.map.keys()) {
        if (n-- <= 0) break;
        this.map.delete(k);
      }
    }
  }
}
