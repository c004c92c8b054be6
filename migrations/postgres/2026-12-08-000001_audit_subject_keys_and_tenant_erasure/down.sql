CREATE OR REPLACE FUNCTION gatehouse_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
ALTER TABLE audit_events DROP COLUMN sealed_for;
DROP TABLE audit_subject_keys;
