-- Federation in: partners' identity providers (upstream OpenID Connect, later
-- SAML), the upstream identities linked to local users, and sign-ins in flight.

-- A partner's identity provider. `settings` holds what is not secret (issuer,
-- client id, scopes, …) as JSON; `secrets` the client secret and keys, sealed with
-- the master key; `mapping` the declarative rules from upstream claims to the
-- user. The slug is part of the redirect URI, so it never changes.
CREATE TABLE federation_connections (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    logo_url TEXT,
    enabled BOOLEAN NOT NULL,
    jit_provisioning BOOLEAN NOT NULL,
    trust_verified_email BOOLEAN NOT NULL,
    settings TEXT NOT NULL,
    mapping TEXT NOT NULL,
    secrets TEXT,
    last_error TEXT,
    last_error_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version BIGINT NOT NULL,
    UNIQUE (tenant_id, slug),
    UNIQUE (tenant_id, id)
);

-- Home-realm discovery: an email domain (IDNA ASCII, lower case) routes to one
-- connection of the tenant.
CREATE TABLE federation_domains (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, domain),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES federation_connections (tenant_id, id) ON DELETE CASCADE
);

-- An upstream identity linked to a local user: the connection's subject (OIDC
-- `sub`; compared byte for byte, never folded), never an email. A user has at most
-- one identity per connection, and an identity one user.
CREATE TABLE federated_identities (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_sign_in_at TIMESTAMP,
    UNIQUE (tenant_id, connection_id, subject),
    UNIQUE (tenant_id, connection_id, user_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES federation_connections (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX federated_identities_user_idx ON federated_identities (tenant_id, user_id);

-- A federated sign-in between its redirect upstream and the answer: found by the
-- SHA-256 of the `state` handed upstream, bound to the browser that began it,
-- its state (PKCE verifier, nonce, where to go after) sealed; taken (deleted) by
-- the first answer, so a state is used at most once.
CREATE TABLE federation_requests (
    id_hash TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    user_id TEXT,
    binding TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    FOREIGN KEY (tenant_id, connection_id) REFERENCES federation_connections (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX federation_requests_expiry_idx ON federation_requests (expires_at);

-- Who made a membership: NULL by hand (an operator, SCIM), `connection:<id>` by a
-- connection's mapping rules, which reconcile only their own memberships.
ALTER TABLE group_members ADD COLUMN source TEXT;
