ALTER TABLE oauth_grants DROP COLUMN issuer;
DROP INDEX oauth_grants_session_idx;
DROP TABLE pushed_authorization_requests;
