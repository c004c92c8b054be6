ALTER TABLE group_members DROP COLUMN source;
DROP TABLE federation_requests;
DROP TABLE federated_identities;
DROP TABLE federation_domains;
DROP TABLE federation_connections;
