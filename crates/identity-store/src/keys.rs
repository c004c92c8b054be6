//! Identifier keys, computed in Rust so both backends agree on "the same name", and
//! the rules a new identifier (userName, email) must pass at all.
//!
//! - [`fold`] is identity: NFKC, then lowercase. Lookups and the `*_key` columns.
//! - [`skeleton`] is resemblance: the folded value with every non-ASCII character
//!   replaced by its UTS #39 confusable prototype, invisible (default-ignorable)
//!   characters dropped. The `*_skeleton` columns carry a unique index per tenant, so
//!   `pаypal` (Cyrillic а), `alıce` (dotless ı) or `bob\u{200b}` cannot sit beside
//!   `paypal`, `alice` and `bob`.
//! - [`identifier_problem`] refuses what no new identifier should contain.
//!
//! ASCII keeps its identity in the skeleton: `l`/`1`, `m`/`rn` and `0`/`O` have
//! always been distinct addresses (`al1@…` and `all@…` are two real people), so
//! only characters from outside ASCII are mapped onto what they look like.

use unicode_normalization::UnicodeNormalization;
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::{GeneralSecurityProfile, MixedScript};

/// NFKC then lowercase: "ＡＤＭＩＮ", "Admin" and "admin" fold to one key, so
/// look-alike names cannot coexist in a tenant.
pub fn fold(value: &str) -> String {
    value.trim().nfkc().collect::<String>().to_lowercase()
}

/// The look-alike key of `value`: equal for two identifiers a reader cannot tell
/// apart (see the module documentation for what counts).
pub fn skeleton(value: &str) -> String {
    let folded = fold(value);
    let mut mapped = String::with_capacity(folded.len());
    let mut buffer = [0_u8; 4];
    for c in folded.chars() {
        if c.is_ascii() {
            mapped.push(c);
        } else {
            mapped.extend(unicode_security::skeleton(c.encode_utf8(&mut buffer)));
        }
    }
    // Prototypes may be upper case (Ο → O) or decomposed: one form for all.
    mapped.to_lowercase().nfd().collect()
}

/// Why a new identifier is refused outright, whoever else exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierProblem {
    /// A character nobody sees: zero-width space or joiner, soft hyphen, bidi
    /// control, variation selector, tag (Unicode's Default_Ignorable_Code_Point).
    Invisible,
    /// A control character, or a non-ASCII character that UTS #39's General
    /// Security Profile does not allow in identifiers (symbols, emoji, technical
    /// and obsolete letters such as `ɑ`).
    NotAllowed,
    /// Letters of two scripts within one label (`pаypal`: Latin and Cyrillic).
    /// Labels are what `@` and `.` separate, so `иван@example.com` is fine.
    MixedScript,
}

impl IdentifierProblem {
    pub fn describe(self) -> &'static str {
        match self {
            IdentifierProblem::Invisible => "contains an invisible character",
            IdentifierProblem::NotAllowed => "contains a character not allowed in identifiers",
            IdentifierProblem::MixedScript => "mixes scripts within one part",
        }
    }
}

/// What is wrong with `value` as a new userName or email, if anything. Checked on
/// the folded form, so full-width letters (which fold to ASCII) pass.
pub fn identifier_problem(value: &str) -> Option<IdentifierProblem> {
    let folded = fold(value);
    for c in folded.chars() {
        if c.identifier_type() == Some(IdentifierType::Default_Ignorable) {
            return Some(IdentifierProblem::Invisible);
        }
        if c.is_control() || (!c.is_ascii() && !c.identifier_allowed()) {
            return Some(IdentifierProblem::NotAllowed);
        }
    }
    if folded
        .split(['@', '.'])
        .any(|label| !label.is_single_script())
    {
        return Some(IdentifierProblem::MixedScript);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{IdentifierProblem, fold, identifier_problem, skeleton};

    #[test]
    fn folds_case_width_and_surrounding_space() {
        assert_eq!(fold(" Alice@Example.COM "), "alice@example.com");
        assert_eq!(fold("ＡＤＭＩＮ"), "admin");
        assert_ne!(fold("alice"), fold("alicé"));
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let alice = skeleton("alice@example.com");
        for look_alike in [
            "аlice@example.com",         // Cyrillic а
            "alıce@example.com",         // dotless ı
            "ali\u{200b}ce@example.com", // zero-width space
            "ALICE@EXAMPLE.COM",
            "ａｌｉｃｅ@example.com", // full width
            "аӏісе@example.com",      // whole-script Cyrillic
        ] {
            assert_eq!(skeleton(look_alike), alice, "{look_alike}");
        }
    }

    #[test]
    fn distinct_names_keep_distinct_skeletons() {
        assert_ne!(skeleton("alice"), skeleton("alicé"));
        assert_ne!(skeleton("ivan"), skeleton("иван"));
        // ASCII keeps its identity: these are different, real addresses.
        assert_ne!(skeleton("al1@example.com"), skeleton("all@example.com"));
        assert_ne!(skeleton("kim@example.com"), skeleton("kirn@example.com"));
        assert_ne!(skeleton("bob0@example.com"), skeleton("bobo@example.com"));
    }

    #[test]
    fn refuses_invisible_restricted_and_mixed_script_identifiers() {
        for (value, problem) in [
            ("ali\u{200b}ce@example.com", IdentifierProblem::Invisible),
            ("ali\u{200d}ce@example.com", IdentifierProblem::Invisible),
            ("alice\u{ad}@example.com", IdentifierProblem::Invisible),
            ("\u{202e}alice@example.com", IdentifierProblem::Invisible),
            ("alice\u{7}@example.com", IdentifierProblem::NotAllowed),
            ("pɑypal@example.com", IdentifierProblem::NotAllowed),
            ("alice☃@example.com", IdentifierProblem::NotAllowed),
            ("pаypal@example.com", IdentifierProblem::MixedScript),
            ("paypal@exаmple.com", IdentifierProblem::MixedScript),
        ] {
            assert_eq!(identifier_problem(value), Some(problem), "{value:?}");
        }
    }

    #[test]
    fn accepts_single_script_labels_and_folded_forms() {
        for value in [
            "alice@example.com",
            "Alice.O'Brien+news@example.com",
            "иван@example.com",
            "иван.петров@пример.рф",
            "jürgen@example.de",
            "ａｄｍｉｎ",
            "山田太郎カタカナ@example.jp",
            "alıce@example.com",
        ] {
            assert_eq!(identifier_problem(value), None, "{value:?}");
        }
    }
}
