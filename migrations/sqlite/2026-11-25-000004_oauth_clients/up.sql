-- OAuth 2.0 / OpenID Connect clients. Secrets are stored only as SHA-256 (they are
-- random 256-bit values, shown once); lists are JSON arrays in TEXT.
CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    name TEXT NOT NULL,
    client_type TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    secret_hash TEXT,
    jwks TEXT,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audiences TEXT NOT NULL,
    default_audience TEXT,
    access_token_ttl_secs BIGINT NOT NULL,
    refresh_token_ttl_secs BIGINT NOT NULL,
    refresh_idle_ttl_secs BIGINT NOT NULL,
    id_token_alg TEXT NOT NULL,
    require_pkce BOOLEAN NOT NULL,
    require_par BOOLEAN NOT NULL,
    first_party BOOLEAN NOT NULL,
    backchannel_logout_uri TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_clients_client_id_key ON oauth_clients (tenant_id, client_id);
