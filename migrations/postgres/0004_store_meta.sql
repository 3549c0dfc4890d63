-- Who this store is: one row with a random id, written when the store is
-- created (or upgraded to this version). A running gateway remembers it,
-- so a store swapped for another under it is noticed, never written to.
CREATE TABLE store_meta (
    id          TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
INSERT INTO store_meta (id, created_at)
    VALUES (md5(random()::text || clock_timestamp()::text), EXTRACT(EPOCH FROM now())::BIGINT);

-- Revocations of tokens this store has no record of (external issuers'
-- tokens, by jti), held until the token's own expiry.
CREATE TABLE revoked_jtis (
    jti         TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT NOT NULL,
    revoked_by  TEXT
);
