/**
 * Reading where a database's WAL stands without a lock or a statement: from
 * its wal-index (the -shm file every connection maps). SQLite's file format
 * page "WAL-mode File Format" (walformat.html), section "The WAL-Index
 * Header": the header's first copy holds mxFrame, the last valid frame, as a
 * 32-bit integer at byte 16, and the checkpoint information that follows
 * both copies holds nBackfill, the frames already copied into the database,
 * at byte 96. Both are in the machine's byte order. Read unlocked, a value may
 * be one commit old: good enough to decide when to checkpoint, never to
 * decide what is on disk.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';

const MX_FRAME = 16;
const N_BACKFILL = 96;
const HEADER_BYTES = 136;

export interface WalPosition {
  /** The WAL's last valid frame (0: empty or just restarted). */
  mxFrame: number;
  /** Frames of the WAL already copied into the database. */
  nBackfill: number;
}

/** Reads a wal-index file repeatedly through one descriptor. */
export class WalIndexReader {
  private fd: number | null;
  private readonly buf = Buffer.alloc(HEADER_BYTES);
  private readonly le = endianness() === 'LE';

  /** `dbPath`: the database file; its wal-index is `${dbPath}-shm`, which must exist (a connection is open). */
  constructor(dbPath: string) {
    this.fd = openSync(`${dbPath}-shm`, 'r');
  }

  /** Null while the wal-index is shorter than its header (a connection is initialising it). */
  read(): WalPosition | null {
    if (this.fd === null) throw new Error('the wal-index reader is closed');
    if (readSync(this.fd, this.buf, 0, HEADER_BYTES, 0) < HEADER_BYTES) return null;
    return this.le
      ? { mxFrame: this.buf.readUInt32LE(MX_FRAME), nBackfill: this.buf.readUInt32LE(N_BACKFILL) }
      : { mxFrame: this.buf.readUInt32BE(MX_FRAME), nBackfill: this.buf.readUInt32BE(N_BACKFILL) };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
