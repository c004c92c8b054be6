//! Operator actions on consent purposes: list, define, update. The consent service
//! versions and audits them; a purpose is never edited in place, and an update
//! names the version it read, so two operators cannot overwrite each other. Running
//! servers read purposes from the database when they need one: nothing to announce.

use gatehouse_consent::ConsentError;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::purposes::{LegalBasis, Purpose, PurposeChange, PurposeData};

use crate::{Admin, AdminError, AdminResult, Operator};

/// A purpose to define.
#[derive(Debug, Clone)]
pub struct NewPurpose {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The scopes that need this purpose's consent.
    pub scopes: Vec<String>,
    /// `consent`, `contract`, `legal_obligation`, … (as the store names them).
    pub legal_basis: String,
}

/// What an update changes; `None` (or no scopes) keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PurposeEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scopes: Vec<String>,
}

fn consent_error(error: ConsentError) -> AdminError {
    match error {
        ConsentError::NotFound(what) => AdminError::NotFound(format!("no such {what}")),
        ConsentError::Store(StoreError::Conflict { .. }) => {
            AdminError::Conflict("a purpose with that slug exists already".into())
        }
        other => other.into(),
    }
}

impl Admin {
    pub async fn purposes(&self, tenant: &str) -> AdminResult<Vec<Purpose>> {
        let tenant = self.tenant(tenant).await?.id;
        let consents = self.consents.clone();
        self.off_pool(move || consents.purposes(tenant).map_err(consent_error))
            .await
    }

    pub async fn define_purpose(
        &self,
        operator: &Operator,
        tenant: &str,
        new: NewPurpose,
    ) -> AdminResult<Purpose> {
        let legal_basis: LegalBasis =
            new.legal_basis
                .parse()
                .map_err(|e: StoreError| AdminError::Invalid {
                    field: "legal_basis",
                    message: e.to_string(),
                })?;
        let tenant = self.tenant(tenant).await?.id;
        let (consents, actor) = (self.consents.clone(), operator.actor());
        let data = PurposeData {
            slug: new.slug,
            name: new.name,
            description: new.description,
            scopes: new.scopes,
            legal_basis,
        };
        self.off_pool(move || {
            consents
                .define_purpose(tenant, &actor, data)
                .map_err(consent_error)
        })
        .await
    }

    /// Makes the next version of the purpose `slug`, if it is still at
    /// `expected_version`.
    pub async fn update_purpose(
        &self,
        operator: &Operator,
        tenant: &str,
        slug: &str,
        expected_version: i32,
        edit: PurposeEdit,
    ) -> AdminResult<Purpose> {
        if edit.name.is_none() && edit.description.is_none() && edit.scopes.is_empty() {
            return Err(AdminError::Invalid {
                field: "name",
                message: "nothing to change: give a name, a description or scopes".into(),
            });
        }
        let tenant = self.tenant(tenant).await?.id;
        let (consents, actor, slug) = (self.consents.clone(), operator.actor(), slug.to_owned());
        self.off_pool(move || {
            let current = consents.purpose(tenant, &slug).map_err(consent_error)?;
            let current_version = current.version;
            let change = PurposeChange {
                name: edit.name.unwrap_or(current.name),
                description: edit.description.unwrap_or(current.description),
                scopes: if edit.scopes.is_empty() {
                    current.scopes
                } else {
                    edit.scopes
                },
            };
            consents
                .update_purpose(tenant, &actor, &slug, expected_version, change)
                .map_err(|e| match e {
                    ConsentError::Store(StoreError::StaleVersion { .. }) => {
                        AdminError::Conflict(format!(
                            "purpose `{slug}` is at version {current_version}, not \
                             {expected_version}: read it again and retry"
                        ))
                    }
                    other => consent_error(other),
                })
        })
        .await
    }
}
