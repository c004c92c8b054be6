//! Tenants: every tenant with its issuer, and creating and changing one (name and
//! settings, each section checked when written). A change is audited in the
//! tenant's own log with the operator and announced (`TenantChanged`), so every
//! node's tenant directory, PDP and caches read it again.
//! Disabling a tenant stops everything of it being served while its data stays;
//! deleting a disabled tenant removes it with all of its data, its audit trail
//! included, recorded in the platform tenant's log. The platform's own tenant is
//! never disabled or deleted.

use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::page::every;
use gatehouse_identity_store::tenants::{self, Tenant, TenantData};
use serde_json::{Map, Value, json};

use crate::{Admin, AdminError, AdminResult, NOT_EMPTY, Operator, required_text};

/// What a tenant change sets; `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantChange {
    pub display_name: Option<String>,
    /// Settings sections to replace (`registration`, `mfa`, `hosts`, `mail`, …);
    /// `Value::Null` removes a section (its defaults apply again).
    pub settings: Map<String, Value>,
    /// The version the change was made to (an API's `If-Match`): a tenant changed
    /// since is [`StoreError::StaleVersion`]. `None` changes the current version.
    pub expected_version: Option<i64>,
}

fn settings_error(error: StoreError) -> AdminError {
    match error {
        StoreError::Invalid { message, .. } => AdminError::Invalid {
            field: "settings",
            message,
        },
        other => other.into(),
    }
}

/// Refused when `settings` name a host that is the platform's own (its public
/// URL's) or another tenant's: a tenant must never take over where another is
/// served. Checked in the transaction that writes the settings.
fn hosts_free(
    conn: &mut gatehouse_identity_store::AnyConnection,
    public_host: &str,
    tenant: Option<gatehouse_core::ids::TenantId>,
    settings: &Map<String, Value>,
) -> AdminResult<()> {
    let wanted = gatehouse_core::tenant_settings::TenantSettings::read(settings).hosts;
    if wanted.is_empty() {
        return Ok(());
    }
    let others = every(100, |request| tenants::list(conn, request))?;
    for host in &wanted {
        let host = host.to_ascii_lowercase();
        let taken = host == public_host.to_ascii_lowercase()
            || others.iter().any(|other| {
                Some(other.id) != tenant
                    && other
                        .typed_settings()
                        .hosts
                        .iter()
                        .any(|theirs| theirs.eq_ignore_ascii_case(&host))
            });
        if taken {
            return Err(AdminError::Invalid {
                field: "settings",
                message: format!(
                    "hosts: `{host}` is where the platform or another tenant is served"
                ),
            });
        }
    }
    Ok(())
}

/// A tenant as an operator sees it.
#[derive(Debug, Clone)]
pub struct TenantView {
    pub tenant: Tenant,
    /// Its issuer URL, where the server can tell (`None` before the first start).
    pub issuer: Option<String>,
}

impl Admin {
    /// Every tenant, by slug.
    pub async fn tenants(&self) -> AdminResult<Vec<TenantView>> {
        let all = self
            .blocking(|conn| Ok(every(100, |request| tenants::list(conn, request))?))
            .await?;
        Ok(all.into_iter().map(|tenant| self.view(tenant)).collect())
    }

    /// One tenant by slug.
    pub async fn tenant_view(&self, slug: &str) -> AdminResult<TenantView> {
        let tenant = self.tenant(slug).await?;
        Ok(self.view(tenant))
    }

    /// Creates a tenant: its slug (its `/t/{slug}` path), its name and settings.
    pub async fn create_tenant(
        &self,
        operator: &Operator,
        slug: &str,
        display_name: &str,
        settings: Map<String, Value>,
    ) -> AdminResult<TenantView> {
        let display_name = required_text("name", display_name, NOT_EMPTY)?.to_owned();
        let (admin, actor, now, wanted) = (
            self.clone(),
            operator.actor(),
            self.now(),
            slug.trim().to_ascii_lowercase(),
        );
        let tenant = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    hosts_free(conn, admin.urls.public_host(), None, &settings)?;
                    let data = TenantData {
                        slug: wanted.clone(),
                        display_name,
                        settings,
                    };
                    let tenant = tenants::create(conn, now, data).map_err(|e| match e {
                        StoreError::Conflict { .. } => {
                            AdminError::Conflict(format!("a tenant `{wanted}` exists already"))
                        }
                        StoreError::Invalid { message, .. } if message.starts_with("slug") => {
                            AdminError::Invalid {
                                field: "slug",
                                message,
                            }
                        }
                        other => settings_error(other),
                    })?;
                    admin.audit(
                        conn,
                        tenant.id,
                        actor,
                        "tenant.created",
                        format!("tenant:{}", tenant.id),
                        json!({ "slug": tenant.slug, "name": tenant.display_name }),
                    )?;
                    Ok(tenant)
                })
            })
            .await?;
        self.announce(DomainEvent::TenantChanged { tenant: tenant.id });
        Ok(self.view(tenant))
    }

    /// Changes a tenant's name and settings sections; the audit record names the
    /// sections changed.
    pub async fn update_tenant(
        &self,
        operator: &Operator,
        slug: &str,
        change: TenantChange,
    ) -> AdminResult<TenantView> {
        let tenant = self.tenant(slug).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let updated = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    let mut settings = tenant.settings.clone();
                    for (section, value) in &change.settings {
                        if value.is_null() {
                            settings.remove(section);
                        } else {
                            settings.insert(section.clone(), value.clone());
                        }
                    }
                    hosts_free(conn, admin.urls.public_host(), Some(tenant.id), &settings)?;
                    let display_name = change
                        .display_name
                        .clone()
                        .map(|name| name.trim().to_owned())
                        .unwrap_or_else(|| tenant.display_name.clone());
                    if display_name.is_empty() {
                        return Err(AdminError::Invalid {
                            field: "name",
                            message: "must not be empty".into(),
                        });
                    }
                    let data = TenantData {
                        slug: tenant.slug.clone(),
                        display_name,
                        settings,
                    };
                    let version = change.expected_version.unwrap_or(tenant.version);
                    let updated = tenants::update(conn, now, tenant.id, version, data).map_err(
                        |e| match e {
                            stale @ StoreError::StaleVersion { .. } => AdminError::from(stale),
                            other => settings_error(other),
                        },
                    )?;
                    let sections: Vec<&String> = change.settings.keys().collect();
                    admin.audit(
                        conn,
                        tenant.id,
                        actor,
                        "tenant.updated",
                        format!("tenant:{}", tenant.id),
                        json!({
                            "name_changed": change.display_name.is_some(),
                            "settings_changed": sections,
                        }),
                    )?;
                    Ok(updated)
                })
            })
            .await?;
        self.announce(DomainEvent::TenantChanged { tenant: updated.id });
        Ok(self.view(updated))
    }

    fn view(&self, tenant: Tenant) -> TenantView {
        let issuer = self.urls.issuer_for(tenant.id).ok().flatten();
        TenantView { tenant, issuer }
    }
}

impl Admin {
    /// Disables (`disabled`) or enables the tenant `slug`, with the operator's
    /// reason in its audit log; false when it already was so. While disabled,
    /// nothing of the tenant is served on any node (paths, host names, tokens'
    /// endpoints); its data stays.
    pub async fn set_tenant_disabled(
        &self,
        operator: &Operator,
        slug: &str,
        disabled: bool,
        reason: &crate::Reason,
    ) -> AdminResult<bool> {
        let tenant = self.tenant(slug).await?;
        if disabled && tenant.slug == self.urls.platform_tenant() {
            return Err(AdminError::Invalid {
                field: "slug",
                message: "is the platform's own tenant, which is never disabled".into(),
            });
        }
        let (admin, actor, now, why) = (
            self.clone(),
            operator.actor(),
            self.now(),
            reason.as_str().to_owned(),
        );
        let id = tenant.id;
        let changed = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    let changed = tenants::set_disabled(conn, now, id, disabled)?;
                    if changed {
                        let action = if disabled {
                            "tenant.disabled"
                        } else {
                            "tenant.enabled"
                        };
                        admin.audit(
                            conn,
                            id,
                            actor,
                            action,
                            format!("tenant:{}", tenant.slug),
                            json!({ "reason": why }),
                        )?;
                    }
                    Ok::<_, AdminError>(changed)
                })
            })
            .await?;
        if changed {
            self.announce(DomainEvent::TenantChanged { tenant: id });
        }
        Ok(changed)
    }
}

/// What deleting a tenant removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantDeleted {
    /// Its audit events, gone with it.
    pub audit_events: usize,
}

impl Admin {
    /// Deletes the tenant `slug` with all of its data — users and everything
    /// theirs, clients, grants, keys, policies, purposes, the decision log and its
    /// audit trail — in one transaction. Only a disabled tenant is deleted (so
    /// nothing of it is being served, and deleting takes two deliberate steps);
    /// never the platform's own. The deletion is audited in the platform tenant's
    /// log with the operator and the reason, and announced so every node forgets
    /// the tenant.
    pub async fn delete_tenant(
        &self,
        operator: &Operator,
        slug: &str,
        reason: &crate::Reason,
    ) -> AdminResult<TenantDeleted> {
        let tenant = self.tenant(slug).await?;
        if tenant.slug == self.urls.platform_tenant() {
            return Err(AdminError::Invalid {
                field: "slug",
                message: "is the platform's own tenant, which is never deleted".into(),
            });
        }
        if tenant.disabled_at.is_none() {
            return Err(AdminError::Conflict(format!(
                "tenant `{}` is being served: disable it first, then delete it",
                tenant.slug
            )));
        }
        let platform = self.tenant(self.urls.platform_tenant()).await?;
        // Decisions this node still holds for the tenant reach the log before the
        // log's rows go (a disabled tenant is served nowhere, so no new ones come).
        let pdp = self.pdp.clone();
        self.off_pool(move || {
            pdp.flush_log();
            Ok(())
        })
        .await?;
        let (admin, actor, why) = (self.clone(), operator.actor(), reason.as_str().to_owned());
        let id = tenant.id;
        let deleted = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    // Still disabled now, inside the deleting transaction: an enable
                    // that came in between keeps the tenant.
                    if tenants::get(conn, id)?.disabled_at.is_none() {
                        return Err(AdminError::Conflict(format!(
                            "tenant `{}` is being served again: disable it first",
                            tenant.slug
                        )));
                    }
                    let audit_events = tenants::delete_with_everything(conn, id)?;
                    admin.audit(
                        conn,
                        platform.id,
                        actor,
                        "tenant.deleted",
                        format!("tenant:{}", tenant.slug),
                        json!({
                            "id": id.to_string(),
                            "slug": tenant.slug,
                            "name": tenant.display_name,
                            "reason": why,
                            "audit_events": audit_events,
                        }),
                    )?;
                    Ok::<_, AdminError>(TenantDeleted { audit_events })
                })
            })
            .await?;
        self.announce(DomainEvent::TenantChanged { tenant: id });
        Ok(deleted)
    }
}
