-- Passkey (WebAuthn) ceremonies between their two steps. The id handed to the
-- browser is stored only as SHA-256; `binding` names the browser (a digest of its
-- session or pre-session cookie) and the finishing request must present the same;
-- `state` is the server half of the ceremony (challenge, allowed credentials),
-- sealed with the master key. A row is taken (deleted) by the first attempt to
-- finish, so a challenge is used at most once; expired rows are pruned.
CREATE TABLE webauthn_challenges (
    id_hash TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    user_id TEXT,
    binding TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webauthn_challenges_expiry_idx ON webauthn_challenges (expires_at);

-- What a credential is found by when its user is not known yet: a passkey's
-- credential id (base64url) in a discoverable sign-in. Unique per tenant and kind,
-- so one authenticator credential can never belong to two accounts.
ALTER TABLE credentials ADD COLUMN lookup_key TEXT;
CREATE UNIQUE INDEX credentials_lookup_key_idx ON credentials (tenant_id, kind, lookup_key);
