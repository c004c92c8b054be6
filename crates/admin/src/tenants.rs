//! Reading tenants: every tenant with its issuer and the settings operators set.
//! (Creating, changing and deleting tenants comes with the admin API.)

use gatehouse_identity_store::page::every;
use gatehouse_identity_store::tenants::{self, Tenant};

use crate::{Admin, AdminResult};

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

    fn view(&self, tenant: Tenant) -> TenantView {
        let issuer = self.urls.issuer_for(tenant.id).ok().flatten();
        TenantView { tenant, issuer }
    }
}
