-- Recovery of an account whose owner lost every second factor. It starts from a
-- password-reset link and can complete only after a cooling-off period
-- (`ready_at`), until `expires_at`; meanwhile the owner can cancel it with the link
-- mailed at once. Both link tokens are stored only as SHA-256.
CREATE TABLE account_recoveries (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    recovery_token_hash TEXT NOT NULL UNIQUE,
    cancel_token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    ready_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    cancelled_at TIMESTAMP,
    cancel_reason TEXT,
    completed_at TIMESTAMP,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX account_recoveries_user_idx ON account_recoveries (tenant_id, user_id);
