-- Tokens whose credential is an id chosen by a facade's client (Crafter
-- Profile's access-token ids, which its API lists to master callers). Live
-- ones are unique; deleting such a token revokes it and clears the id and
-- the secret's hash, so the same id can be created again.
ALTER TABLE tokens ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX tokens_external_id ON tokens(external_id);
