-- How many users each tenant has, kept in the transaction of every user created or
-- deleted, so an unfiltered listing (SCIM's totalResults) needs no count over a
-- million rows. Sixteen rows a tenant, one picked by the user's id, so concurrent
-- sign-ups seldom wait on the same row; the total is their sum.
CREATE TABLE user_counts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    users BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, shard)
);
INSERT INTO user_counts (tenant_id, shard, users)
    SELECT id, 0, (SELECT COUNT(*) FROM users WHERE users.tenant_id = tenants.id) FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 1, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 2, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 3, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 4, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 5, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 6, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 7, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 8, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 9, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 10, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 11, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 12, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 13, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 14, 0 FROM tenants;
INSERT INTO user_counts (tenant_id, shard, users) SELECT id, 15, 0 FROM tenants;
