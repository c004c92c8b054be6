-- Cedar policy sets per tenant, append-only: each save is a new version and the
-- highest version serves. Old versions stay for audit and rollback (load one again).
CREATE TABLE policy_sets (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    text TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- What the policy decision point decided: the request (JSON), the decision, the
-- reason code and the determining policy ids (JSON array). Written in batches off
-- the request path, so a crash may lose the last few hundred milliseconds.
CREATE TABLE decision_log (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at TIMESTAMP NOT NULL,
    request TEXT NOT NULL,
    decision BOOLEAN NOT NULL,
    reason TEXT,
    policies TEXT NOT NULL,
    request_id TEXT
);
CREATE INDEX decision_log_tenant_at_idx ON decision_log (tenant_id, at);
