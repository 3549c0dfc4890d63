-- Every new reference token is announced to all replicas on commit, so a
-- token created (or redeemed) through one gateway works on the others at
-- once instead of at their next resync. The payload is the token id; the
-- secret's hash stays in the table.
CREATE FUNCTION narrowgate_announce_token() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('narrowgate_tokens', NEW.id);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER tokens_announce_reference
    AFTER INSERT ON tokens
    FOR EACH ROW
    WHEN (NEW.form = 'reference')
    EXECUTE FUNCTION narrowgate_announce_token();
