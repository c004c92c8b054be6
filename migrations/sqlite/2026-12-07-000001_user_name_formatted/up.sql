-- SCIM's name.formatted (RFC 7643 §4.1.1): the full name as the person or their
-- provisioning system writes it, kept as given rather than composed.
ALTER TABLE users ADD COLUMN name_formatted TEXT;
