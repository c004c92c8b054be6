ALTER TABLE oauth_clients DROP COLUMN allowed_origins;
