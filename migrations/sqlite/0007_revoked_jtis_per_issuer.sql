-- A jti is unique only within its issuer: two issuers' equal jtis are two
-- revocations. SQLite cannot change a primary key, so the table is rebuilt.
CREATE TABLE revoked_jtis_new (
    jti         TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER NOT NULL,
    revoked_by  TEXT,
    PRIMARY KEY (issuer, jti)
);
INSERT INTO revoked_jtis_new (jti, issuer, expires_at, revoked_at, revoked_by)
    SELECT jti, issuer, expires_at, revoked_at, revoked_by FROM revoked_jtis;
DROP TABLE revoked_jtis;
ALTER TABLE revoked_jtis_new RENAME TO revoked_jtis;
