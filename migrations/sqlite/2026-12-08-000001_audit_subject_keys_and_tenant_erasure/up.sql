-- Personal data in audit events is sealed with a key of the user it is about; erasing
-- the user destroys the key (sealed_key NULL, erased_at set), so the events stay in
-- the chain, verifiable, and their personal data becomes unreadable.
-- Like the chain itself, it outlives nothing by cascade: deleting a tenant deletes
-- its rows explicitly.
CREATE TABLE audit_subject_keys (
    tenant_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    sealed_key TEXT,
    created_at TIMESTAMP NOT NULL,
    erased_at TIMESTAMP,
    PRIMARY KEY (tenant_id, subject)
);

-- The user whose key seals the event's personal data (its `ip` and `details`).
ALTER TABLE audit_events ADD COLUMN sealed_for TEXT;

-- A deleted tenant's audit trail goes with it: an event may be deleted once its
-- tenant row is gone (in the transaction that deletes the tenant); otherwise the
-- log stays append-only.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
