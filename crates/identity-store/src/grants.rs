//! OAuth grants: one authorization of a client (by a user, or by itself), the
//! authorization code that leads into it, and the refresh tokens that carry it on.
//! A grant is the unit of revocation: reusing a code or a rotated refresh token
//! revokes the whole grant, and every token issued from it stops working.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::query_builder::BoxedUpdateStatement;
use gatehouse_core::ids::{SessionId, TenantId, UserId};
use uuid::Uuid;

use serde::{Deserialize, Serialize};

use crate::db::MultiBackend;
use crate::purposes::LegalBasis;
use crate::query::{FromRow, LoadItems, closed, tenant_row, tenant_rows};
use crate::schema::{authorization_codes, oauth_grants, refresh_tokens};
use crate::{AnyConnection, StoreError, StoreResult};

/// What a user's authentication contributed (copied into codes, grants and tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub auth_time: DateTime<Utc>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub tenant_id: TenantId,
    pub client_id: String,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub scope: String,
    pub resources: Vec<String>,
    pub auth_time: Option<DateTime<Utc>>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The issuer identifier the grant's tokens carry.
    pub issuer: Option<String>,
    /// The purposes the grant was issued under, with the versions then in force.
    pub purposes: Vec<GrantPurpose>,
}

/// A purpose a grant was issued under: for a consent-based purpose, the version the
/// user accepted; otherwise the version in force at issuance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantPurpose {
    pub purpose: String,
    pub version: i32,
    pub legal_basis: LegalBasis,
}

impl Grant {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Clone)]
pub struct NewCode {
    pub code_hash: String,
    pub client_id: String,
    pub authentication: Authentication,
    pub redirect_uri: String,
    pub scope: String,
    pub resources: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub client_id: String,
    pub authentication: Authentication,
    pub redirect_uri: String,
    pub scope: String,
    pub resources: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the code is now spent; link the grant with [`link_code`].
    Fresh(Box<AuthorizationCode>),
    /// The code was redeemed before: a replay. `grant_id` is what it was redeemed into.
    Replayed { grant_id: Option<String> },
    /// Unknown, of another tenant, or expired.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid and now spent: issue its successor in `grant_id`.
    Fresh {
        grant_id: String,
    },
    /// Already rotated: someone replays an old token. Revoke the grant.
    Reused {
        grant_id: String,
    },
    Invalid,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = oauth_grants)]
pub(crate) struct GrantRow {
    id: String,
    tenant_id: String,
    client_id: String,
    user_id: Option<String>,
    session_id: Option<String>,
    scope: String,
    resources: String,
    auth_time: Option<NaiveDateTime>,
    acr: Option<String>,
    amr: String,
    created_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    revoked_at: Option<NaiveDateTime>,
    issuer: Option<String>,
    purposes: String,
}

fn corrupt(table: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::corrupt(table, e)
}

fn json_list(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

fn parse_list(table: &'static str, text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| corrupt(table)(&e))
}

impl FromRow for Grant {
    type Row = GrantRow;
    fn from_row(row: GrantRow) -> StoreResult<Grant> {
        let bad = corrupt("oauth_grants");
        Ok(Grant {
            tenant_id: row.tenant_id.parse().map_err(|e| bad(&e))?,
            user_id: row
                .user_id
                .map(|u| u.parse())
                .transpose()
                .map_err(|e| bad(&e))?,
            session_id: row
                .session_id
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| bad(&e))?,
            resources: parse_list("oauth_grants", &row.resources)?,
            amr: parse_list("oauth_grants", &row.amr)?,
            purposes: serde_json::from_str(&row.purposes).map_err(|e| bad(&e))?,
            id: row.id,
            client_id: row.client_id,
            scope: row.scope,
            auth_time: row.auth_time.map(|t| t.and_utc()),
            acr: row.acr,
            created_at: row.created_at.and_utc(),
            expires_at: row.expires_at.and_utc(),
            revoked_at: row.revoked_at.map(|t| t.and_utc()),
            issuer: row.issuer,
        })
    }
}

pub fn insert_code(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    code: NewCode,
) -> StoreResult<()> {
    let auth = &code.authentication;
    diesel::insert_into(authorization_codes::table)
        .values((
            authorization_codes::code_hash.eq(&code.code_hash),
            authorization_codes::tenant_id.eq(tenant.to_string()),
            authorization_codes::client_id.eq(&code.client_id),
            authorization_codes::user_id.eq(auth.user_id.to_string()),
            authorization_codes::session_id.eq(auth.session_id.to_string()),
            authorization_codes::redirect_uri.eq(&code.redirect_uri),
            authorization_codes::scope.eq(&code.scope),
            authorization_codes::resources.eq(json_list(&code.resources)),
            authorization_codes::nonce.eq(&code.nonce),
            authorization_codes::code_challenge.eq(&code.code_challenge),
            authorization_codes::code_challenge_method.eq(&code.code_challenge_method),
            authorization_codes::auth_time.eq(auth.auth_time.naive_utc()),
            authorization_codes::acr.eq(&auth.acr),
            authorization_codes::amr.eq(json_list(&auth.amr)),
            authorization_codes::created_at.eq(now.naive_utc()),
            authorization_codes::expires_at.eq((now + code.lifetime).naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

type CodeRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    NaiveDateTime,
    Option<String>,
    String,
);

/// Spends a code, once. One conditional UPDATE decides, so two concurrent
/// redemptions cannot both win.
pub fn redeem_code(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    code_hash: &str,
) -> StoreResult<CodeRedemption> {
    crate::db::transaction(conn, |conn| {
        let target = || {
            tenant_rows!(authorization_codes, tenant)
                .filter(authorization_codes::code_hash.eq(code_hash))
        };
        let claimed = diesel::update(
            target()
                .filter(authorization_codes::consumed_at.is_null())
                .filter(authorization_codes::expires_at.gt(now.naive_utc())),
        )
        .set(authorization_codes::consumed_at.eq(Some(now.naive_utc())))
        .execute(conn)?;
        if claimed == 0 {
            let previous: Option<(Option<NaiveDateTime>, Option<String>)> = target()
                .select((
                    authorization_codes::consumed_at,
                    authorization_codes::grant_id,
                ))
                .first(conn)
                .optional()?;
            return Ok(match previous {
                Some((Some(_), grant_id)) => CodeRedemption::Replayed { grant_id },
                _ => CodeRedemption::Invalid,
            });
        }
        let row: CodeRow = target()
            .select((
                authorization_codes::client_id,
                authorization_codes::user_id,
                authorization_codes::session_id,
                authorization_codes::redirect_uri,
                authorization_codes::scope,
                authorization_codes::resources,
                authorization_codes::nonce,
                authorization_codes::code_challenge,
                authorization_codes::code_challenge_method,
                authorization_codes::auth_time,
                authorization_codes::acr,
                authorization_codes::amr,
            ))
            .first(conn)?;
        let bad = corrupt("authorization_codes");
        Ok(CodeRedemption::Fresh(Box::new(AuthorizationCode {
            client_id: row.0,
            authentication: Authentication {
                user_id: row.1.parse().map_err(|e| bad(&e))?,
                session_id: row.2.parse().map_err(|e| bad(&e))?,
                auth_time: row.9.and_utc(),
                acr: row.10,
                amr: parse_list("authorization_codes", &row.11)?,
            },
            redirect_uri: row.3,
            scope: row.4,
            resources: parse_list("authorization_codes", &row.5)?,
            nonce: row.6,
            code_challenge: row.7,
            code_challenge_method: row.8,
        })))
    })
}

/// Records which grant a redeemed code produced, so a replay can revoke it.
pub fn link_code(
    conn: &mut AnyConnection,
    tenant: TenantId,
    code_hash: &str,
    grant_id: &str,
) -> StoreResult<()> {
    diesel::update(
        tenant_rows!(authorization_codes, tenant)
            .filter(authorization_codes::code_hash.eq(code_hash)),
    )
    .set(authorization_codes::grant_id.eq(Some(grant_id)))
    .execute(conn)?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct NewGrant {
    pub client_id: String,
    pub issuer: Option<String>,
    pub authentication: Option<Authentication>,
    pub scope: String,
    pub resources: Vec<String>,
    pub purposes: Vec<GrantPurpose>,
    pub lifetime: Duration,
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    new: NewGrant,
) -> StoreResult<Grant> {
    let id = Uuid::now_v7().simple().to_string();
    let auth = new.authentication.as_ref();
    diesel::insert_into(oauth_grants::table)
        .values((
            oauth_grants::id.eq(&id),
            oauth_grants::tenant_id.eq(tenant.to_string()),
            oauth_grants::client_id.eq(&new.client_id),
            oauth_grants::user_id.eq(auth.map(|a| a.user_id.to_string())),
            oauth_grants::session_id.eq(auth.map(|a| a.session_id.to_string())),
            oauth_grants::scope.eq(&new.scope),
            oauth_grants::resources.eq(json_list(&new.resources)),
            oauth_grants::auth_time.eq(auth.map(|a| a.auth_time.naive_utc())),
            oauth_grants::acr.eq(auth.and_then(|a| a.acr.clone())),
            oauth_grants::amr.eq(json_list(
                auth.map(|a| a.amr.as_slice()).unwrap_or_default(),
            )),
            oauth_grants::created_at.eq(now.naive_utc()),
            oauth_grants::expires_at.eq((now + new.lifetime).naive_utc()),
            oauth_grants::issuer.eq(&new.issuer),
            oauth_grants::purposes.eq(serde_json::to_string(&new.purposes)
                .map_err(|e| StoreError::corrupt("oauth_grants", e))?),
        ))
        .execute(conn)?;
    get(conn, tenant, &id)?.ok_or(StoreError::NotFound { entity: "grant" })
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: &str) -> StoreResult<Option<Grant>> {
    tenant_row!(oauth_grants, tenant, id).first_item(conn)
}

type GrantUpdate<'a> = BoxedUpdateStatement<'a, MultiBackend, oauth_grants::table>;

/// The tenant's grants not revoked yet, to be revoked.
fn unrevoked<'a>(tenant: TenantId) -> GrantUpdate<'a> {
    diesel::update(tenant_rows!(oauth_grants, tenant))
        .filter(oauth_grants::revoked_at.is_null())
        .into_boxed()
}

/// Revokes the grants `which` picks, for `reason`; returns how many.
fn revoke_where(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    which: GrantUpdate<'_>,
    reason: &str,
) -> StoreResult<usize> {
    let revoked = closed(
        oauth_grants::revoked_at,
        oauth_grants::revoke_reason,
        now,
        reason,
    );
    Ok(which.set(revoked).execute(conn)?)
}

/// Revokes a grant and with it every token issued from it; false if it was already.
pub fn revoke(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: &str,
    reason: &str,
) -> StoreResult<bool> {
    let this_one = unrevoked(tenant).filter(oauth_grants::id.eq(id));
    Ok(revoke_where(conn, now, this_one, reason)? > 0)
}

/// Revokes every live grant of a user (password reset, account disabled).
pub fn revoke_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    reason: &str,
) -> StoreResult<usize> {
    let of_user = unrevoked(tenant).filter(oauth_grants::user_id.eq(user.to_string()));
    revoke_where(conn, now, of_user, reason)
}

/// The grants issued under any of these sessions, revoked or not (a logout must
/// reach every client the session signed in to).
pub fn for_sessions(
    conn: &mut AnyConnection,
    tenant: TenantId,
    sessions: &[SessionId],
) -> StoreResult<Vec<Grant>> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    tenant_rows!(oauth_grants, tenant)
        .filter(oauth_grants::session_id.eq_any(sessions.iter().map(|s| s.to_string())))
        .load_items(conn)
}

pub fn insert_refresh_token(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    grant_id: &str,
    token_hash: &str,
    idle_lifetime: Duration,
) -> StoreResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::tenant_id.eq(tenant.to_string()),
            refresh_tokens::grant_id.eq(grant_id),
            refresh_tokens::created_at.eq(now.naive_utc()),
            refresh_tokens::idle_expires_at.eq((now + idle_lifetime).naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Spends a refresh token (rotation). A token used before means replay.
pub fn use_refresh_token(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    token_hash: &str,
) -> StoreResult<RefreshUse> {
    crate::db::transaction(conn, |conn| {
        let target = || {
            tenant_rows!(refresh_tokens, tenant).filter(refresh_tokens::token_hash.eq(token_hash))
        };
        let claimed = diesel::update(
            target()
                .filter(refresh_tokens::used_at.is_null())
                .filter(refresh_tokens::idle_expires_at.gt(now.naive_utc())),
        )
        .set(refresh_tokens::used_at.eq(Some(now.naive_utc())))
        .execute(conn)?;
        let row: Option<(String, Option<NaiveDateTime>)> = target()
            .select((refresh_tokens::grant_id, refresh_tokens::used_at))
            .first(conn)
            .optional()?;
        Ok(match (claimed, row) {
            (1, Some((grant_id, _))) => RefreshUse::Fresh { grant_id },
            (_, Some((grant_id, Some(_)))) => RefreshUse::Reused { grant_id },
            _ => RefreshUse::Invalid,
        })
    })
}

/// A refresh token that could still be spent: never used and not idle too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRefreshToken {
    pub grant_id: String,
    pub created_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
}

/// The refresh token with this hash if it could still be spent (introspection);
/// reads only, unlike [`use_refresh_token`].
pub fn live_refresh_token(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    token_hash: &str,
) -> StoreResult<Option<LiveRefreshToken>> {
    let row: Option<(String, NaiveDateTime, NaiveDateTime)> = tenant_rows!(refresh_tokens, tenant)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .filter(refresh_tokens::used_at.is_null())
        .filter(refresh_tokens::idle_expires_at.gt(now.naive_utc()))
        .select((
            refresh_tokens::grant_id,
            refresh_tokens::created_at,
            refresh_tokens::idle_expires_at,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.map(|(grant_id, created_at, idle_expires_at)| LiveRefreshToken {
            grant_id,
            created_at: created_at.and_utc(),
            idle_expires_at: idle_expires_at.and_utc(),
        }),
    )
}

/// The grant a refresh token belongs to (used or not), for revocation by the client.
pub fn refresh_token_grant(
    conn: &mut AnyConnection,
    tenant: TenantId,
    token_hash: &str,
) -> StoreResult<Option<String>> {
    Ok(tenant_rows!(refresh_tokens, tenant)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select(refresh_tokens::grant_id)
        .first(conn)
        .optional()?)
}

/// Revokes the user's live grants to one client: all of them (`covering` = None, an
/// app's access revoked) or those whose scope holds any of `covering` (consent for a
/// purpose withdrawn). Returns the ids revoked.
pub fn revoke_for_user_and_client(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    covering: Option<&[String]>,
    reason: &str,
) -> StoreResult<Vec<String>> {
    revoke_live(conn, now, tenant, user, Some(client_id), covering, reason)
}

/// Revokes the user's live grants, to any client, whose scope holds any of
/// `covering` (an entitlement the tokens of those scopes carry was taken away).
/// Returns the ids revoked.
pub fn revoke_for_user_with_scopes(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    covering: &[String],
    reason: &str,
) -> StoreResult<Vec<String>> {
    if covering.is_empty() {
        return Ok(Vec::new());
    }
    revoke_live(conn, now, tenant, user, None, Some(covering), reason)
}

fn revoke_live(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: Option<&str>,
    covering: Option<&[String]>,
    reason: &str,
) -> StoreResult<Vec<String>> {
    let mut query = tenant_rows!(oauth_grants, tenant)
        .filter(oauth_grants::user_id.eq(user.to_string()))
        .filter(oauth_grants::revoked_at.is_null())
        .select((oauth_grants::id, oauth_grants::scope))
        .into_boxed();
    if let Some(client_id) = client_id {
        query = query.filter(oauth_grants::client_id.eq(client_id.to_owned()));
    }
    // Scopes are one space-separated column: matched in Rust, the same way on both
    // backends. A user's live grants are few.
    let live: Vec<(String, String)> = query.load(conn)?;
    let chosen: Vec<String> = live
        .into_iter()
        .filter(|(_, scope)| {
            covering.is_none_or(|wanted| scope.split(' ').any(|s| wanted.iter().any(|w| w == s)))
        })
        .map(|(id, _)| id)
        .collect();
    if chosen.is_empty() {
        return Ok(chosen);
    }
    let chosen_ones = unrevoked(tenant).filter(oauth_grants::id.eq_any(&chosen));
    revoke_where(conn, now, chosen_ones, reason)?;
    Ok(chosen)
}

/// The clients holding a live grant of the user, by client id.
pub fn live_clients_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<String>> {
    Ok(tenant_rows!(oauth_grants, tenant)
        .filter(oauth_grants::user_id.eq(user.to_string()))
        .filter(oauth_grants::revoked_at.is_null())
        .filter(oauth_grants::expires_at.gt(now.naive_utc()))
        .select(oauth_grants::client_id)
        .distinct()
        .order(oauth_grants::client_id.asc())
        .load(conn)?)
}
