//! Hand-written diesel schema, shared by both backends (print-schema would emit
//! backend-specific types that MultiConnection cannot carry).

diesel::table! {
    tenants (id) {
        id -> Text,
        slug -> Text,
        display_name -> Text,
        settings -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        tenant_id -> Text,
        user_name -> Text,
        user_name_key -> Text,
        user_name_skeleton -> Nullable<Text>,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        middle_name -> Nullable<Text>,
        honorific_prefix -> Nullable<Text>,
        honorific_suffix -> Nullable<Text>,
        display_name -> Nullable<Text>,
        nick_name -> Nullable<Text>,
        title -> Nullable<Text>,
        user_type -> Nullable<Text>,
        preferred_language -> Nullable<Text>,
        locale -> Nullable<Text>,
        timezone -> Nullable<Text>,
        active -> Bool,
        external_id -> Nullable<Text>,
        phone_numbers -> Text,
        custom_attributes -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
        name_formatted -> Nullable<Text>,
    }
}

diesel::table! {
    user_emails (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Text,
        value -> Text,
        value_key -> Text,
        value_skeleton -> Nullable<Text>,
        kind -> Nullable<Text>,
        is_primary -> Bool,
        verified -> Bool,
        position -> Integer,
    }
}

diesel::table! {
    groups (id) {
        id -> Text,
        tenant_id -> Text,
        display_name -> Text,
        display_name_key -> Text,
        external_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
    }
}

diesel::table! {
    group_members (group_id, user_id) {
        tenant_id -> Text,
        group_id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        source -> Nullable<Text>,
    }
}

diesel::table! {
    roles (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        name_key -> Text,
        description -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
    }
}

diesel::table! {
    role_assignments (role_id, user_id) {
        tenant_id -> Text,
        role_id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        source -> Nullable<Text>,
    }
}

diesel::table! {
    credentials (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Text,
        kind -> Text,
        label -> Nullable<Text>,
        data -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        lookup_key -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        tenant_id -> Text,
        seq -> BigInt,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        ip -> Nullable<Text>,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
        sealed_for -> Nullable<Text>,
    }
}

diesel::table! {
    audit_subject_keys (tenant_id, subject) {
        tenant_id -> Text,
        subject -> Text,
        sealed_key -> Nullable<Text>,
        created_at -> Timestamp,
        erased_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_heads (tenant_id) {
        tenant_id -> Text,
        last_seq -> BigInt,
        last_hash -> Text,
        sealed_key -> Nullable<Text>,
        keyed_from_seq -> Nullable<BigInt>,
        head_mac -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        idle_expires_at -> Timestamp,
        absolute_expires_at -> Timestamp,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        auth_methods -> Text,
        aal -> Integer,
        ended_at -> Nullable<Timestamp>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    one_time_tokens (token_hash) {
        token_hash -> Text,
        tenant_id -> Text,
        user_id -> Text,
        purpose -> Text,
        payload -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        consumed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    rate_limits (tenant_id, bucket) {
        tenant_id -> Text,
        bucket -> Text,
        failures -> Integer,
        window_started_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oauth_clients (id) {
        id -> Text,
        tenant_id -> Text,
        client_id -> Text,
        name -> Text,
        client_type -> Text,
        auth_method -> Text,
        secret_hash -> Nullable<Text>,
        jwks -> Nullable<Text>,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        grant_types -> Text,
        scopes -> Text,
        audiences -> Text,
        default_audience -> Nullable<Text>,
        access_token_ttl_secs -> BigInt,
        refresh_token_ttl_secs -> BigInt,
        refresh_idle_ttl_secs -> BigInt,
        id_token_alg -> Text,
        require_pkce -> Bool,
        require_par -> Bool,
        first_party -> Bool,
        backchannel_logout_uri -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
        allowed_origins -> Text,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        tenant_id -> Text,
        alg -> Text,
        private_key -> Text,
        public_jwk -> Text,
        state -> Text,
        created_at -> Timestamp,
        activated_at -> Nullable<Timestamp>,
        retired_at -> Nullable<Timestamp>,
        publish_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    pushed_authorization_requests (request_uri_hash) {
        request_uri_hash -> Text,
        tenant_id -> Text,
        client_id -> Text,
        parameters -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        consumed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    client_assertion_jtis (tenant_id, client_id, jti) {
        tenant_id -> Text,
        client_id -> Text,
        jti -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    revoked_tokens (tenant_id, jti) {
        tenant_id -> Text,
        jti -> Text,
        expires_at -> Timestamp,
        revoked_at -> Timestamp,
    }
}

diesel::table! {
    oauth_grants (id) {
        id -> Text,
        tenant_id -> Text,
        client_id -> Text,
        user_id -> Nullable<Text>,
        session_id -> Nullable<Text>,
        scope -> Text,
        resources -> Text,
        auth_time -> Nullable<Timestamp>,
        acr -> Nullable<Text>,
        amr -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        revoke_reason -> Nullable<Text>,
        issuer -> Nullable<Text>,
        purposes -> Text,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Text,
        tenant_id -> Text,
        client_id -> Text,
        user_id -> Text,
        session_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        resources -> Text,
        nonce -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        code_challenge_method -> Nullable<Text>,
        auth_time -> Timestamp,
        acr -> Nullable<Text>,
        amr -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        consumed_at -> Nullable<Timestamp>,
        grant_id -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        tenant_id -> Text,
        grant_id -> Text,
        created_at -> Timestamp,
        idle_expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oauth_consents (tenant_id, user_id, client_id) {
        tenant_id -> Text,
        user_id -> Text,
        client_id -> Text,
        scopes -> Text,
        granted_at -> Timestamp,
    }
}

diesel::table! {
    account_recoveries (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Text,
        recovery_token_hash -> Text,
        cancel_token_hash -> Text,
        created_at -> Timestamp,
        ready_at -> Timestamp,
        expires_at -> Timestamp,
        cancelled_at -> Nullable<Timestamp>,
        cancel_reason -> Nullable<Text>,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webauthn_challenges (id_hash) {
        id_hash -> Text,
        tenant_id -> Text,
        purpose -> Text,
        user_id -> Nullable<Text>,
        binding -> Text,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    consent_purposes (tenant_id, slug, version) {
        tenant_id -> Text,
        slug -> Text,
        version -> Integer,
        name -> Text,
        description -> Text,
        scopes -> Text,
        legal_basis -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    consent_events (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Text,
        client_id -> Text,
        purpose -> Text,
        version -> Integer,
        kind -> Text,
        occurred_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        channel -> Text,
    }
}

diesel::table! {
    policy_sets (tenant_id, version) {
        tenant_id -> Text,
        version -> BigInt,
        text -> Text,
        created_at -> Timestamp,
        created_by -> Text,
    }
}

diesel::table! {
    decision_log (id) {
        id -> Text,
        tenant_id -> Text,
        at -> Timestamp,
        request -> Text,
        decision -> Bool,
        reason -> Nullable<Text>,
        policies -> Text,
        request_id -> Nullable<Text>,
        unknown_keys -> Nullable<Text>,
        skipped -> Nullable<BigInt>,
    }
}

diesel::joinable!(users -> tenants (tenant_id));
diesel::joinable!(user_emails -> users (user_id));
diesel::joinable!(group_members -> groups (group_id));
diesel::joinable!(role_assignments -> roles (role_id));
diesel::joinable!(credentials -> users (user_id));

diesel::table! {
    master_key_canary (id) {
        id -> Text,
        sealed -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    user_counts (tenant_id, shard) {
        tenant_id -> Text,
        shard -> Integer,
        users -> BigInt,
    }
}

diesel::table! {
    federation_connections (id) {
        id -> Text,
        tenant_id -> Text,
        slug -> Text,
        kind -> Text,
        display_name -> Text,
        logo_url -> Nullable<Text>,
        enabled -> Bool,
        jit_provisioning -> Bool,
        trust_verified_email -> Bool,
        settings -> Text,
        mapping -> Text,
        secrets -> Nullable<Text>,
        last_error -> Nullable<Text>,
        last_error_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
    }
}

diesel::table! {
    federation_domains (tenant_id, domain) {
        tenant_id -> Text,
        domain -> Text,
        connection_id -> Text,
    }
}

diesel::table! {
    federated_identities (id) {
        id -> Text,
        tenant_id -> Text,
        connection_id -> Text,
        subject -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        last_sign_in_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    federation_requests (id_hash) {
        id_hash -> Text,
        tenant_id -> Text,
        connection_id -> Text,
        purpose -> Text,
        user_id -> Nullable<Text>,
        binding -> Text,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    federated_sessions (session_id) {
        session_id -> Text,
        tenant_id -> Text,
        connection_id -> Text,
        upstream -> Text,
        created_at -> Timestamp,
        upstream_key -> Nullable<Text>,
    }
}

diesel::table! {
    saml_seen_assertions (tenant_id, connection_id, assertion_id) {
        tenant_id -> Text,
        connection_id -> Text,
        assertion_id -> Text,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(federated_sessions -> sessions (session_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    users,
    user_counts,
    user_emails,
    groups,
    group_members,
    roles,
    role_assignments,
    credentials,
    webauthn_challenges,
    audit_events,
    audit_heads,
    audit_subject_keys,
    sessions,
    one_time_tokens,
    rate_limits,
    signing_keys,
    oauth_clients,
    pushed_authorization_requests,
    revoked_tokens,
    client_assertion_jtis,
    oauth_grants,
    authorization_codes,
    refresh_tokens,
    oauth_consents,
    account_recoveries,
    consent_purposes,
    consent_events,
    federation_connections,
    federation_domains,
    federated_identities,
    federation_requests,
    saml_seen_assertions,
    federated_sessions,
);
