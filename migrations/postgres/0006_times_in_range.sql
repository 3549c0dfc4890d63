-- Every time is a Unix second from 0 to 253402207200 (9999-12-30T22:00:00Z),
-- checked where it arrives and where it is read. Before that check, a time
-- of 2^63 seconds or more was cast into these signed columns as a negative
-- number: a revocation held "until" then was dropped at once, a token's
-- not-before was taken as long past, a registration's cap or a lifetime
-- as none. Such a value was always a far future (no negative time was
-- ever accepted), so it becomes the far future it meant: held, not yet
-- valid, capped, as asked. A value past the range likewise.
UPDATE revoked_jtis SET expires_at = 253402207200 WHERE expires_at < 0 OR expires_at > 253402207200;
UPDATE tokens SET not_before = 253402207200 WHERE not_before < 0 OR not_before > 253402207200;
UPDATE tokens SET expires_at = 253402207200 WHERE expires_at < 0 OR expires_at > 253402207200;
UPDATE registration_tokens SET expires_at = 253402207200 WHERE expires_at < 0 OR expires_at > 253402207200;
UPDATE registration_tokens SET expires_cap = 253402207200 WHERE expires_cap < 0 OR expires_cap > 253402207200;
UPDATE registration_tokens SET lifetime_secs = 253402207200 WHERE lifetime_secs < 0 OR lifetime_secs > 253402207200;
