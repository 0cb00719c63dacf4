-- Revoked tokens: per user, the first `iat` (seconds since the epoch) still accepted. Written by
-- `POST /websocket/users/{id}/revoke` (the second after the call, so every token issued up to it
-- is refused, and so is a token without `iat`), loaded at start, checked wherever a token is
-- verified: on connect, on `refresh-token` and on REST calls.
CREATE TABLE token_revocations (
    user_id    TEXT PRIMARY KEY NOT NULL,   -- the token's `sub`; need not have connected
    not_before INTEGER NOT NULL,            -- tokens with iat < not_before are refused
    revoked_at TEXT NOT NULL                -- when the latest revoke was made
) STRICT, WITHOUT ROWID;
