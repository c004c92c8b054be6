-- Access tokens are self-contained JWTs; a revoked one is remembered by its jti until
-- it would have expired anyway, so introspection answers inactive at once.
CREATE TABLE revoked_tokens (
    tenant_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, jti)
);
CREATE INDEX revoked_tokens_expiry_idx ON revoked_tokens (expires_at);
