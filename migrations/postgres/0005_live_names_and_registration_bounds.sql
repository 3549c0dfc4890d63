-- A revoked token's name is free again: names are unique among live tokens
-- only (as Crafter's ids already are).
ALTER TABLE tokens DROP CONSTRAINT tokens_name_key;
CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked_at IS NULL;

-- Registration tokens carry what their creator's authority bounds: the
-- lineage the yielded token gets (so revoking the creator revokes it), the
-- latest expiry it may have, and their own revocation.
ALTER TABLE registration_tokens
    ADD COLUMN lineage TEXT NOT NULL DEFAULT '[]',
    ADD COLUMN expires_cap BIGINT,
    ADD COLUMN revoked_at BIGINT;
