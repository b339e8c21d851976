/**
 * Sequence sets (RFC 3501 §9 `sequence-set`, RFC 9051 §6.4.4) and the
 * selected mailbox's sequence-number ↔ UID map.
 *
 * A set is kept as ranges and resolved against the mailbox, never expanded:
 * `1:4294967295` costs what the mailbox holds, not four billion steps.
 */
import { bad } from '../errors.ts';
import type { Cursor } from './cursor.ts';

/** `*`: the largest number in use. */
export const STAR = -1;

export type Range = [number, number];

/** At most this many comma-separated elements (the line bound allows about 16,000 anyway). */
const MAX_RANGES = 10_000;

/** `$` (RFC 5182 SEARCHRES): the result a SEARCH saved, as the one range [SAVED, SAVED]. */
export const SAVED = -2;

/** Whether a set read by readSequenceSet is `$`. */
export const isSaved = (ranges: Range[]): boolean => ranges.length === 1 && ranges[0]![0] === SAVED;

/**
 * Reads a sequence-set: `1`, `2:4`, `*`, `5:*`, `*:3`, joined by commas; or `$` alone (RFC 5182 §3:
 * `seq-last-command` is a whole sequence-set, never one element of a list).
 */
export function readSequenceSet(c: Cursor): Range[] {
  if (c.take('$')) return [[SAVED, SAVED]];
  const out: Range[] = [];
  const one = (): number => (c.take('*') ? STAR : c.nzNumber());
  for (;;) {
    const a = one();
    const b = c.take(':') ? one() : a;
    out.push([a, b]);
    if (out.length > MAX_RANGES) throw bad('Sequence set too long');
    if (!c.take(',')) return out;
  }
}

/** Ranges with `*` replaced by `max`, each low-high, sorted and merged. */
function normalise(ranges: Range[], max: number): Range[] {
  const r = ranges.map(([a, b]): Range => {
    const x = a === STAR ? max : a;
    const y = b === STAR ? max : b;
    return x <= y ? [x, y] : [y, x];
  });
  r.sort((p, q) => p[0] - q[0]);
  const merged: Range[] = [];
  for (const x of r) {
    const last = merged[merged.length - 1];
    if (last && x[0] <= last[1] + 1) last[1] = Math.max(last[1], x[1]);
    else merged.push([x[0], x[1]]);
  }
  return merged;
}

/**
 * The UIDs of a mailbox in ascending order, as a session sees it (RFC 3501
 * §2.3.1.2: message sequence number n is the n-th UID). Packed in a
 * Uint32Array: 4 bytes a message.
 */
export class UidList {
  private data: Uint32Array;
  private n: number;

  constructor(uids: readonly number[] = []) {
    this.data = new Uint32Array(Math.max(4, uids.length));
    this.data.set(uids);
    this.n = uids.length;
  }

  get length(): number {
    return this.n;
  }

  /** The UID of sequence number `seq` (1-based). */
  uidAt(seq: number): number {
    return this.data[seq - 1]!;
  }

  get last(): number {
    return this.n ? this.data[this.n - 1]! : 0;
  }

  /** Index of the first UID >= uid. */
  private lowerBound(uid: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.data[mid]! < uid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The sequence number of `uid`, or 0 when it is not in the list. */
  seqOf(uid: number): number {
    const i = this.lowerBound(uid);
    return i < this.n && this.data[i] === uid ? i + 1 : 0;
  }

  has(uid: number): boolean {
    return this.seqOf(uid) !== 0;
  }

  /** Adds a UID, keeping the order (new mail comes at the end, so this is usually an append). */
  add(uid: number): void {
    const i = this.lowerBound(uid);
    if (i < this.n && this.data[i] === uid) return;
    if (this.n === this.data.length) {
      const grown = new Uint32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    if (i < this.n) this.data.copyWithin(i + 1, i, this.n);
    this.data[i] = uid;
    this.n++;
  }

  /** Removes the UIDs in `gone`, in one pass. */
  removeAll(gone: ReadonlySet<number>): void {
    let w = 0;
    for (let r = 0; r < this.n; r++) {
      const u = this.data[r]!;
      if (!gone.has(u)) this.data[w++] = u;
    }
    this.n = w;
  }

  /**
   * UIDs (ascending) of the sequence numbers in `ranges`. A number beyond the
   * last message is a BAD (as Dovecot answers), except for SEARCH (`lenient`),
   * where it simply matches nothing.
   */
  bySeq(ranges: Range[], lenient = false): number[] {
    const out: number[] = [];
    if (this.n === 0) {
      // `*` of an empty mailbox names nothing; a number names a message that is not there.
      if (!lenient && ranges.some(([a, b]) => a !== STAR || b !== STAR))
        throw bad('Invalid message sequence number: the mailbox is empty');
      return out;
    }
    for (const [a, b] of normalise(ranges, this.n)) {
      if (b > this.n && !lenient)
        throw bad(`Invalid message sequence number ${b}: there are ${this.n} messages`);
      for (let s = a; s <= Math.min(b, this.n); s++) out.push(this.data[s - 1]!);
    }
    return out;
  }

  /**
   * The UIDs in `ranges` that exist (RFC 3501 §6.4.8). `n:*` always takes
   * the last message, even when n is above its UID.
   */
  byUid(ranges: Range[]): number[] {
    const out: number[] = [];
    if (this.n === 0) return out;
    const max = this.last;
    for (const [a, b] of normalise(ranges, max)) {
      for (let i = this.lowerBound(a); i < this.n && this.data[i]! <= b; i++) out.push(this.data[i]!);
    }
    return out;
  }

  /**
   * The UIDs of `ranges`, up to `top`, that are not in the list: what a client asks about and is gone
   * (QRESYNC's VANISHED (EARLIER), RFC 7162 §3.2.5.1, §3.2.6), as ranges. Linear in the ranges and the
   * UIDs within them.
   */
  missingIn(ranges: Range[], top: number): Range[] {
    const out: Range[] = [];
    for (const [a, b0] of normalise(ranges, top)) {
      const b = Math.min(b0, top);
      let next = a;
      for (let i = this.lowerBound(a); i < this.n && this.data[i]! <= b; i++) {
        const u = this.data[i]!;
        if (u > next) out.push([next, u - 1]);
        next = u + 1;
      }
      if (next <= b) out.push([next, b]);
    }
    return out;
  }

  toArray(): number[] {
    return Array.from(this.data.subarray(0, this.n));
  }
}

/** Writes ranges as a sequence set: `1:3,7`. */
export const formatRanges = (ranges: readonly Range[]): string =>
  ranges.map(([a, b]) => (a === b ? String(a) : `${a}:${b}`)).join(',');

/** Writes UIDs as a compact sequence set: `1:3,7,9:10` (for COPYUID, APPENDUID, ESEARCH). */
export function formatUids(uids: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < uids.length) {
    let j = i;
    while (j + 1 < uids.length && uids[j + 1] === uids[j]! + 1) j++;
    parts.push(j === i ? String(uids[i]) : `${uids[i]}:${uids[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
