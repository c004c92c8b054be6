-- private_key_jwt (RFC 7523 §3): each client assertion's jti is accepted once. A row
-- lives until the assertion itself could no longer be accepted (exp plus leeway);
-- after that a replay fails on exp, so the row may go.
CREATE TABLE client_assertion_jtis (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
);
CREATE INDEX client_assertion_jtis_expiry_idx ON client_assertion_jtis (expires_at);
