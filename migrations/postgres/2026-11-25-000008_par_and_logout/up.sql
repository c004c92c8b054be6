-- Pushed authorization requests (RFC 9126). The request_uri handed to the client is
-- stored only as SHA-256; the parameters stay here until the request expires, and the
-- request is consumed when a code is issued from it.
CREATE TABLE pushed_authorization_requests (
    request_uri_hash TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    parameters TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    consumed_at TIMESTAMP
);
CREATE INDEX pushed_authorization_requests_expiry_idx ON pushed_authorization_requests (expires_at);

-- Back-channel logout finds the grants a session signed in to.
CREATE INDEX oauth_grants_session_idx ON oauth_grants (tenant_id, session_id);

-- The issuer identifier the grant's tokens carry (a tenant can be reached by more
-- than one URL); a back-channel logout token must carry the same one.
ALTER TABLE oauth_grants ADD COLUMN issuer TEXT;
