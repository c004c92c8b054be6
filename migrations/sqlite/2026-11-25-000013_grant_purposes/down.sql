ALTER TABLE oauth_grants DROP COLUMN purposes;
