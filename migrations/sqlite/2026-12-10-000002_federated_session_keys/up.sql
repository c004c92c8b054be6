-- A SAML identity provider ends its user's sessions by NameID (single logout):
-- the SHA-256 of the NameID finds them without unsealing every row.
ALTER TABLE federated_sessions ADD COLUMN upstream_key TEXT;
CREATE INDEX federated_sessions_upstream ON federated_sessions (tenant_id, connection_id, upstream_key);
