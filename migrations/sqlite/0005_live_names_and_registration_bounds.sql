-- no-transaction
-- (SQLite ignores `PRAGMA foreign_keys` inside a transaction; this file
-- opens its own around the rebuild.)
--
-- A revoked token's name is free again: names are unique among live tokens
-- only (as Crafter's ids already are). SQLite cannot drop a column's UNIQUE,
-- so the table is rebuilt the way SQLite documents (ALTER TABLE, "making
-- other kinds of table schema changes"): foreign keys off, rebuild and
-- rename in one transaction, check the keys, foreign keys on again.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE tokens_rebuilt (
    id           TEXT PRIMARY KEY,
    name         TEXT,
    description  TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    role         TEXT NOT NULL,
    master       INTEGER NOT NULL DEFAULT 0,
    application  TEXT,
    subject      TEXT NOT NULL,
    grants       TEXT NOT NULL,
    form         TEXT NOT NULL,
    secret_hash  BLOB UNIQUE,
    not_before   INTEGER,
    expires_at   INTEGER,
    -- Not a foreign key: a parent may come from another issuer or predate the store.
    parent_id    TEXT,
    lineage      TEXT NOT NULL DEFAULT '[]',
    created_by   TEXT,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    external_id  TEXT
);
INSERT INTO tokens_rebuilt (id, name, description, kind, role, master, application, subject, grants, form,
                            secret_hash, not_before, expires_at, parent_id, lineage, created_by, created_at,
                            revoked_at, external_id)
    SELECT id, name, description, kind, role, master, application, subject, grants, form,
           secret_hash, not_before, expires_at, parent_id, lineage, created_by, created_at,
           revoked_at, external_id
    FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_rebuilt RENAME TO tokens;
CREATE INDEX tokens_application ON tokens(application);
CREATE INDEX tokens_parent ON tokens(parent_id);
CREATE INDEX tokens_revoked ON tokens(revoked_at) WHERE revoked_at IS NOT NULL;
CREATE UNIQUE INDEX tokens_external_id ON tokens(external_id);
CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked_at IS NULL;

-- Registration tokens carry what their creator's authority bounds: the
-- lineage the yielded token gets (so revoking the creator revokes it), the
-- latest expiry it may have, and their own revocation.
ALTER TABLE registration_tokens ADD COLUMN lineage TEXT NOT NULL DEFAULT '[]';
ALTER TABLE registration_tokens ADD COLUMN expires_cap INTEGER;
ALTER TABLE registration_tokens ADD COLUMN revoked_at INTEGER;
COMMIT;
PRAGMA foreign_key_check;
PRAGMA foreign_keys = ON;
