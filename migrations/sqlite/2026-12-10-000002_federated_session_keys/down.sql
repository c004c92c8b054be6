DROP INDEX federated_sessions_upstream;
ALTER TABLE federated_sessions DROP COLUMN upstream_key;
