/**
 * Versioned migrations, applied in order inside one write transaction each.
 * `PRAGMA user_version` holds the number applied, so several processes opening
 * the same data directory at once apply each migration exactly once.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL REFERENCES domains(name),
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    quota_bytes INTEGER,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    last_uid_validity INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX accounts_domain ON accounts(domain);

  CREATE TABLE aliases (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    targets TEXT NOT NULL,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX aliases_domain ON aliases(domain);

  CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 0,
    uid_validity INTEGER NOT NULL,
    uid_next INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, name)
  ) STRICT;

  CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL,
    seen INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    structure TEXT NOT NULL,
    UNIQUE (mailbox_id, uid)
  ) STRICT;
  CREATE INDEX messages_account ON messages(account_id);
  CREATE INDEX messages_blob ON messages(blob_id);

  CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    modseq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    uid INTEGER NOT NULL,
    flags TEXT
  ) STRICT;
  CREATE INDEX journal_mailbox_modseq ON journal(mailbox_id, modseq);

  CREATE TABLE queue (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    meta TEXT NOT NULL
  ) STRICT;
  CREATE INDEX queue_due ON queue(held, next_attempt_at);

  CREATE TABLE sieve_scripts (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
  ) STRICT;

  CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
  ) STRICT;
  `,
  `
  ALTER TABLE messages ADD COLUMN delivery_key TEXT;
  CREATE UNIQUE INDEX messages_delivery_key ON messages(account_id, delivery_key) WHERE delivery_key IS NOT NULL;
  `,
  `
  CREATE INDEX queue_blob ON queue(blob_id);
  `,
  `
  CREATE TABLE dkim_keys (
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (domain, selector)
  ) STRICT;
  `,
  `
  ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
  `,
  `
  ALTER TABLE queue ADD COLUMN quarantine TEXT;
  `,
  `
  CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
  ) STRICT;

  CREATE TABLE dkim_retired (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    removed_at INTEGER NOT NULL,
    PRIMARY KEY (domain, selector)
  ) STRICT;
  `,
  `
  CREATE TABLE tls_items (
    name TEXT PRIMARY KEY,
    cert TEXT NOT NULL,
    key TEXT NOT NULL,
    not_after INTEGER,
    updated_at INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until INTEGER NOT NULL
  ) STRICT;
  `,
  `
  CREATE TABLE remembered (
    key TEXT PRIMARY KEY,
    until INTEGER NOT NULL
  ) STRICT;
  `,
  `
  CREATE TABLE remote_accounts (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    data TEXT NOT NULL
  ) STRICT;
  CREATE INDEX remote_accounts_account ON remote_accounts (account_id);
  `,
  `
  ALTER TABLE messages ADD COLUMN saved_at INTEGER;
  `,
  `
  CREATE TABLE kept_subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
  ) STRICT;
  `,
  // A message's sort fields (MessageStructure.sort) beside its row, small and in UID order, so the first
  // SORT or THREAD of a mailbox reads a few hundred bytes a message instead of its whole structure; gone
  // with the message. Packed as @mailwerk/store's packSortFields writes them (an address's route, which
  // sorting does not read, is left out here). Filled from the structures that have them.
  `
  CREATE TABLE message_sort (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, uid) REFERENCES messages(mailbox_id, uid) ON DELETE CASCADE
  ) STRICT, WITHOUT ROWID;
  INSERT INTO message_sort (mailbox_id, uid, fields)
    SELECT mailbox_id, uid, json_array(
      1,
      json_extract(structure, '$.sort.sent'),
      json_extract(structure, '$.sort.subject'),
      json_extract(structure, '$.sort.subjectKey'),
      CASE WHEN json_type(structure, '$.sort.from') = 'object' THEN
        json_array(json_extract(structure, '$.sort.from.name'), json_extract(structure, '$.sort.from.address')) END,
      CASE WHEN json_type(structure, '$.sort.to') = 'object' THEN
        json_array(json_extract(structure, '$.sort.to.name'), json_extract(structure, '$.sort.to.address')) END,
      CASE WHEN json_type(structure, '$.sort.cc') = 'object' THEN
        json_array(json_extract(structure, '$.sort.cc.name'), json_extract(structure, '$.sort.cc.address')) END,
      json_extract(structure, '$.sort.messageId'),
      json_extract(structure, '$.sort.references'))
    FROM messages
    WHERE json_valid(structure) AND json_type(structure, '$.sort') = 'object';
  `,
];
