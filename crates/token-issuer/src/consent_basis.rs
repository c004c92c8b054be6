//! Which requested scopes may be issued to a user's client under the consent in
//! force now, and the purposes the tokens are issued under.
//!
//! A scope that no consent-based purpose covers is governed by the client's
//! approval alone (the consent page, or first-party trust). A scope that one or more
//! consent-based purposes cover is issued only while the user's consent to at least
//! one of them, for this client, is in force (granted, not withdrawn, not expired):
//! approving a client is not consenting to a purpose. Purposes on another legal basis
//! (contract, legal obligation, …) never withhold a scope; they are recorded so an
//! auditor can see what a token was issued for.
//!
//! Checked when a code is exchanged and at every refresh, so a consent that ended
//! (withdrawn, expired) or a purpose defined after the grant never yields new tokens.

use chrono::{DateTime, Utc};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::consent_records::{self, CurrentConsent};
use gatehouse_identity_store::grants::GrantPurpose;
use gatehouse_identity_store::purposes::{self, LegalBasis, Purpose};
use gatehouse_identity_store::{AnyConnection, StoreResult};

/// What may be issued: the scopes (in request order) and the purposes behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentBasis {
    pub scopes: Vec<String>,
    pub purposes: Vec<GrantPurpose>,
    /// Requested scopes left out for want of consent.
    pub withheld: Vec<String>,
}

/// Reads the tenant's purposes and the user's consents to `client_id`, and sorts
/// `requested` into issued and withheld. Two queries; nothing written.
pub fn consent_basis(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    requested: &[String],
) -> StoreResult<ConsentBasis> {
    let defined = purposes::list(conn, tenant)?;
    if defined.is_empty() {
        return Ok(ConsentBasis {
            scopes: requested.to_vec(),
            purposes: Vec::new(),
            withheld: Vec::new(),
        });
    }
    let in_force = consent_records::current_for(conn, now, tenant, user, client_id)?;
    Ok(sort_scopes(&defined, &in_force, requested))
}

/// The pure rule behind [`consent_basis`].
pub fn sort_scopes(
    defined: &[Purpose],
    in_force: &[CurrentConsent],
    requested: &[String],
) -> ConsentBasis {
    let accepted = |slug: &str| in_force.iter().find(|c| c.purpose == slug);
    let mut basis = ConsentBasis {
        scopes: Vec::new(),
        purposes: Vec::new(),
        withheld: Vec::new(),
    };
    fn record(purpose: GrantPurpose, into: &mut Vec<GrantPurpose>) {
        if !into.iter().any(|p| p.purpose == purpose.purpose) {
            into.push(purpose);
        }
    }
    for scope in requested {
        let covering: Vec<&Purpose> = defined
            .iter()
            .filter(|p| p.scopes.iter().any(|s| s == scope))
            .collect();
        let needs_consent = covering
            .iter()
            .any(|p| p.legal_basis == LegalBasis::Consent);
        let consented: Vec<GrantPurpose> = covering
            .iter()
            .filter(|p| p.legal_basis == LegalBasis::Consent)
            .filter_map(|p| {
                accepted(&p.slug).map(|c| GrantPurpose {
                    purpose: p.slug.clone(),
                    version: c.version,
                    legal_basis: LegalBasis::Consent,
                })
            })
            .collect();
        if needs_consent && consented.is_empty() {
            basis.withheld.push(scope.clone());
            continue;
        }
        basis.scopes.push(scope.clone());
        for purpose in consented {
            record(purpose, &mut basis.purposes);
        }
        for p in covering
            .iter()
            .filter(|p| p.legal_basis != LegalBasis::Consent)
        {
            record(
                GrantPurpose {
                    purpose: p.slug.clone(),
                    version: p.version,
                    legal_basis: p.legal_basis,
                },
                &mut basis.purposes,
            );
        }
    }
    basis
}

/// Whether every consent-based purpose a grant was issued under is still in force
/// for its client (at any version: a newer acceptance keeps it going).
pub fn still_in_force(recorded: &[GrantPurpose], in_force: &[CurrentConsent]) -> bool {
    recorded
        .iter()
        .filter(|p| p.legal_basis == LegalBasis::Consent)
        .all(|p| in_force.iter().any(|c| c.purpose == p.purpose))
}

/// Whether the grant depends on any consent (so liveness must read the consents).
pub fn depends_on_consent(recorded: &[GrantPurpose]) -> bool {
    recorded
        .iter()
        .any(|p| p.legal_basis == LegalBasis::Consent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::ids::TenantId;

    fn purpose(slug: &str, version: i32, basis: LegalBasis, scopes: &[&str]) -> Purpose {
        Purpose {
            tenant_id: TenantId::new(),
            slug: slug.into(),
            version,
            name: slug.into(),
            description: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            legal_basis: basis,
            created_at: Utc::now(),
        }
    }

    fn consent(slug: &str, version: i32) -> CurrentConsent {
        CurrentConsent {
            client_id: "shop".into(),
            purpose: slug.into(),
            version,
            granted_at: Utc::now(),
            expires_at: None,
        }
    }

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_scope_behind_a_consent_purpose_needs_that_consent() {
        let defined = [
            purpose(
                "newsletter",
                3,
                LegalBasis::Consent,
                &["email", "marketing"],
            ),
            purpose("orders", 1, LegalBasis::Contract, &["orders"]),
        ];
        let requested = scopes(&["openid", "marketing", "orders"]);
        let without = sort_scopes(&defined, &[], &requested);
        assert_eq!(without.scopes, scopes(&["openid", "orders"]));
        assert_eq!(without.withheld, scopes(&["marketing"]));
        assert_eq!(
            without.purposes,
            vec![GrantPurpose {
                purpose: "orders".into(),
                version: 1,
                legal_basis: LegalBasis::Contract
            }]
        );

        // The version recorded is the one the user accepted, not the latest.
        let with = sort_scopes(&defined, &[consent("newsletter", 2)], &requested);
        assert_eq!(with.scopes, requested);
        assert!(with.withheld.is_empty());
        assert_eq!(with.purposes[0].purpose, "newsletter");
        assert_eq!(with.purposes[0].version, 2);
        assert_eq!(with.purposes.len(), 2);
    }

    #[test]
    fn one_consented_purpose_of_several_is_enough_and_is_the_one_recorded() {
        let defined = [
            purpose("newsletter", 1, LegalBasis::Consent, &["email"]),
            purpose("receipts", 1, LegalBasis::Consent, &["email"]),
        ];
        let basis = sort_scopes(&defined, &[consent("receipts", 1)], &scopes(&["email"]));
        assert_eq!(basis.scopes, scopes(&["email"]));
        assert_eq!(basis.purposes.len(), 1);
        assert_eq!(basis.purposes[0].purpose, "receipts");
    }

    #[test]
    fn liveness_needs_every_recorded_consent_purpose() {
        let recorded = vec![
            GrantPurpose {
                purpose: "newsletter".into(),
                version: 1,
                legal_basis: LegalBasis::Consent,
            },
            GrantPurpose {
                purpose: "orders".into(),
                version: 1,
                legal_basis: LegalBasis::Contract,
            },
        ];
        assert!(depends_on_consent(&recorded));
        assert!(still_in_force(&recorded, &[consent("newsletter", 2)]));
        assert!(!still_in_force(&recorded, &[consent("other", 1)]));
        assert!(!depends_on_consent(&recorded[1..]));
        assert!(still_in_force(&recorded[1..], &[]));
    }
}
