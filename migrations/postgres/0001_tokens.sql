-- Issued tokens, registration tokens and revocations (PostgreSQL).
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    role         TEXT NOT NULL,
    master       BIGINT NOT NULL DEFAULT 0,
    application  TEXT,
    subject      TEXT NOT NULL,
    grants       TEXT NOT NULL,
    form         TEXT NOT NULL,
    secret_hash  BYTEA UNIQUE,
    not_before   BIGINT,
    expires_at   BIGINT,
    -- Not a foreign key: a parent may come from another issuer or predate the store.
    parent_id    TEXT,
    lineage      TEXT NOT NULL DEFAULT '[]',
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX tokens_application ON tokens(application);
CREATE INDEX tokens_parent ON tokens(parent_id);
CREATE INDEX tokens_revoked ON tokens(revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE registration_tokens (
    id              TEXT PRIMARY KEY,
    secret_hash     BYTEA NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    -- JSON: the access rules of the token it yields.
    grants          TEXT NOT NULL DEFAULT '[]',
    lifetime_secs   BIGINT,
    expires_at      BIGINT NOT NULL,
    created_by      TEXT,
    created_at      BIGINT NOT NULL,
    used_at         BIGINT,
    redeemed_token  TEXT REFERENCES tokens(id)
);
