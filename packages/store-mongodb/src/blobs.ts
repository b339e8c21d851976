/**
 * Message bodies in MongoDB's GridFS (bodies may exceed a document's 16 MiB),
 * content-addressed: the file name is the SHA-256 of the bytes, so a message
 * delivered to many recipients is stored once. A body is written completely
 * before any document refers to it; an upload interrupted half-way leaves no
 * file under that name (GridFS writes the files document last).
 */

import { type BlobStore, contentId, StoreError } from '@mailwerk/store';
import { type Db, GridFSBucket } from 'mongodb';

export class GridFsBlobStore implements BlobStore {
  private readonly bucket: GridFSBucket;
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
    this.bucket = new GridFSBucket(db, { bucketName: 'blobs' });
  }

  async put(data: Buffer): Promise<string> {
    const id = contentId(data);
    if (await this.has(id)) return id;
    await new Promise<void>((resolve, reject) => {
      const up = this.bucket.openUploadStream(id);
      up.once('finish', () => resolve());
      up.once('error', reject);
      up.end(data);
    });
    return id;
  }

  async get(id: string): Promise<Buffer> {
    const file = await this.db
      .collection('blobs.files')
      .findOne({ filename: id }, { sort: { uploadDate: 1 } });
    if (!file) throw new StoreError('not_found', `no blob ${id}`);
    const chunks: Buffer[] = [];
    for await (const c of this.bucket.openDownloadStream(file._id)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async has(id: string): Promise<boolean> {
    return (await this.db.collection('blobs.files').countDocuments({ filename: id }, { limit: 1 })) > 0;
  }

  async delete(id: string): Promise<void> {
    for (const f of await this.db.collection('blobs.files').find({ filename: id }).toArray())
      await this.bucket.delete(f._id).catch(() => undefined);
  }
}
