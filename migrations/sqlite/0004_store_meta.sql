-- Who this store is: one row with a random id, written when the store is
-- created (or upgraded to this version). A running gateway remembers it,
-- so a store swapped for another under it is noticed, never written to.
CREATE TABLE store_meta (
    id          TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO store_meta (id, created_at) VALUES (lower(hex(randomblob(16))), CAST(strftime('%s', 'now') AS INTEGER));

-- Revocations of tokens this store has no record of (external issuers'
-- tokens, by jti), held until the token's own expiry.
CREATE TABLE revoked_jtis (
    jti         TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER NOT NULL,
    revoked_by  TEXT
);
