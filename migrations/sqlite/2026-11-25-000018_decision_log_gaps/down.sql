ALTER TABLE decision_log DROP COLUMN skipped;
ALTER TABLE decision_log DROP COLUMN unknown_keys;
