/** DKIM keys of the embedded store: one active key per domain and algorithm. */
import { checkDkimKey, type DkimKey, normalizeDomain, retiredMessage, StoreError } from '@mailwerk/store';
import type { Row, Sql } from './sql.ts';

const toKey = (r: Row): DkimKey => ({
  domain: r.domain as string,
  selector: r.selector as string,
  algorithm: r.algorithm as DkimKey['algorithm'],
  privateKey: r.private_key as string,
  publicKey: r.public_key as string,
  state: r.state as DkimKey['state'],
  createdAt: new Date(Number(r.created_at)),
});

export class SqliteDkim {
  private readonly sql: Sql;
  constructor(sql: Sql) {
    this.sql = sql;
  }

  async addDkimKey(key: Omit<DkimKey, 'state' | 'createdAt'>): Promise<DkimKey> {
    const domain = normalizeDomain(key.domain);
    checkDkimKey(key);
    const row = await this.sql.tx(() => {
      if (!this.sql.get('SELECT 1 FROM domains WHERE name = ?', domain))
        throw new StoreError('not_found', `no domain ${domain}`);
      if (this.sql.get('SELECT 1 FROM dkim_keys WHERE domain = ? AND selector = ?', domain, key.selector))
        throw new StoreError('exists', `${domain} has a DKIM key with selector ${key.selector} already`);
      if (this.sql.get('SELECT 1 FROM dkim_retired WHERE domain = ? AND selector = ?', domain, key.selector))
        throw new StoreError('exists', retiredMessage(domain, key.selector));
      this.sql.run(
        "UPDATE dkim_keys SET state = 'published' WHERE domain = ? AND algorithm = ? AND state = 'active'",
        domain,
        key.algorithm,
      );
      return this.sql.get(
        `INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, state, created_at)
         VALUES (?, ?, ?, ?, ?, 'active', ?) RETURNING *`,
        domain,
        key.selector,
        key.algorithm,
        key.privateKey,
        key.publicKey,
        Date.now(),
      )!;
    });
    return toKey(row);
  }

  async listDkimKeys(domain?: string): Promise<DkimKey[]> {
    const rows =
      domain === undefined
        ? this.sql.all('SELECT * FROM dkim_keys ORDER BY domain, created_at, rowid')
        : this.sql.all(
            'SELECT * FROM dkim_keys WHERE domain = ? ORDER BY created_at, rowid',
            normalizeDomain(domain),
          );
    return rows.map(toKey);
  }

  async removeDkimKey(domain: string, selector: string, options: { force?: boolean } = {}): Promise<void> {
    const d = normalizeDomain(domain);
    await this.sql.tx(() => {
      const r = this.sql.get('SELECT state FROM dkim_keys WHERE domain = ? AND selector = ?', d, selector);
      if (!r) throw new StoreError('not_found', `${d} has no DKIM key with selector ${selector}`);
      if (r.state === 'active' && !options.force)
        throw new StoreError(
          'conflict',
          `the key ${selector} of ${d} is the one signing; generate a new one first`,
        );
      this.sql.run('DELETE FROM dkim_keys WHERE domain = ? AND selector = ?', d, selector);
      this.sql.run(
        'INSERT OR IGNORE INTO dkim_retired (domain, selector, removed_at) VALUES (?, ?, ?)',
        d,
        selector,
        Date.now(),
      );
    });
  }

  async retiredDkimSelectors(domain: string): Promise<string[]> {
    return this.sql
      .all('SELECT selector FROM dkim_retired WHERE domain = ? ORDER BY removed_at', normalizeDomain(domain))
      .map((r) => r.selector as string);
  }
}
