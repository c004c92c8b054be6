use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::JoseError;

/// A JWS algorithm Gatehouse signs with and verifies. There is deliberately no
/// `none` and no HMAC: an HMAC key would be a secret shared with whoever verifies.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256: compact, and the default.
    #[default]
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit keys), for relying parties that
    /// support nothing else (OIDC's mandatory-to-implement algorithm).
    RS256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

    /// The JOSE name (`alg` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Exact match: JOSE algorithm names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = JoseError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(value).ok_or_else(|| JoseError::UnsupportedAlgorithm(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn names_round_trip_and_exclude_none_and_hmac() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
            assert_eq!(Algorithm::from_name(alg.as_str()), Some(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        assert_eq!(Algorithm::default(), Algorithm::ES256);
        for name in ["es256", "none", "None", "HS256", "PS256", ""] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
            assert_eq!(
                name.parse::<Algorithm>(),
                Err(JoseError::UnsupportedAlgorithm(name.to_owned()))
            );
        }
        assert_eq!(
            "HS256".parse::<Algorithm>().unwrap_err().to_string(),
            "unsupported signing algorithm `HS256` (use ES256, RS256 or EdDSA)"
        );
    }
}
