ALTER TABLE role_assignments DROP COLUMN source;
