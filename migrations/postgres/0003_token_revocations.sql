-- PostgreSQL: revoked tokens, as ../0003_token_revocations.sql (SQLite).
CREATE TABLE token_revocations (
    user_id    TEXT PRIMARY KEY,    -- the token's `sub`; need not have connected
    not_before BIGINT NOT NULL,     -- tokens with iat < not_before are refused
    revoked_at TEXT NOT NULL        -- when the latest revoke was made
);
