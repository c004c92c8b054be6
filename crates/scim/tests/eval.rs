//! Evaluating filters against JSON resources.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_scim::{AttrPath, DefaultSchema, Schema, parse_filter};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A User after RFC 7643 §8.2, with a few attributes of other types.
fn user() -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            ENTERPRISE
        ],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "BJensen",
        "userName": "bjensen@example.com",
        "name": {
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara"
        },
        "displayName": "Babs Jensen",
        "nickName": null,
        "title": "Tour Guide",
        "profileUrl": "",
        "userType": "Employee",
        "active": true,
        "loginCount": 42,
        "score": 2.5,
        "roles": ["admin", "auditor"],
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [],
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": "W/\"3694e05e9dff591\""
        },
        ENTERPRISE: {
            "employeeNumber": "701984",
            "manager": {
                "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                "displayName": "John Smith"
            }
        }
    })
}

#[track_caller]
fn check(filter: &str, expected: bool) {
    let parsed = parse_filter(filter).unwrap_or_else(|error| panic!("{filter}: {error}"));
    assert_eq!(parsed.matches(&user()), expected, "{filter}");
}

#[test]
fn strings_compare_ignoring_case_unless_case_exact() {
    check(r#"userName eq "BJENSEN@example.com""#, true);
    check(r#"USERNAME Eq "bjensen@example.com""#, true);
    check(r#"name.FAMILYNAME eq "jensen""#, true);
    // RFC 7643 §3.1: `id` and `externalId` are caseExact.
    check(r#"id eq "2819c223-7f76-453a-919d-413861904646""#, true);
    check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#, false);
    check(r#"externalId eq "BJensen""#, true);
    check(r#"externalId eq "bjensen""#, false);
    check(r#"meta.version eq "W/\"3694e05e9dff591\"""#, true);
    check(r#"meta.version eq "w/\"3694E05E9DFF591\"""#, false);
}

#[test]
fn substring_operators() {
    check(r#"userName sw "BJ""#, true);
    check(r#"userName ew "EXAMPLE.COM""#, true);
    check(r#"name.formatted co "barbara j""#, true);
    check(r#"name.formatted co "barbara x""#, false);
    check(r#"userName sw "example""#, false);
    check(r#"title co """#, true);
}

#[test]
fn strings_order_lexicographically() {
    check(r#"title gt "Tour""#, true);
    check(r#"title gt "tour guide""#, false);
    check(r#"title ge "tour guide""#, true);
    check(r#"title lt "U""#, true);
    check(r#"title le "A""#, false);
}

#[test]
fn date_times_order_chronologically() {
    check(r#"meta.lastModified gt "2011-05-13T04:42:33Z""#, true);
    check(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false);
    check(r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true);
    check(r#"meta.lastModified lt "2012-01-01T00:00:00Z""#, true);
    // The same instant with an offset and a fraction: a string comparison
    // would say otherwise.
    check(
        r#"meta.lastModified eq "2011-05-13T06:42:34.000+02:00""#,
        true,
    );
    check(r#"meta.lastModified lt "2011-05-13T06:42:34+02:00""#, false);
    check(r#"meta.lastModified le "2011-05-13T06:42:34+02:00""#, true);
    check(r#"meta.lastModified gt "2011-05-13T05:00:00+01:00""#, true);
    check(r#"meta.created lt "2011-05-13T04:42:34Z""#, true);
}

#[test]
fn numbers_compare_numerically() {
    check("loginCount eq 42", true);
    check("loginCount eq 42.0", true);
    check("loginCount ne 42", false);
    check("loginCount gt 41", true);
    check("loginCount gt 42", false);
    check("loginCount ge 42", true);
    check("loginCount lt 100", true);
    check("loginCount le 41.5", false);
    check("score gt 2", true);
    check("score lt 2.6", true);
    check("loginCount gt 18446744073709551615", false);
    check("loginCount gt -9223372036854775808", true);
    // Across JSON types nothing matches.
    check(r#"loginCount eq "42""#, false);
    check("userName gt 1", false);
}

#[test]
fn booleans_compare_by_eq_and_ne() {
    check("active eq true", true);
    check("active eq false", false);
    check("active ne false", true);
    check("ACTIVE EQ TRUE", true);
    check(r#"active eq "true""#, false);
}

#[test]
fn presence() {
    check("title pr", true);
    check("nickName pr", false);
    check("notAnAttribute pr", false);
    // Empty string and empty array are not values.
    check("profileUrl pr", false);
    check("phoneNumbers pr", false);
    check("emails pr", true);
    check("name pr", true);
    check("emails.primary pr", true);
    check("name.middleName pr", false);
}

#[test]
fn null_means_unassigned() {
    check("nickName eq null", true);
    check("notAnAttribute eq null", true);
    check("phoneNumbers eq null", true);
    check("title eq null", false);
    check("title ne null", true);
    check("nickName ne null", false);
}

#[test]
fn unassigned_attributes_match_no_comparison() {
    check(r#"nickName eq "Babs""#, false);
    check(r#"nickName ne "Babs""#, false);
    check(r#"notAnAttribute sw "x""#, false);
}

#[test]
fn multi_valued_attributes_match_if_any_value_matches() {
    check(r#"emails.value ew "jensen.org""#, true);
    check(r#"emails.type eq "home""#, true);
    check(r#"emails.type eq "other""#, false);
    // Any value: the home address is not "work".
    check(r#"emails.type ne "work""#, true);
    // A complex attribute without a sub-attribute compares its `value`.
    check(r#"emails co "example.com""#, true);
    check(r#"emails co "example.org""#, false);
    // Multi-valued attributes of simple values.
    check(r#"roles eq "ADMIN""#, true);
    check(r#"roles eq "owner""#, false);
    check(r#"roles[value eq "auditor"]"#, true);
}

#[test]
fn value_paths_match_within_one_value() {
    check(
        r#"emails[type eq "work" and value co "@example.com"]"#,
        true,
    );
    // Both criteria must hold for the same address...
    check(
        r#"emails[type eq "home" and value co "@example.com"]"#,
        false,
    );
    // ...which is what sets a value path apart from two comparisons.
    check(
        r#"emails.type eq "home" and emails.value co "@example.com""#,
        true,
    );
    check(r#"emails[type eq "home" or primary eq true]"#, true);
    check(r#"emails[not (type pr)]"#, false);
    check(r#"emails[primary pr and not (primary eq false)]"#, true);
    check(r#"name[givenName eq "barbara"]"#, true);
    check(r#"phoneNumbers[type pr]"#, false);
    check(
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        true,
    );
}

#[test]
fn logical_operators() {
    check(r#"title pr and userType eq "Employee""#, true);
    check(r#"title pr and userType eq "Intern""#, false);
    check(r#"nickName pr or userType eq "Employee""#, true);
    check("not (title pr)", false);
    check("not (nickName pr)", true);
    check(
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        false,
    );
    check(
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        true,
    );
}

#[test]
fn urn_prefixed_attributes() {
    check(&format!(r#"{ENTERPRISE}:employeeNumber eq "701984""#), true);
    check(
        &format!(r#"{ENTERPRISE}:manager.displayName sw "john""#),
        true,
    );
    check(&format!(r#"{ENTERPRISE}:manager.value pr"#), true);
    check(&format!(r#"{ENTERPRISE}:costCenter pr"#), false);
    // Extension attributes are only found through their URN.
    check(r#"employeeNumber eq "701984""#, false);
    // The core schema's URN is the top level.
    check(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bj""#,
        true,
    );
    check(
        r#"URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:USERNAME sw "bj""#,
        true,
    );
    // The extension's own URN names its object.
    check(&format!("{ENTERPRISE} pr"), true);
    check(
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        true,
    );
}

#[test]
fn groups_by_member() {
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "members": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen", "type": "User"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge", "type": "User"}
        ]
    });
    let matches = |text: &str| parse_filter(text).expect(text).matches(&group);
    assert!(matches(
        r#"members[value eq "902c246b-6245-4190-8e05-00816be7344a"]"#
    ));
    assert!(matches(
        r#"members.value eq "2819c223-7f76-453a-919d-413861904646""#
    ));
    assert!(!matches(
        r#"members[value eq "2819c223" and display eq "Mandy Pepperidge"]"#
    ));
    assert!(matches(r#"displayName eq "tour guides""#));
}

/// A server whose `userName` is caseExact and that spells a private
/// extension.
struct StrictSchema;

impl Schema for StrictSchema {
    fn is_case_exact(&self, attr: &AttrPath) -> bool {
        attr.is_named("userName") || DefaultSchema.is_case_exact(attr)
    }
}

#[test]
fn a_schema_decides_case_exactness() {
    let filter = parse_filter(r#"userName eq "BJENSEN@example.com""#).expect("filter");
    assert!(filter.matches(&user()));
    assert!(!filter.matches_with(&user(), &StrictSchema));
    let filter = parse_filter(r#"emails.value eq "BJENSEN@example.com""#).expect("filter");
    assert!(filter.matches_with(&user(), &StrictSchema));
}

#[test]
fn non_object_resources_match_nothing_but_absence() {
    let filter = parse_filter("title pr").expect("filter");
    assert!(!filter.matches(&json!("title")));
    assert!(!filter.matches(&Value::Null));
    assert!(
        parse_filter("title eq null")
            .expect("filter")
            .matches(&json!([]))
    );
}
