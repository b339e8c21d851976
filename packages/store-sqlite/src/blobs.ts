/**
 * Blob stores for message bodies. Ids are SHA-256 hex digests of the bytes:
 * a message delivered to many recipients is stored once, and a body can be
 * checked against its id.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { type BlobStore, contentId, StoreError } from '@mailwerk/store';
import type { GroupCommit } from './db.ts';

const ID = /^[0-9a-f]{64}$/;

function checkId(id: string): void {
  // The id becomes a path: never let one name anything outside the blob tree.
  if (!ID.test(id)) throw new StoreError('invalid', `invalid blob id "${id}"`);
}

const notFound = (id: string) => new StoreError('not_found', `no blob ${id}`);

/**
 * Files under `dir/ab/cd/<id>`, written to a temporary name, fsync'd, renamed
 * into place and the directory fsync'd: after `put` returns, the bytes
 * survive a crash; a crash before leaves at most a stray temporary file.
 */
export class FsBlobStore implements BlobStore {
  private readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  private pathOf(id: string): string {
    return join(this.dir, id.slice(0, 2), id.slice(2, 4), id);
  }

  async put(data: Buffer): Promise<string> {
    const id = contentId(data);
    const path = this.pathOf(id);
    if (await this.has(id)) return id;
    const parent = join(path, '..');
    // Message bodies are private: directories 0700, files 0600.
    await mkdir(parent, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dh = await open(parent, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
    return id;
  }

  async get(id: string): Promise<Buffer> {
    checkId(id);
    try {
      return await readFile(this.pathOf(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(id);
      throw err;
    }
  }

  async has(id: string): Promise<boolean> {
    checkId(id);
    try {
      await stat(this.pathOf(id));
      return true;
    } catch {
      return false;
    }
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    await unlink(this.pathOf(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}

/** Bodies inside the SQLite database, written with the group commit of the store. */
export class SqliteBlobStore implements BlobStore {
  private readonly db: DatabaseSync;
  private readonly writer: GroupCommit;
  /** Compiled once: preparing a statement costs more than reading a small blob with it. */
  private readonly statements = new Map<string, StatementSync>();
  constructor(db: DatabaseSync, writer: GroupCommit) {
    this.db = db;
    this.writer = writer;
  }

  private stmt(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  async put(data: Buffer): Promise<string> {
    const id = contentId(data);
    await this.writer.write(() => this.insertInTransaction(id, data));
    return id;
  }

  /** Stores a blob as part of a write already running in the group commit. */
  insertInTransaction(id: string, data: Buffer): void {
    this.stmt('INSERT OR IGNORE INTO blobs (id, data) VALUES (?, ?)').run(id, data);
  }

  async get(id: string): Promise<Buffer> {
    checkId(id);
    const row = this.stmt('SELECT data FROM blobs WHERE id = ?').get(id) as { data: Uint8Array } | undefined;
    if (!row) throw notFound(id);
    return Buffer.from(row.data.buffer, row.data.byteOffset, row.data.byteLength);
  }

  async has(id: string): Promise<boolean> {
    checkId(id);
    return this.stmt('SELECT 1 FROM blobs WHERE id = ?').get(id) !== undefined;
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    await this.writer.write(() => this.stmt('DELETE FROM blobs WHERE id = ?').run(id));
  }
}
