DROP TABLE saml_seen_assertions;
