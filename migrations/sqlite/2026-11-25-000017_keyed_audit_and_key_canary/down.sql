DROP TABLE master_key_canary;
ALTER TABLE audit_heads DROP COLUMN head_mac;
ALTER TABLE audit_heads DROP COLUMN keyed_from_seq;
ALTER TABLE audit_heads DROP COLUMN sealed_key;
