-- Who gave a role: NULL for an operator (API, CLI, SCIM), `connection:<id>` for a
-- partner's mapping rules, which then take back only what they gave.
ALTER TABLE role_assignments ADD COLUMN source TEXT;
