/**
 * The SQL layer the store's parts share: one connection, cached prepared
 * statements, and every write through the group commit (see db.ts).
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { type BlobStore, blobRef } from '@mailwerk/store';
import { SqliteBlobStore } from './blobs.ts';
import type { GroupCommit } from './db.ts';

export type Row = Record<string, SQLInputValue>;

/** SQLite integer ids travel as decimal strings; anything else can match nothing. */
export function rowId(id: string): number {
  return /^[1-9][0-9]{0,15}$/.test(id) ? Number(id) : -1;
}

export class Sql {
  readonly db: DatabaseSync;
  readonly blobs: BlobStore;
  private readonly writer: GroupCommit;

  constructor(db: DatabaseSync, writer: GroupCommit, blobs: BlobStore) {
    this.db = db;
    this.writer = writer;
    this.blobs = blobs;
  }

  /** Prepared statements by SQL text: preparing costs more than running most of ours. */
  private readonly statements = new Map<string, StatementSync>();

  stmt(sql: string): StatementSync {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }

  all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.stmt(sql).all(...params) as Row[];
  }

  run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.stmt(sql).run(...params).changes);
  }

  /** A write, committed (and synced) together with the writes issued alongside it; see GroupCommit. */
  tx<T>(fn: () => T): Promise<T> {
    return this.writer.write(fn);
  }

  /**
   * A write that need not survive a power cut, committed without a sync when nothing durable goes
   * with it (see GroupCommit): only for state whose loss costs a repeat, never mail.
   */
  txUnsynced<T>(fn: () => T): Promise<T> {
    return this.writer.write(fn, false);
  }

  /**
   * Removes bodies kept in SQLite that no message and no queue entry refers to
   * any more. Runs inside the write that dropped the last reference, so a
   * concurrent delivery of the same content (same id) either sees the blob or
   * stores it again. Bodies in files are not collected yet (see the notes).
   */
  dropUnusedBlobs(ids: Iterable<string>): void {
    if (!(this.blobs instanceof SqliteBlobStore)) return;
    for (const id of new Set(ids)) {
      this.run(
        `DELETE FROM blobs WHERE id = ?
         AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?)
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = ?)`,
        id,
        id,
        id,
      );
    }
  }

  blobIdsWhere(sql: string, ...params: SQLInputValue[]): string[] {
    return this.all(sql, ...params).map((r) => r.blob_id as string);
  }

  /**
   * A write that also stores a not yet stored blob: in the same transaction when bodies live in SQLite.
   * `fn` gets the blob's id: `blobId`, or the content id of `data` when it is left out (blobRef).
   */
  async txWithBlob<T>(
    blobId: string | undefined,
    data: Buffer | undefined,
    fn: (blobId: string) => T,
  ): Promise<T> {
    const id = blobRef(blobId, data);
    if (!data) return this.tx(() => fn(id));
    const blobs = this.blobs;
    if (blobs instanceof SqliteBlobStore) {
      return this.tx(() => {
        blobs.insertInTransaction(id, data);
        return fn(id);
      });
    }
    await blobs.put(data);
    return this.tx(() => fn(id));
  }
}
