-- Purposes and consent records. A purpose is why a client may use data (the
-- scopes it covers, its legal basis); every change of its wording or scopes is a
-- new version row, so the text a user accepted stays readable. Consent is an
-- append-only history of grants and withdrawals per user, client and purpose: a
-- withdrawal is a new row, never an edit of the grant it ends.

CREATE TABLE consent_purposes (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    scopes TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, slug, version)
);

-- `kind` is 'granted' or 'withdrawn'; `version` is the purpose version granted,
-- or for a withdrawal the version it ends. No foreign key to oauth_clients: the
-- history outlives a deleted client.
CREATE TABLE consent_events (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    channel TEXT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, purpose, version) REFERENCES consent_purposes (tenant_id, slug, version)
);
CREATE INDEX consent_events_user_idx ON consent_events (tenant_id, user_id, client_id, purpose, occurred_at);

-- Rows are never edited. DELETE stays possible: erasing a user or tenant cascades.
CREATE TRIGGER consent_purposes_no_update BEFORE UPDATE ON consent_purposes
BEGIN
    SELECT RAISE(ABORT, 'consent_purposes is append-only');
END;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only');
END;
