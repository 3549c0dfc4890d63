-- Issued tokens, registration tokens and revocations (SQLite).
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT UNIQUE,
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
    revoked_at   INTEGER
);
CREATE INDEX tokens_application ON tokens(application);
CREATE INDEX tokens_parent ON tokens(parent_id);
CREATE INDEX tokens_revoked ON tokens(revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE registration_tokens (
    id              TEXT PRIMARY KEY,
    secret_hash     BLOB NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    -- JSON: the access rules of the token it yields.
    grants          TEXT NOT NULL DEFAULT '[]',
    lifetime_secs   INTEGER,
    expires_at      INTEGER NOT NULL,
    created_by      TEXT,
    created_at      INTEGER NOT NULL,
    used_at         INTEGER,
    redeemed_token  TEXT REFERENCES tokens(id)
);
