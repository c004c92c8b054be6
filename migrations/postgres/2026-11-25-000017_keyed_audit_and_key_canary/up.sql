-- The audit chain is keyed: each tenant's HMAC key, sealed under the master key;
-- the first keyed sequence number (older events keep their plain SHA-256 hashes);
-- and the head's own MAC over (last_seq, last_hash, keyed_from_seq).
ALTER TABLE audit_heads ADD COLUMN sealed_key TEXT;
ALTER TABLE audit_heads ADD COLUMN keyed_from_seq BIGINT;
ALTER TABLE audit_heads ADD COLUMN head_mac TEXT;

-- A value sealed under the master key at first start: a node whose configured keys
-- cannot open it refuses to start instead of failing every request later.
CREATE TABLE master_key_canary (
    id TEXT PRIMARY KEY NOT NULL,
    sealed TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
