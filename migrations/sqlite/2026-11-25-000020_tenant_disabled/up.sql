-- When an operator disabled the tenant: while set, nothing of the tenant is served
-- (every path answers as for an unknown tenant); its data stays, and enabling it
-- again serves it as before.
ALTER TABLE tenants ADD COLUMN disabled_at TIMESTAMP;
