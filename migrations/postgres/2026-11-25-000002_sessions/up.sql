-- Sign-in state: sessions, single-use tokens (email verification, password reset)
-- and rate-limit counters that every node sees.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- SHA-256 of the 256-bit secret in the cookie; the secret itself is never stored.
    secret_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    idle_expires_at TIMESTAMP NOT NULL,
    absolute_expires_at TIMESTAMP NOT NULL,
    ip TEXT,
    user_agent TEXT,
    -- JSON array of {"method": "pwd", "at": "<rfc3339>"}: the source of `amr`.
    auth_methods TEXT NOT NULL,
    aal INTEGER NOT NULL,
    ended_at TIMESTAMP,
    end_reason TEXT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX sessions_secret_hash_key ON sessions (secret_hash);
CREATE INDEX sessions_user_idx ON sessions (tenant_id, user_id);

CREATE TABLE one_time_tokens (
    -- SHA-256 of the token in the link; the token itself is never stored.
    token_hash TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    consumed_at TIMESTAMP,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (tenant_id, user_id, purpose);

CREATE TABLE rate_limits (
    tenant_id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    failures INTEGER NOT NULL,
    window_started_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    PRIMARY KEY (tenant_id, bucket)
);
