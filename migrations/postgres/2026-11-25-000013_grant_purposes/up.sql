-- The purposes (and versions) each grant was issued under, as a JSON list of
-- {"purpose", "version", "legal_basis"}: what introspection reports, and what a
-- refresh checks is still in force.
ALTER TABLE oauth_grants ADD COLUMN purposes TEXT NOT NULL DEFAULT '[]';
