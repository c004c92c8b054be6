//! Case-insensitive keys, folded in Rust so both backends agree on "the same name".

use unicode_normalization::UnicodeNormalization;

/// NFKC then lowercase: "ＡＤＭＩＮ", "Admin" and "admin" fold to one key, so
/// look-alike names cannot coexist in a tenant.
pub fn fold(value: &str) -> String {
    value.trim().nfkc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn folds_case_width_and_surrounding_space() {
        assert_eq!(super::fold(" Alice@Example.COM "), "alice@example.com");
        assert_eq!(super::fold("ＡＤＭＩＮ"), "admin");
        assert_ne!(super::fold("alice"), super::fold("alicé"));
    }
}
