//! What a resource demands of a valid token: scopes and, for step-up (RFC 9470),
//! an authentication context class and a recent authentication.

use crate::acr;
use crate::claims::Claims;
use crate::error::BearerError;

/// What a resource demands of a verified access token.
///
/// - `scopes`: every one must be granted (403 `insufficient_scope` otherwise).
/// - `acr_values`: the token's `acr` must satisfy one of them, in the sense of
///   [`acr::satisfies`] (a Gatehouse `aal2` token satisfies a demand for `aal1`).
/// - `max_age`: the user must have authenticated (`auth_time`) at most this many
///   seconds ago.
///
/// A token without `acr` or `auth_time` (client credentials carry neither) fails a
/// demand for them. Failing `acr_values` or `max_age` is answered with RFC 9470's
/// 401 `insufficient_user_authentication`, whose challenge repeats both demands,
/// not just the one that failed: the client re-authorizes once with both, instead
/// of meeting one only to be challenged for the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub scopes: Vec<String>,
    /// Acceptable acr values, in order of preference (sent in this order).
    pub acr_values: Vec<String>,
    pub max_age: Option<u64>,
}

impl Requirement {
    /// Adds a required scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds an acceptable acr value (after those already given).
    pub fn acr(mut self, acr: impl Into<String>) -> Self {
        self.acr_values.push(acr.into());
        self
    }

    /// Demands an authentication at most `seconds` old.
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.max_age = Some(seconds);
        self
    }

    /// Checks `claims` (already verified) at `now` (seconds since the epoch).
    ///
    /// User authentication is checked before scopes: stepping up is a matter of
    /// authentication (401), a missing scope one of authorization (403), and HTTP
    /// answers the former first.
    pub fn check(&self, claims: &Claims, now: i64) -> Result<(), BearerError> {
        let acr_met = self.acr_values.is_empty()
            || claims.acr.as_deref().is_some_and(|have| {
                self.acr_values
                    .iter()
                    .any(|want| acr::satisfies(have, want))
            });
        let age_met = match (self.max_age, claims.auth_time) {
            (None, _) => true,
            (Some(max_age), Some(auth_time)) => {
                // A max_age too large for i64 cannot be exceeded.
                i64::try_from(max_age)
                    .map_or(true, |max_age| now.saturating_sub(auth_time) <= max_age)
            }
            (Some(_), None) => false,
        };
        if !(acr_met && age_met) {
            // The RFC 9470 examples' wording where one demand failed.
            let description = match (acr_met, age_met) {
                (false, true) => "A different authentication level is required",
                (true, false) => "More recent authentication is required",
                _ => "A different authentication level and more recent authentication are required",
            };
            return Err(BearerError::InsufficientUserAuthentication {
                description,
                acr_values: (!self.acr_values.is_empty()).then(|| self.acr_values.join(" ")),
                max_age: self.max_age,
            });
        }
        if !self.scopes.iter().all(|scope| claims.has_scope(scope)) {
            return Err(BearerError::InsufficientScope {
                scope: self.scopes.join(" "),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn claims(extra: serde_json::Value) -> Claims {
        let mut value = json!({
            "iss": "https://id.example.com", "sub": "u1", "aud": "api",
            "exp": NOW + 60, "iat": NOW - 60, "jti": "j", "client_id": "c",
        });
        for (name, v) in extra.as_object().unwrap() {
            value[name] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_empty_requirement_accepts_any_valid_token() {
        assert_eq!(
            Requirement::default().check(&claims(json!({})), NOW),
            Ok(())
        );
    }

    #[test]
    fn scopes_must_all_be_granted() {
        let needs = Requirement::default()
            .scope("orders:read")
            .scope("orders:write");
        let both = claims(json!({"scope": "orders:write orders:read"}));
        assert_eq!(needs.check(&both, NOW), Ok(()));
        let one = claims(json!({"scope": "orders:read"}));
        assert_eq!(
            needs.check(&one, NOW),
            Err(BearerError::InsufficientScope {
                scope: "orders:read orders:write".into()
            })
        );
    }

    #[test]
    fn stronger_levels_satisfy_weaker_demands_but_not_the_reverse() {
        let needs = Requirement::default().acr(acr::AAL2);
        assert_eq!(needs.check(&claims(json!({"acr": acr::AAL2})), NOW), Ok(()));
        assert_eq!(needs.check(&claims(json!({"acr": acr::AAL3})), NOW), Ok(()));
        for token in [claims(json!({"acr": acr::AAL1})), claims(json!({}))] {
            assert_eq!(
                needs.check(&token, NOW),
                Err(BearerError::InsufficientUserAuthentication {
                    description: "A different authentication level is required",
                    acr_values: Some(acr::AAL2.into()),
                    max_age: None,
                })
            );
        }
    }

    #[test]
    fn max_age_counts_from_auth_time_inclusive() {
        let needs = Requirement::default().max_age(300);
        assert_eq!(
            needs.check(&claims(json!({"auth_time": NOW - 300})), NOW),
            Ok(())
        );
        let refused = Err(BearerError::InsufficientUserAuthentication {
            description: "More recent authentication is required",
            acr_values: None,
            max_age: Some(300),
        });
        assert_eq!(
            needs.check(&claims(json!({"auth_time": NOW - 301})), NOW),
            refused
        );
        assert_eq!(needs.check(&claims(json!({})), NOW), refused);
        assert_eq!(
            Requirement::default()
                .max_age(u64::MAX)
                .check(&claims(json!({"auth_time": 0})), NOW),
            Ok(())
        );
    }

    #[test]
    fn the_challenge_repeats_every_user_authentication_demand() {
        let needs = Requirement::default()
            .scope("orders:read")
            .acr(acr::AAL2)
            .acr(acr::AAL3)
            .max_age(300);
        // acr met, auth_time too old, scope missing too: step-up comes first.
        let token = claims(json!({"acr": acr::AAL2, "auth_time": NOW - 900}));
        assert_eq!(
            needs.check(&token, NOW),
            Err(BearerError::InsufficientUserAuthentication {
                description: "More recent authentication is required",
                acr_values: Some(format!("{} {}", acr::AAL2, acr::AAL3)),
                max_age: Some(300),
            })
        );
        let token = claims(json!({"acr": acr::AAL1, "auth_time": NOW - 900}));
        assert!(matches!(
            needs.check(&token, NOW),
            Err(BearerError::InsufficientUserAuthentication { description, .. })
                if description.starts_with("A different authentication level and")
        ));
    }
}
