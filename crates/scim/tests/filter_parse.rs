//! Parsing SCIM filters, PATCH paths and attribute paths: the RFC 7644
//! examples, precedence, escapes, limits and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_scim::{
    AttrPath, CompValue, CompareOp, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN, PatchPath, ScimError,
    parse_attr_path, parse_filter, parse_patch_path,
};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn parse(text: &str) -> Filter {
    match parse_filter(text) {
        Ok(filter) => filter,
        Err(error) => panic!("{text:?} should parse: {error}"),
    }
}

fn parse_error(text: &str) -> ScimError {
    match parse_filter(text) {
        Ok(filter) => panic!("{text:?} should not parse, got {filter:?}"),
        Err(error) => {
            assert_eq!(error.status, 400, "{text:?}");
            assert_eq!(error.scim_type, Some("invalidFilter"), "{text:?}: {error}");
            error
        }
    }
}

fn present(name: &str) -> Filter {
    Filter::Present(AttrPath::new(name))
}

fn eq_number(name: &str, number: i64) -> Filter {
    Filter::Compare {
        path: AttrPath::new(name),
        op: CompareOp::Eq,
        value: CompValue::Number(number.into()),
    }
}

fn eq_string(path: AttrPath, text: &str) -> Filter {
    Filter::Compare {
        path,
        op: CompareOp::Eq,
        value: CompValue::String(text.to_owned()),
    }
}

fn and(left: Filter, right: Filter) -> Filter {
    Filter::And(Box::new(left), Box::new(right))
}

fn or(left: Filter, right: Filter) -> Filter {
    Filter::Or(Box::new(left), Box::new(right))
}

fn not(inner: Filter) -> Filter {
    Filter::Not(Box::new(inner))
}

#[test]
fn every_example_of_rfc_7644_section_3_4_2_2_parses() {
    let examples = [
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ];
    for example in examples {
        let filter = parse(example);
        // The canonical text parses to the same tree.
        assert_eq!(parse(&filter.to_string()), filter, "{example}");
    }
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(
        parse("a eq 1 or b eq 2 and c eq 3"),
        or(eq_number("a", 1), and(eq_number("b", 2), eq_number("c", 3)))
    );
    assert_eq!(
        parse("a eq 1 and b eq 2 or c eq 3"),
        or(and(eq_number("a", 1), eq_number("b", 2)), eq_number("c", 3))
    );
}

#[test]
fn not_binds_tighter_than_and() {
    assert_eq!(
        parse("not (a pr) and b pr"),
        and(not(present("a")), present("b"))
    );
    assert_eq!(
        parse("a pr or not (b pr or c pr)"),
        or(present("a"), not(or(present("b"), present("c"))))
    );
    // Erratum 7319: the RFC's examples put a space before the parenthesis,
    // its ABNF does not. Both are accepted.
    assert_eq!(parse("not(a pr)"), parse("not (a pr)"));
}

#[test]
fn chains_group_to_the_left() {
    assert_eq!(
        parse("a pr and b pr and c pr"),
        and(and(present("a"), present("b")), present("c"))
    );
    assert_eq!(
        parse("a pr or b pr or c pr"),
        or(or(present("a"), present("b")), present("c"))
    );
}

#[test]
fn parentheses_override_precedence() {
    assert_eq!(
        parse("(a eq 1 or b eq 2) and c eq 3"),
        and(or(eq_number("a", 1), eq_number("b", 2)), eq_number("c", 3))
    );
    assert_eq!(
        parse("a pr and (b pr and c pr)"),
        and(present("a"), and(present("b"), present("c")))
    );
    assert_eq!(parse("((((a pr))))"), present("a"));
}

#[test]
fn display_is_canonical_and_adds_only_needed_parentheses() {
    let cases = [
        (r#"userName Eq "x""#, r#"userName eq "x""#),
        ("(a pr)", "a pr"),
        ("a pr AND (b pr)", "a pr and b pr"),
        ("(a pr or b pr) and c pr", "(a pr or b pr) and c pr"),
        ("a pr or (b pr and c pr)", "a pr or b pr and c pr"),
        ("a pr and (b pr and c pr)", "a pr and (b pr and c pr)"),
        ("a pr or (b pr or c pr)", "a pr or (b pr or c pr)"),
        ("NOT(a pr)", "not (a pr)"),
        (
            r#"emails[ type eq "work"   and value co "@x" ]"#,
            r#"emails[type eq "work" and value co "@x"]"#,
        ),
        ("a eq TRUE", "a eq true"),
        ("a ne Null", "a ne null"),
        ("a gt -1.50E+2", "a gt -150.0"),
    ];
    for (input, canonical) in cases {
        assert_eq!(parse(input).to_string(), canonical, "{input}");
    }
}

#[test]
fn value_paths_hold_and_or_and_not() {
    let filter =
        parse(r#"emails[type eq "work" and value co "@example.com" or not (primary eq true)]"#);
    let Filter::ValuePath { path, filter } = filter else {
        panic!("expected a value path");
    };
    assert_eq!(path, AttrPath::new("emails"));
    assert!(matches!(*filter, Filter::Or(ref left, ref right)
        if matches!(**left, Filter::And(..)) && matches!(**right, Filter::Not(..))));
}

#[test]
fn value_paths_accept_spaces_around_brackets() {
    let expected = parse(r#"emails[type eq "work"]"#);
    for text in [
        r#"emails [type eq "work"]"#,
        r#"emails[ type eq "work" ]"#,
        r#"  emails[type eq "work"]  "#,
        "emails[type\teq\t\"work\"]",
    ] {
        assert_eq!(parse(text), expected, "{text}");
    }
}

#[test]
fn attribute_paths_take_urn_prefixes_and_sub_attributes() {
    assert_eq!(
        parse(&format!(r#"{ENTERPRISE}:employeeNumber eq "701984""#)),
        eq_string(
            AttrPath::new("employeeNumber").with_urn(ENTERPRISE),
            "701984"
        )
    );
    assert_eq!(
        parse(&format!(r#"{ENTERPRISE}:manager.value eq "26118915""#)),
        eq_string(
            AttrPath::new("manager")
                .with_urn(ENTERPRISE)
                .with_sub("value"),
            "26118915"
        )
    );
    assert_eq!(
        parse(r#"name.familyName eq "Jensen""#),
        eq_string(AttrPath::new("name").with_sub("familyName"), "Jensen")
    );
    assert_eq!(
        parse("members.$ref pr"),
        Filter::Present(AttrPath::new("members").with_sub("$ref"))
    );
    assert_eq!(
        parse("x-custom_attr2 pr"),
        Filter::Present(AttrPath::new("x-custom_attr2"))
    );
}

#[test]
fn every_operator_parses_in_any_case() {
    for op in CompareOp::ALL {
        let lower = op.as_str();
        let upper = lower.to_ascii_uppercase();
        let mixed: String = lower
            .chars()
            .enumerate()
            .map(|(index, c)| {
                if index == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for spelling in [lower.to_owned(), upper, mixed] {
            let filter = parse(&format!(r#"userName {spelling} "x""#));
            assert_eq!(
                filter,
                Filter::Compare {
                    path: AttrPath::new("userName"),
                    op,
                    value: CompValue::String("x".to_owned()),
                }
            );
        }
    }
    assert_eq!(parse("title PR"), present("title"));
    assert_eq!(parse("title Pr"), present("title"));
}

#[test]
fn logical_keywords_parse_in_any_case() {
    assert_eq!(
        parse("a pr AND b pr Or NoT (c pr)"),
        or(and(present("a"), present("b")), not(present("c")))
    );
}

#[test]
fn attribute_names_keep_their_spelling_but_compare_ignoring_case() {
    let Filter::Present(path) = parse("USERNAME pr") else {
        panic!("expected pr");
    };
    assert_eq!(path.name, "USERNAME");
    assert!(path.is_named("userName"));
    assert!(path.eq_ignore_ascii_case(&AttrPath::new("username")));
    assert_eq!(path.key(), "username");
    let with_urn = parse_attr_path(&format!("{ENTERPRISE}:Manager.Value")).expect("path");
    assert!(
        with_urn.eq_ignore_ascii_case(
            &AttrPath::new("manager")
                .with_urn(ENTERPRISE.to_ascii_uppercase())
                .with_sub("value")
        )
    );
    assert!(with_urn.sub_is_named("VALUE"));
    assert!(!with_urn.eq_ignore_ascii_case(&AttrPath::new("manager").with_sub("value")));
}

#[test]
fn keywords_are_attribute_names_where_an_attribute_is_expected() {
    assert_eq!(parse("not pr"), present("not"));
    assert_eq!(parse("and pr or or pr"), or(present("and"), present("or")));
    assert_eq!(parse("notes pr"), present("notes"));
    assert_eq!(
        parse("android pr and order pr"),
        and(present("android"), present("order"))
    );
}

#[test]
fn strings_decode_json_escapes() {
    let filter = parse(r#"a eq "q\" b\\ s\/ \b\f\n\r\t é \u00e9 \u20AC \ud83d\ude00""#);
    assert_eq!(
        filter,
        Filter::Compare {
            path: AttrPath::new("a"),
            op: CompareOp::Eq,
            value: CompValue::String("q\" b\\ s/ \u{8}\u{c}\n\r\t é é € 😀".to_owned()),
        }
    );
    // And the canonical text escapes them back.
    assert_eq!(parse(&filter.to_string()), filter);
    assert_eq!(
        parse(r#"a eq "O'Malley (the) [first] and or""#),
        eq_string(AttrPath::new("a"), "O'Malley (the) [first] and or")
    );
}

#[test]
fn values_are_json_literals_and_numbers() {
    let value_of = |text: &str| match parse(&format!("a eq {text}")) {
        Filter::Compare { value, .. } => value,
        other => panic!("{other:?}"),
    };
    assert_eq!(value_of("true"), CompValue::Bool(true));
    assert_eq!(value_of("false"), CompValue::Bool(false));
    assert_eq!(value_of("null"), CompValue::Null);
    assert_eq!(value_of("0"), CompValue::Number(0.into()));
    assert_eq!(value_of("-17"), CompValue::Number((-17).into()));
    assert_eq!(
        value_of("18446744073709551615"),
        CompValue::Number(u64::MAX.into())
    );
    let CompValue::Number(fraction) = value_of("2.5e-3") else {
        panic!("number");
    };
    assert_eq!(fraction.as_f64(), Some(0.0025));
}

#[test]
fn syntax_errors_are_invalid_filter() {
    let broken = [
        "",
        "   ",
        "(a pr",
        "((a pr)",
        "a pr)",
        "a eq",
        "a eq ",
        "a",
        "a ",
        r#"a xx "b""#,
        r#"a equals "b""#,
        "a pr garbage",
        "a pr and",
        "a pr and ",
        "a pr andb pr",
        "a pr or(b pr)",
        r#"a eq"x""#,
        r#"a eq "x"and b pr"#,
        r#"a eq "unterminated"#,
        r#"a eq "bad \x escape""#,
        r#"a eq "\u12""#,
        r#"a eq "\ud800""#,
        r#"a eq "\udc00\ud800""#,
        "a eq \"raw\ncontrol\"",
        "a eq 'single'",
        "a eq bare",
        "a eq 01",
        "a eq 1.",
        "a eq .5",
        "a eq -",
        "a eq 1e",
        "a eq 1e999",
        "a eq 12abc",
        "a gt true",
        "a le null",
        "a co 5",
        "a sw true",
        "a ew null",
        r#"emails[type eq "w""#,
        r#"emails[type eq "w"]]"#,
        r#"emails[]"#,
        r#"emails[x[y pr]]"#,
        r#"emails[type eq "w"].value eq "x""#,
        "a.b.c pr",
        "a. pr",
        "1a pr",
        "_a pr",
        "a$b pr",
        "urn: pr",
        "urn:x: pr",
        "urn::x:a pr",
        "$ref$ pr",
        ":a pr",
        "not a pr",
        "not (a pr",
        "() ",
        "a pr and ()",
        "\"x\" eq a",
        "a eq \"x\" b",
        "a pr ]",
        "é pr",
    ];
    for text in broken {
        parse_error(text);
    }
}

#[test]
fn errors_say_where_and_what() {
    let error = parse_error(r#"userName eq "x" xx"#);
    assert!(error.detail.contains("position 16"), "{}", error.detail);
    assert!(error.detail.contains("`and`, `or`"), "{}", error.detail);

    let error = parse_error(r#"userName equals "x""#);
    assert!(error.detail.contains("position 9"), "{}", error.detail);
    assert!(
        error.detail.contains("unknown operator `equals`"),
        "{}",
        error.detail
    );

    let error = parse_error("(a pr");
    assert!(error.detail.contains("expected `)`"), "{}", error.detail);
    assert!(error.detail.contains("at the end"), "{}", error.detail);

    let error = parse_error("");
    assert!(error.detail.contains("empty"), "{}", error.detail);

    let error = parse_error("a co 5");
    assert!(error.detail.contains("position 5"), "{}", error.detail);

    // Positions count characters, not bytes.
    let error = parse_error(r#"a eq "ééé" b"#);
    assert!(error.detail.contains("position 11"), "{}", error.detail);
}

#[test]
fn nesting_is_limited() {
    let nested = |levels: usize| format!("{}a pr{}", "(".repeat(levels), ")".repeat(levels));
    parse(&nested(MAX_FILTER_DEPTH));
    let error = parse_error(&nested(MAX_FILTER_DEPTH + 1));
    assert!(error.detail.contains("deeper than"), "{}", error.detail);

    let nots = |levels: usize| format!("{}a pr{}", "not (".repeat(levels), ")".repeat(levels));
    parse(&nots(MAX_FILTER_DEPTH));
    parse_error(&nots(MAX_FILTER_DEPTH + 1));

    // Far past the limit: an error, not a stack overflow.
    parse_error(&"(".repeat(MAX_FILTER_LEN));
    parse_error(&"not (".repeat(MAX_FILTER_LEN / 5));
    parse_error(&"a[".repeat(MAX_FILTER_LEN / 2));
}

#[test]
fn length_is_limited() {
    let padding = "x".repeat(MAX_FILTER_LEN);
    let error = parse_error(&format!(r#"a eq "{padding}""#));
    assert!(error.detail.contains("bytes long"), "{}", error.detail);
}

#[test]
fn long_chains_parse_display_and_evaluate_without_deep_recursion() {
    // As many terms as fit in the length limit: the tree is that deep.
    let terms = MAX_FILTER_LEN / "a pr or ".len();
    let text = vec!["a pr"; terms].join(" or ");
    assert!(text.len() <= MAX_FILTER_LEN);
    let filter = parse(&text);
    assert_eq!(filter.to_string(), text);
    assert!(filter.matches(&serde_json::json!({"a": 1})));
    assert!(!filter.matches(&serde_json::json!({"b": 1})));
}

#[test]
fn patch_paths() {
    assert_eq!(
        parse_patch_path("members").expect("path"),
        PatchPath::Attribute(AttrPath::new("members"))
    );
    assert_eq!(
        parse_patch_path("name.familyName").expect("path"),
        PatchPath::Attribute(AttrPath::new("name").with_sub("familyName"))
    );
    assert_eq!(
        parse_patch_path(&format!("{ENTERPRISE}:manager")).expect("path"),
        PatchPath::Attribute(AttrPath::new("manager").with_urn(ENTERPRISE))
    );
    assert_eq!(
        parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#)
            .expect("path"),
        PatchPath::Filtered {
            attr: AttrPath::new("members"),
            filter: eq_string(
                AttrPath::new("value"),
                "2819c223-7f76-453a-919d-413861904646"
            ),
            sub_attr: None,
        }
    );
    let path = parse_patch_path(r#"emails[type eq "work" and value ew "example.com"].value"#)
        .expect("path");
    let PatchPath::Filtered { attr, sub_attr, .. } = &path else {
        panic!("expected a filtered path");
    };
    assert_eq!(attr, &AttrPath::new("emails"));
    assert_eq!(sub_attr.as_deref(), Some("value"));
    assert_eq!(
        path.to_string(),
        r#"emails[type eq "work" and value ew "example.com"].value"#
    );
    assert_eq!(parse_patch_path(&path.to_string()).expect("path"), path);
}

#[test]
fn bad_patch_paths_are_invalid_path() {
    for text in [
        "",
        "  ",
        "members[",
        r#"emails[type eq "work""#,
        r#"emails[type eq "work"]."#,
        r#"emails[type eq "work"]x"#,
        r#"emails[type eq "work"].value.display"#,
        r#"emails[type eq "work"].1"#,
        r#"emails[type eq "work"][value pr]"#,
        r#"name.givenName[value pr]"#,
        r#"emails[x[y pr]]"#,
        "name.given.name",
        "members value",
        "a or b",
    ] {
        let error = parse_patch_path(text).expect_err(text);
        assert_eq!(error.scim_type, Some("invalidPath"), "{text}: {error}");
        assert_eq!(error.status, 400);
    }
}

#[test]
fn bare_attribute_paths() {
    assert_eq!(
        parse_attr_path(" meta.lastModified ").expect("path"),
        AttrPath::new("meta").with_sub("lastModified")
    );
    assert_eq!(
        "userName".parse::<AttrPath>().expect("path"),
        AttrPath::new("userName")
    );
    let error = parse_attr_path("emails[type eq \"work\"]").expect_err("filter");
    assert_eq!(error.scim_type, Some("invalidPath"));
}

#[test]
fn from_str_is_parse_filter() {
    let filter: Filter = "title pr".parse().expect("filter");
    assert_eq!(filter, present("title"));
}
