DROP TABLE oauth_consents;
DROP TABLE refresh_tokens;
DROP TABLE authorization_codes;
DROP TABLE oauth_grants;
