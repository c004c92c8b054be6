-- Identity store, SQLite flavour. Keep in step with ../../postgres/: the
-- `migration_trees_agree` test compares the resulting tables and columns.
-- Ids are TEXT (UUIDv7), times are naive UTC TIMESTAMP, JSON is TEXT: the types
-- diesel's MultiConnection can carry on both backends.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL,
    given_name TEXT,
    family_name TEXT,
    middle_name TEXT,
    honorific_prefix TEXT,
    honorific_suffix TEXT,
    display_name TEXT,
    nick_name TEXT,
    title TEXT,
    user_type TEXT,
    preferred_language TEXT,
    locale TEXT,
    timezone TEXT,
    active BOOLEAN NOT NULL,
    external_id TEXT,
    phone_numbers TEXT NOT NULL DEFAULT '[]',
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_tenant_id_key ON users (tenant_id, id);
CREATE UNIQUE INDEX users_user_name_key ON users (tenant_id, user_name_key);
CREATE INDEX users_external_id_idx ON users (tenant_id, external_id);

CREATE TABLE user_emails (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    value TEXT NOT NULL,
    value_key TEXT NOT NULL,
    kind TEXT,
    is_primary BOOLEAN NOT NULL,
    verified BOOLEAN NOT NULL,
    position INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX user_emails_primary_value_key ON user_emails (tenant_id, value_key) WHERE is_primary;
CREATE UNIQUE INDEX user_emails_one_primary_key ON user_emails (user_id) WHERE is_primary;
CREATE INDEX user_emails_value_idx ON user_emails (tenant_id, value_key);
CREATE INDEX user_emails_user_idx ON user_emails (user_id, position);

CREATE TABLE groups (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    display_name_key TEXT NOT NULL,
    external_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_tenant_id_key ON groups (tenant_id, id);
CREATE UNIQUE INDEX groups_display_name_key ON groups (tenant_id, display_name_key);

CREATE TABLE group_members (
    tenant_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX group_members_user_idx ON group_members (tenant_id, user_id);

CREATE TABLE roles (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_tenant_id_key ON roles (tenant_id, id);
CREATE UNIQUE INDEX roles_name_key ON roles (tenant_id, name_key);

CREATE TABLE role_assignments (
    tenant_id TEXT NOT NULL,
    role_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (role_id, user_id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX role_assignments_user_idx ON role_assignments (tenant_id, user_id);

-- `data` is always sealed with the master key (AEAD bound to the row); the store
-- never holds a credential in clear.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    data TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX credentials_user_idx ON credentials (tenant_id, user_id, kind);

-- Append-only and hash-chained per tenant. No foreign key to tenants: the audit
-- trail outlives what it describes.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    ip TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_events_seq_key ON audit_events (tenant_id, seq);
CREATE INDEX audit_events_time_idx ON audit_events (tenant_id, occurred_at);

-- The tip of each tenant's chain. Appenders lock this row first, which serialises
-- appends per tenant on both backends.
CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY NOT NULL,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
