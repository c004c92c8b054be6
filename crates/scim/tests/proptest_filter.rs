//! Property tests: the crate's fuzzer (see the crate documentation).
//!
//! - Any string given to the parsers is either parsed or refused with
//!   `invalidFilter` / `invalidPath`: never a panic, never another error.
//! - Strings assembled from the grammar's own tokens reach deeper into the
//!   parser than random text; whatever of them parses must print and parse
//!   back to the same tree.
//! - Generated trees survive `Display` and parsing unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_scim::{
    AttrPath, CompValue, CompareOp, Filter, PatchOp, PatchPath, apply_patch, parse_attr_path,
    parse_filter, parse_patch_path,
};
use proptest::prelude::*;
use serde_json::{Number, Value, json};

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z][a-zA-Z0-9_-]{0,7}",
        // Keywords are legal attribute names.
        1 => prop::sample::select(vec!["not", "and", "or", "pr", "eq", "NOT", "true", "null"])
            .prop_map(str::to_owned),
        1 => Just("$ref".to_owned()),
    ]
}

fn urn() -> impl Strategy<Value = String> {
    prop_oneof![
        "urn(:[a-zA-Z0-9._-]{1,6}){1,4}",
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
        Just("urn:ietf:params:scim:schemas:core:2.0:User".to_owned()),
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::weighted(0.2, urn()),
        attr_name(),
        prop::option::weighted(0.3, attr_name()),
    )
        .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (-1000i32..1000, 0u32..4).prop_filter_map("finite", |(mantissa, scale)| {
            Number::from_f64(f64::from(mantissa) / 10f64.powi(scale as i32))
        }),
    ]
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        number().prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::String),
        "[ -~]{0,12}".prop_map(CompValue::String),
    ]
}

/// A comparison the grammar accepts: substring operators take strings, and
/// ordering operators take neither booleans nor null.
fn comparison() -> impl Strategy<Value = Filter> {
    (
        attr_path(),
        prop::sample::select(CompareOp::ALL.to_vec()),
        comp_value(),
    )
        .prop_map(|(path, op, value)| {
            let value = match value {
                value @ CompValue::String(_) => value,
                _ if op.is_substring() => CompValue::String("x".to_owned()),
                CompValue::Bool(_) | CompValue::Null if op.is_ordering() => {
                    CompValue::Number(Number::from(1))
                }
                value => value,
            };
            Filter::Compare { path, op, value }
        })
}

fn leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => comparison(),
        1 => attr_path().prop_map(Filter::Present),
    ]
}

fn logical(inner: BoxedStrategy<Filter>) -> impl Strategy<Value = Filter> {
    prop_oneof![
        (inner.clone(), inner.clone())
            .prop_map(|(left, right)| Filter::And(Box::new(left), Box::new(right))),
        (inner.clone(), inner.clone())
            .prop_map(|(left, right)| Filter::Or(Box::new(left), Box::new(right))),
        inner.prop_map(|inner| Filter::Not(Box::new(inner))),
    ]
}

/// What may stand inside `[…]`: no further value paths.
fn value_filter() -> BoxedStrategy<Filter> {
    leaf()
        .prop_recursive(3, 12, 2, |inner| logical(inner.boxed()))
        .boxed()
}

fn filter() -> BoxedStrategy<Filter> {
    let value_path = (attr_path(), value_filter()).prop_map(|(path, filter)| Filter::ValuePath {
        path,
        filter: Box::new(filter),
    });
    prop_oneof![3 => leaf(), 1 => value_path]
        .prop_recursive(4, 24, 2, |inner| logical(inner.boxed()))
        .boxed()
}

fn patch_path() -> impl Strategy<Value = PatchPath> {
    let plain_attr =
        (prop::option::weighted(0.2, urn()), attr_name()).prop_map(|(urn, name)| AttrPath {
            urn,
            name,
            sub: None,
        });
    prop_oneof![
        attr_path().prop_map(PatchPath::Attribute),
        (plain_attr, value_filter(), prop::option::of(attr_name())).prop_map(
            |(attr, filter, sub_attr)| PatchPath::Filtered {
                attr,
                filter,
                sub_attr
            }
        ),
    ]
}

/// Text assembled from the grammar's tokens and near-misses.
fn token_soup() -> impl Strategy<Value = String> {
    let tokens = vec![
        "(",
        ")",
        "[",
        "]",
        "and",
        "or",
        "not",
        "AND",
        "Or",
        "nOt",
        "eq",
        "ne",
        "co",
        "sw",
        "ew",
        "gt",
        "ge",
        "lt",
        "le",
        "pr",
        "EQ",
        "Pr",
        "xx",
        "userName",
        "emails",
        "type",
        "value",
        "name.familyName",
        "a.b.c",
        "$ref",
        "members.$ref",
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "\"x\"",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u00e9\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud83d\"",
        "\"unterminated",
        "\\",
        "\"",
        "1",
        "-2.5e3",
        "0.0",
        "01",
        "1e999",
        "true",
        "false",
        "null",
        "TRUE",
        ".",
        ":",
        "é",
        "\u{0}",
        "\t",
    ];
    let separators = vec![" ", " ", " ", "", "  ", "\t"];
    prop::collection::vec(
        (
            prop::sample::select(tokens),
            prop::sample::select(separators),
        ),
        0..24,
    )
    .prop_map(|pieces| {
        pieces
            .into_iter()
            .map(|(token, separator)| format!("{token}{separator}"))
            .collect()
    })
}

fn check_filter_outcome(text: &str) -> Result<(), TestCaseError> {
    match parse_filter(text) {
        Ok(filter) => {
            let canonical = filter.to_string();
            let reparsed = parse_filter(&canonical);
            prop_assert_eq!(
                reparsed.as_ref(),
                Ok(&filter),
                "canonical text {}",
                canonical
            );
            // Evaluation never panics either.
            let _ = filter.matches(&json!({"userName": "x", "emails": [{"type": "work"}]}));
        }
        Err(error) => {
            prop_assert_eq!(error.status, 400);
            prop_assert_eq!(error.scim_type, Some("invalidFilter"), "{}", error.detail);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_parses_or_is_invalid_filter(text in any::<String>()) {
        check_filter_outcome(&text)?;
    }

    #[test]
    fn token_soup_parses_or_is_invalid_filter(text in token_soup()) {
        check_filter_outcome(&text)?;
    }

    #[test]
    fn arbitrary_text_is_a_patch_path_or_invalid_path(text in prop_oneof![any::<String>(), token_soup()]) {
        for outcome in [parse_patch_path(&text).map(|_| ()), parse_attr_path(&text).map(|_| ())] {
            if let Err(error) = outcome {
                prop_assert_eq!(error.status, 400);
                prop_assert_eq!(error.scim_type, Some("invalidPath"), "{}", error.detail);
            }
        }
    }

    #[test]
    fn generated_filters_round_trip_through_display(filter in filter()) {
        let text = filter.to_string();
        prop_assert_eq!(parse_filter(&text), Ok(filter), "text: {}", text);
    }

    #[test]
    fn generated_patch_paths_round_trip_through_display(path in patch_path()) {
        let text = path.to_string();
        prop_assert_eq!(parse_patch_path(&text), Ok(path), "text: {}", text);
    }

    #[test]
    fn generated_filters_evaluate_without_panicking(filter in filter(), count in any::<i64>(), text in ".{0,8}") {
        let resource = json!({
            "userName": text,
            "count": count,
            "active": true,
            "emails": [{"value": text, "type": "work", "primary": true}, {"value": "x"}],
            "roles": ["a", text],
            "name": {"givenName": text},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": text}},
        });
        let _ = filter.matches(&resource);
    }

    #[test]
    fn patch_never_panics_and_failure_changes_nothing(
        path in prop::option::of(patch_path()),
        kind in prop::sample::select(vec!["add", "replace", "remove", "ADD"]),
        value in prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            ".{0,6}".prop_map(Value::from),
            Just(json!({"value": "a", "type": "work", "primary": true})),
            Just(json!([{"value": "b", "primary": true}, {"value": "c"}])),
            Just(json!({"givenName": "x", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": {"value": "m"}})),
        ],
    ) {
        let resource = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "u",
            "name": {"givenName": "g"},
            "emails": [{"value": "a", "type": "work", "primary": true}, {"value": "z", "type": "home"}],
            "roles": ["a"],
        });
        let mut operation = json!({"op": kind, "value": value});
        if let Some(path) = &path {
            operation["path"] = Value::from(path.to_string());
        }
        let op = PatchOp::from_json(&operation);
        prop_assert!(op.is_ok(), "{:?}", op);
        if let Ok(op) = op {
            let mut patched = resource.clone();
            match apply_patch(&mut patched, &[op]) {
                Ok(_) => prop_assert!(patched.is_object()),
                Err(error) => {
                    prop_assert_eq!(&patched, &resource);
                    prop_assert_eq!(error.status, 400, "{}", error.detail);
                }
            }
        }
    }
}
