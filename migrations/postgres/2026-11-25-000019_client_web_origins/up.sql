-- The web origins a browser app served from may call the token, UserInfo and
-- revocation endpoints from (CORS), as a JSON array of ASCII-serialised origins
-- ("https://app.example"); empty for clients that are not browser apps.
ALTER TABLE oauth_clients ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
