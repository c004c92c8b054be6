//! The claims of a Gatehouse access token (RFC 9068 §2.2).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A verified access token's claims. Times are seconds since the Unix epoch.
///
/// RFC 9068 §2.2 requires `iss`, `exp`, `aud`, `sub`, `client_id`, `iat` and `jti`;
/// a token without one of them is refused. For the client credentials grant `sub`
/// is the client's id; with a user, it is the user's id and `auth_time`, `acr` and
/// `amr` describe how the user signed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// `aud` as a list, whether the token carried a string or an array.
    #[serde(deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    #[serde(deserialize_with = "numeric_date")]
    pub exp: i64,
    #[serde(deserialize_with = "numeric_date")]
    pub iat: i64,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes; see [`Claims::scopes`].
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    pub auth_time: Option<i64>,
    #[serde(default)]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    /// Every other claim (roles, groups, configured attributes).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Claims {
    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// RFC 7519 §2 NumericDate: seconds, possibly with a fraction (dropped).
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    if !seconds.is_finite() {
        return Err(serde::de::Error::custom("NumericDate is not finite"));
    }
    // `as` saturates: an absurd date stays absurd and fails the time checks.
    Ok(seconds.floor() as i64)
}

fn optional_numeric_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "numeric_date")] i64);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(seconds)| seconds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn base() -> Value {
        json!({
            "iss": "https://id.example.com", "sub": "u1", "aud": "api",
            "exp": 2000, "iat": 1000, "jti": "j", "client_id": "c",
        })
    }

    #[test]
    fn audience_may_be_a_string_or_a_list_and_dates_may_have_fractions() {
        let claims: Claims = serde_json::from_value(base()).unwrap();
        assert_eq!(claims.aud, ["api"]);
        assert_eq!(claims.scopes().count(), 0);

        let mut value = base();
        value["aud"] = json!(["a", "b"]);
        value["auth_time"] = json!(999.9);
        value["scope"] = json!("orders:read  orders:write");
        value["roles"] = json!(["admin"]);
        let claims: Claims = serde_json::from_value(value).unwrap();
        assert_eq!(claims.aud, ["a", "b"]);
        assert_eq!(claims.auth_time, Some(999));
        assert_eq!(
            claims.scopes().collect::<Vec<_>>(),
            ["orders:read", "orders:write"]
        );
        assert!(claims.has_scope("orders:write") && !claims.has_scope("orders"));
        assert_eq!(claims.extra["roles"], json!(["admin"]));
    }

    #[test]
    fn required_claims_must_be_present() {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
            let mut value = base();
            value.as_object_mut().unwrap().remove(name);
            assert!(
                serde_json::from_value::<Claims>(value).is_err(),
                "{name} is required"
            );
        }
        let mut value = base();
        value["exp"] = json!("soon");
        assert!(serde_json::from_value::<Claims>(value).is_err());
    }
}
