-- A jti is unique only within its issuer: two issuers' equal jtis are two
-- revocations.
ALTER TABLE revoked_jtis DROP CONSTRAINT revoked_jtis_pkey;
ALTER TABLE revoked_jtis ADD PRIMARY KEY (issuer, jti);
