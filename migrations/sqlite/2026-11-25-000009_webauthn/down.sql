DROP INDEX credentials_lookup_key_idx;
ALTER TABLE credentials DROP COLUMN lookup_key;
DROP TABLE webauthn_challenges;
