//! Gatehouse's authentication context classes and their order.
//!
//! Gatehouse names the NIST SP 800-63B authenticator assurance levels with URNs of
//! its own (NIST registers none). They are ordered: a token at AAL2 satisfies a
//! request for AAL1. Any other acr value is opaque and matches only itself.
//! The values are repeated here, not imported, so that this crate depends on no
//! other Gatehouse crate; they are part of Gatehouse's published wire format.

/// One factor (a password).
pub const AAL1: &str = "urn:gatehouse:aal1";
/// Two factors, or a user-verified passkey.
pub const AAL2: &str = "urn:gatehouse:aal2";
/// Hardware-bound, phishing-resistant keys under an attestation policy.
pub const AAL3: &str = "urn:gatehouse:aal3";

const LEVELS: [&str; 3] = [AAL1, AAL2, AAL3];

/// The assurance level (1–3) an acr value names, if it is one of Gatehouse's.
pub fn aal_of(acr: &str) -> Option<u8> {
    LEVELS
        .iter()
        .position(|level| *level == acr)
        .and_then(|i| u8::try_from(i + 1).ok())
}

/// Whether a token whose `acr` is `actual` satisfies a request for `requested`:
/// Gatehouse levels compare by strength, other values must be equal.
pub fn satisfies(actual: &str, requested: &str) -> bool {
    match (aal_of(actual), aal_of(requested)) {
        (Some(have), Some(want)) => have >= want,
        _ => actual == requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_other_values_match_exactly() {
        assert!(satisfies(AAL2, AAL1));
        assert!(satisfies(AAL3, AAL2));
        assert!(satisfies(AAL2, AAL2));
        assert!(!satisfies(AAL1, AAL2));
        assert!(!satisfies(AAL2, AAL3));
        assert!(satisfies("urn:example:gold", "urn:example:gold"));
        assert!(!satisfies("urn:example:gold", AAL1));
        assert!(!satisfies(AAL3, "urn:example:gold"));
        // Prefix look-alikes are not levels.
        assert_eq!(aal_of("urn:gatehouse:aal20"), None);
    }
}
