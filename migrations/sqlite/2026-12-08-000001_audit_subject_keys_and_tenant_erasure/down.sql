DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
ALTER TABLE audit_events DROP COLUMN sealed_for;
DROP TABLE audit_subject_keys;
