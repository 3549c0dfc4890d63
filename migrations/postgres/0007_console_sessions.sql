-- The console's sessions, shared by every replica and kept over restarts.
-- A row is found by the SHA-256 of the session's cookie (the cookie itself
-- is never stored), and what it holds — the sign-in credential, the form
-- token, the label, the token's lineage and expiry — is sealed with
-- AES-256-GCM under a key derived from the cookie too: the store alone
-- opens no session and holds no usable token. In the clear: the sign-in
-- token's id (revoking it ends its sessions; the bounds count by it) and
-- the times the session is judged by.
CREATE TABLE console_sessions (
    -- The order sessions were opened in: among sessions last used in the
    -- same second, the first opened is the least recently used.
    opened BIGSERIAL PRIMARY KEY,
    key BYTEA NOT NULL UNIQUE,
    token_id TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_token ON console_sessions (token_id);
