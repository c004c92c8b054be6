-- A session opened by a partner's identity provider remembers which, and the ID
-- token the provider issued (sealed): signing out ends the session at the partner
-- too (OpenID Connect RP-initiated logout, with the token as id_token_hint).
CREATE TABLE federated_sessions (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    upstream TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    FOREIGN KEY (tenant_id, connection_id) REFERENCES federation_connections (tenant_id, id) ON DELETE CASCADE
);
