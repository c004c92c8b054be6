//! Consent purposes: why a client may use a user's data — the scopes it covers and
//! the legal basis. A purpose is never edited in place: a change of wording or
//! scopes is a new row with the next version, so the exact text a user accepted
//! stays readable for as long as their consent record points at it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;
use serde::{Deserialize, Serialize};

use crate::error::{is_unique_violation, map_unique};
use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::consent_purposes;
use crate::{AnyConnection, StoreError, StoreResult};

/// The lawful basis for processing (GDPR Art. 6(1)); only `Consent` can be
/// withdrawn by the user, but every purpose is recorded the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterest,
}

impl LegalBasis {
    pub const ALL: [LegalBasis; 6] = [
        LegalBasis::Consent,
        LegalBasis::Contract,
        LegalBasis::LegalObligation,
        LegalBasis::VitalInterests,
        LegalBasis::PublicTask,
        LegalBasis::LegitimateInterest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal_obligation",
            LegalBasis::VitalInterests => "vital_interests",
            LegalBasis::PublicTask => "public_task",
            LegalBasis::LegitimateInterest => "legitimate_interest",
        }
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LegalBasis {
    type Err = StoreError;
    fn from_str(text: &str) -> StoreResult<LegalBasis> {
        LegalBasis::ALL
            .into_iter()
            .find(|basis| basis.as_str() == text)
            .ok_or_else(|| StoreError::invalid("purpose", format!("unknown legal basis `{text}`")))
    }
}

/// One version of a purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purpose {
    pub tenant_id: TenantId,
    /// Stable identifier, e.g. `newsletter`; consent records name it.
    pub slug: String,
    /// 1 for a new purpose, one more for each change.
    pub version: i32,
    pub name: String,
    pub description: String,
    /// The OAuth scopes this purpose covers: withdrawing it ends grants holding any.
    pub scopes: Vec<String>,
    pub legal_basis: LegalBasis,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeData {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub legal_basis: LegalBasis,
}

/// What a new version changes; the slug and the legal basis stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeChange {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = consent_purposes)]
pub(crate) struct PurposeRow {
    tenant_id: String,
    slug: String,
    version: i32,
    name: String,
    description: String,
    scopes: String,
    legal_basis: String,
    created_at: NaiveDateTime,
}

impl FromRow for Purpose {
    type Row = PurposeRow;
    fn from_row(row: PurposeRow) -> StoreResult<Purpose> {
        let bad = |e: &dyn fmt::Display| StoreError::corrupt("consent_purposes", e);
        Ok(Purpose {
            tenant_id: row.tenant_id.parse().map_err(|e| bad(&e))?,
            scopes: serde_json::from_str(&row.scopes).map_err(|e| bad(&e))?,
            legal_basis: row.legal_basis.parse().map_err(|e| bad(&e))?,
            slug: row.slug,
            version: row.version,
            name: row.name,
            description: row.description,
            created_at: row.created_at.and_utc(),
        })
    }
}

/// Slugs appear in URLs, tokens of the PDP and receipts: keep them plain.
fn check_slug(slug: &str) -> StoreResult<()> {
    let plain = slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if slug.is_empty() || slug.len() > 64 || !plain {
        return Err(StoreError::invalid(
            "purpose",
            "the slug must be 1 to 64 characters of a-z, 0-9, `_` and `-`",
        ));
    }
    Ok(())
}

fn check_text(name: &str, scopes: &[String]) -> StoreResult<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid("purpose", "the name must not be empty"));
    }
    // Scope tokens per RFC 6749 §3.3: no spaces, quotes or backslashes.
    let bad_scope = scopes.iter().any(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    });
    if bad_scope {
        return Err(StoreError::invalid(
            "purpose",
            "a scope is not a scope token",
        ));
    }
    Ok(())
}

fn insert(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    purpose: &Purpose,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(consent_purposes::table)
        .values((
            consent_purposes::tenant_id.eq(tenant.to_string()),
            consent_purposes::slug.eq(&purpose.slug),
            consent_purposes::version.eq(purpose.version),
            consent_purposes::name.eq(&purpose.name),
            consent_purposes::description.eq(&purpose.description),
            consent_purposes::scopes
                .eq(serde_json::Value::from(purpose.scopes.clone()).to_string()),
            consent_purposes::legal_basis.eq(purpose.legal_basis.as_str()),
            consent_purposes::created_at.eq(now.naive_utc()),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Creates version 1 of a purpose; `Conflict` if the slug is taken in the tenant.
pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    data: PurposeData,
) -> StoreResult<Purpose> {
    check_slug(&data.slug)?;
    check_text(&data.name, &data.scopes)?;
    let purpose = Purpose {
        tenant_id: tenant,
        slug: data.slug,
        version: 1,
        name: data.name,
        description: data.description,
        scopes: data.scopes,
        legal_basis: data.legal_basis,
        created_at: now,
    };
    insert(conn, now, tenant, &purpose).map_err(map_unique(
        "purpose",
        &[("consent_purposes_pkey", "consent_purposes.slug", "slug")],
    ))?;
    Ok(purpose)
}

/// Adds the next version of a purpose. `expected_version` is the version the caller
/// read: if another version was added since, `StaleVersion` (two concurrent changes
/// cannot both become version n + 1: the primary key refuses the second).
pub fn new_version(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    slug: &str,
    expected_version: i32,
    change: PurposeChange,
) -> StoreResult<Purpose> {
    check_text(&change.name, &change.scopes)?;
    crate::db::transaction(conn, |conn| {
        let current = get(conn, tenant, slug)?.ok_or(StoreError::NotFound { entity: "purpose" })?;
        if current.version != expected_version {
            return Err(StoreError::StaleVersion { entity: "purpose" });
        }
        let next = Purpose {
            version: current.version + 1,
            name: change.name,
            description: change.description,
            scopes: change.scopes,
            created_at: now,
            ..current
        };
        insert(conn, now, tenant, &next).map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::StaleVersion { entity: "purpose" }
            } else {
                StoreError::from(e)
            }
        })?;
        Ok(next)
    })
}

/// The latest version of a purpose.
pub fn get(conn: &mut AnyConnection, tenant: TenantId, slug: &str) -> StoreResult<Option<Purpose>> {
    tenant_rows!(consent_purposes, tenant)
        .filter(consent_purposes::slug.eq(slug))
        .order(consent_purposes::version.desc())
        .first_item(conn)
}

/// One version of a purpose, current or old (what a consent record accepted).
pub fn get_version(
    conn: &mut AnyConnection,
    tenant: TenantId,
    slug: &str,
    version: i32,
) -> StoreResult<Option<Purpose>> {
    tenant_rows!(consent_purposes, tenant)
        .filter(consent_purposes::slug.eq(slug))
        .filter(consent_purposes::version.eq(version))
        .first_item(conn)
}

/// Every version of a purpose, oldest first.
pub fn versions(
    conn: &mut AnyConnection,
    tenant: TenantId,
    slug: &str,
) -> StoreResult<Vec<Purpose>> {
    tenant_rows!(consent_purposes, tenant)
        .filter(consent_purposes::slug.eq(slug))
        .order(consent_purposes::version.asc())
        .load_items(conn)
}

/// The latest version of every purpose of the tenant, by slug. Tenants define a
/// handful of purposes, so the versions are folded here rather than in SQL.
pub fn list(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Vec<Purpose>> {
    let rows: Vec<PurposeRow> = tenant_rows!(consent_purposes, tenant)
        .order((
            consent_purposes::slug.asc(),
            consent_purposes::version.desc(),
        ))
        .select(PurposeRow::as_select())
        .load(conn)?;
    let mut latest: Vec<Purpose> = Vec::new();
    for row in rows {
        if latest.last().is_some_and(|p| p.slug == row.slug) {
            continue;
        }
        latest.push(Purpose::from_row(row)?);
    }
    Ok(latest)
}
