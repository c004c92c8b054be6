-- Token signing keys, one row per key. The private key is sealed with the master key
-- (associated data binds tenant, kid and alg); the public half is a JWK (JSON TEXT).
-- Life cycle: `next` (published in the JWKS, not yet signing) -> `active` (signs)
-- -> `retired` (no longer signs, published until `publish_until`, then pruned).
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    alg TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    activated_at TIMESTAMP,
    retired_at TIMESTAMP,
    publish_until TIMESTAMP
);
CREATE INDEX signing_keys_tenant_state_idx ON signing_keys (tenant_id, state);
-- At most one `active` and one `next` key per tenant and algorithm: two nodes rotating
-- at once cannot both promote or both publish (the loser gets a unique violation).
CREATE UNIQUE INDEX signing_keys_one_per_state_key ON signing_keys (tenant_id, alg, state)
    WHERE state IN ('next', 'active');
