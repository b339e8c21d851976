/** Sieve scripts of the embedded store, one active per account. */
import { checkSieveName, type SieveScript, StoreError } from '@mailwerk/store';
import { toSieve } from './rows.ts';
import { rowId, type Sql } from './sql.ts';

export class SqliteSieve {
  private readonly sql: Sql;
  constructor(sql: Sql) {
    this.sql = sql;
  }

  async putSieveScript(accountId: string, name: string, content: string): Promise<SieveScript> {
    checkSieveName(name);
    const acc = rowId(accountId);
    const row = await this.sql.tx(() => {
      if (!this.sql.get('SELECT 1 FROM accounts WHERE id = ?', acc))
        throw new StoreError('not_found', `no account ${accountId}`);
      return this.sql.get(
        `INSERT INTO sieve_scripts (account_id, name, content, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content, updated_at = excluded.updated_at
         RETURNING *`,
        acc,
        name,
        content,
        Date.now(),
      )!;
    });
    return toSieve(row);
  }

  async getSieveScript(accountId: string, name: string): Promise<SieveScript | null> {
    const r = this.sql.get(
      'SELECT * FROM sieve_scripts WHERE account_id = ? AND name = ?',
      rowId(accountId),
      name,
    );
    return r ? toSieve(r) : null;
  }

  async listSieveScripts(accountId: string): Promise<SieveScript[]> {
    return this.sql
      .all('SELECT * FROM sieve_scripts WHERE account_id = ? ORDER BY name', rowId(accountId))
      .map(toSieve);
  }

  async deleteSieveScript(accountId: string, name: string): Promise<void> {
    const acc = rowId(accountId);
    await this.sql.tx(() => {
      const r = this.sql.get('SELECT active FROM sieve_scripts WHERE account_id = ? AND name = ?', acc, name);
      if (!r) throw new StoreError('not_found', `no Sieve script ${name}`);
      if (r.active === 1) throw new StoreError('conflict', `Sieve script ${name} is active`);
      this.sql.run('DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?', acc, name);
    });
  }

  async setActiveSieveScript(accountId: string, name: string | null): Promise<void> {
    const acc = rowId(accountId);
    await this.sql.tx(() => {
      if (
        name !== null &&
        !this.sql.get('SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?', acc, name)
      ) {
        throw new StoreError('not_found', `no Sieve script ${name}`);
      }
      this.sql.run('UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1', acc);
      if (name !== null)
        this.sql.run('UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?', acc, name);
    });
  }

  async getActiveSieveScript(accountId: string): Promise<SieveScript | null> {
    const r = this.sql.get(
      'SELECT * FROM sieve_scripts WHERE account_id = ? AND active = 1',
      rowId(accountId),
    );
    return r ? toSieve(r) : null;
  }
}
