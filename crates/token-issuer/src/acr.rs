//! Authentication context classes (`acr`, OIDC Core §2) for the NIST SP 800-63B
//! authenticator assurance levels. Gatehouse names them with URNs of its own: NIST
//! defines the levels but registers no identifiers for them.
//!
//! - AAL1: one factor (a password).
//! - AAL2: two factors, or a user-verified passkey.
//! - AAL3: hardware-bound, phishing-resistant keys under an attestation policy.

/// The acr values in ascending strength.
pub const SUPPORTED: [&str; 3] = [AAL1, AAL2, AAL3];
/// What discovery advertises: the levels a session can reach. AAL3 needs an
/// attestation policy for hardware-bound keys, which Gatehouse does not have.
pub const REACHABLE: [&str; 2] = [AAL1, AAL2];
pub const AAL1: &str = "urn:gatehouse:aal1";
pub const AAL2: &str = "urn:gatehouse:aal2";
pub const AAL3: &str = "urn:gatehouse:aal3";

/// The acr for a session's assurance level.
pub fn for_level(aal: u8) -> &'static str {
    match aal {
        0 | 1 => AAL1,
        2 => AAL2,
        _ => AAL3,
    }
}

/// The level an acr value names, if it is one of ours.
pub fn aal_of(acr: &str) -> Option<u8> {
    SUPPORTED
        .iter()
        .position(|known| *known == acr)
        .and_then(|i| u8::try_from(i + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_names_round_trip() {
        for level in 1..=3 {
            assert_eq!(aal_of(for_level(level)), Some(level));
        }
        assert_eq!(for_level(0), AAL1, "no session level below AAL1 is named");
        assert_eq!(aal_of("urn:mace:incommon:iap:silver"), None);
    }
}
