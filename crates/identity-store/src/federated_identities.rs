//! Upstream identities linked to local users: a connection's subject (OIDC `sub`)
//! names one user of the tenant. The subject is compared byte for byte — never
//! case-folded, never an email — and a user holds at most one identity per
//! connection.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{ConnectionId, FederatedIdentityId, TenantId, UserId};

use crate::error::{map_missing_reference, map_unique, parse_column};
use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::{federated_identities as identities, federation_connections as connections};
use crate::{AnyConnection, StoreError, StoreResult};

const ENTITY: &str = "federated identity";
const TABLE: &str = "federated_identities";

#[derive(Debug, Clone, PartialEq)]
pub struct FederatedIdentity {
    pub id: FederatedIdentityId,
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub subject: String,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = identities)]
pub(crate) struct IdentityRow {
    id: String,
    tenant_id: String,
    connection_id: String,
    subject: String,
    user_id: String,
    created_at: NaiveDateTime,
    last_sign_in_at: Option<NaiveDateTime>,
}

impl FromRow for FederatedIdentity {
    type Row = IdentityRow;
    fn from_row(row: IdentityRow) -> StoreResult<FederatedIdentity> {
        Ok(FederatedIdentity {
            id: parse_column(TABLE, &row.id)?,
            tenant_id: parse_column(TABLE, &row.tenant_id)?,
            connection_id: parse_column(TABLE, &row.connection_id)?,
            user_id: parse_column(TABLE, &row.user_id)?,
            subject: row.subject,
            created_at: row.created_at.and_utc(),
            last_sign_in_at: row.last_sign_in_at.map(|at| at.and_utc()),
        })
    }
}

/// Links `subject` of `connection` to `user`. `Conflict` on `subject` when the
/// identity is linked already (to anyone), on `user` when the user has an identity
/// at this connection; `NotFound` when the user or connection is not the tenant's.
pub fn link(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    connection: ConnectionId,
    subject: &str,
    user: UserId,
) -> StoreResult<FederatedIdentity> {
    if subject.is_empty() || subject.len() > 255 {
        return Err(StoreError::invalid(
            ENTITY,
            "the subject must be 1–255 bytes",
        ));
    }
    let row = IdentityRow {
        id: FederatedIdentityId::new().to_string(),
        tenant_id: tenant.to_string(),
        connection_id: connection.to_string(),
        subject: subject.to_owned(),
        user_id: user.to_string(),
        created_at: now.naive_utc(),
        last_sign_in_at: Some(now.naive_utc()),
    };
    diesel::insert_into(identities::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match map_missing_reference("user")(e) {
            StoreError::Database(e) => map_unique(
                ENTITY,
                &[
                    (
                        "federated_identities_tenant_id_connection_id_subject_key",
                        "federated_identities.subject",
                        "subject",
                    ),
                    (
                        "federated_identities_tenant_id_connection_id_user_id_key",
                        "federated_identities.user_id",
                        "user",
                    ),
                ],
            )(e),
            other => other,
        })?;
    FederatedIdentity::from_row(row)
}

/// The identity `subject` of `connection`, if linked.
pub fn find(
    conn: &mut AnyConnection,
    tenant: TenantId,
    connection: ConnectionId,
    subject: &str,
) -> StoreResult<Option<FederatedIdentity>> {
    tenant_rows!(identities, tenant)
        .filter(identities::connection_id.eq(connection.to_string()))
        .filter(identities::subject.eq(subject))
        .first_item(conn)
}

/// The user's linked identities, oldest first.
pub fn of_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<FederatedIdentity>> {
    tenant_rows!(identities, tenant)
        .filter(identities::user_id.eq(user.to_string()))
        .order(identities::created_at.asc())
        .load_items(conn)
}

/// Records a sign-in through the identity.
pub fn touch(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: FederatedIdentityId,
) -> StoreResult<()> {
    diesel::update(tenant_rows!(identities, tenant).filter(identities::id.eq(id.to_string())))
        .set(identities::last_sign_in_at.eq(now.naive_utc()))
        .execute(conn)?;
    Ok(())
}

/// Removes the user's identity `id`; false when the user has no such identity.
pub fn unlink(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    id: FederatedIdentityId,
) -> StoreResult<Option<FederatedIdentity>> {
    let found: Option<FederatedIdentity> = tenant_rows!(identities, tenant)
        .filter(identities::id.eq(id.to_string()))
        .filter(identities::user_id.eq(user.to_string()))
        .first_item(conn)?;
    if found.is_some() {
        diesel::delete(tenant_rows!(identities, tenant).filter(identities::id.eq(id.to_string())))
            .execute(conn)?;
    }
    Ok(found)
}

/// A connection a user has an identity at, as policies name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedConnection {
    pub slug: String,
    /// The partner's name (the connection's display name).
    pub partner: String,
}

/// The connections each of `users` (at most [`crate::MAX_BATCH`]) has an identity
/// at, by slug; users with none are left out. One query for all.
pub fn connections_of_users(
    conn: &mut AnyConnection,
    tenant: TenantId,
    users: &[UserId],
) -> StoreResult<HashMap<UserId, Vec<LinkedConnection>>> {
    let ids = crate::batch_ids(users)?;
    let rows: Vec<(String, String, String)> = identities::table
        .inner_join(
            connections::table.on(connections::id
                .eq(identities::connection_id)
                .and(connections::tenant_id.eq(identities::tenant_id))),
        )
        .filter(identities::tenant_id.eq(tenant.to_string()))
        .filter(identities::user_id.eq_any(&ids))
        .order((identities::user_id.asc(), connections::slug.asc()))
        .select((
            identities::user_id,
            connections::slug,
            connections::display_name,
        ))
        .load(conn)?;
    let mut found: HashMap<UserId, Vec<LinkedConnection>> = HashMap::new();
    for (user, slug, partner) in rows {
        found
            .entry(parse_column(TABLE, &user)?)
            .or_default()
            .push(LinkedConnection { slug, partner });
    }
    Ok(found)
}
