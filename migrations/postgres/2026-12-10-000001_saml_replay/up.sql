-- The IDs of SAML assertions a connection has accepted, until they expire: the
-- primary key refuses the same assertion a second time, on every node.
CREATE TABLE saml_seen_assertions (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    assertion_id TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, assertion_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES federation_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX saml_seen_assertions_expiry ON saml_seen_assertions (expires_at);
