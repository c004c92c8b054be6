//! PATCH: request bodies and their application (RFC 7644 §3.5.2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_scim::{
    AttrPath, PatchOp, PatchOpKind, PatchOutcome, PatchRequest, Schema, ScimError, apply_patch,
    apply_patch_with,
};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
const MANDY: &str = "902c246b-6245-4190-8e05-00816be7344a";
const JAMES: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

fn request(operations: Value) -> Vec<PatchOp> {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations,
    });
    match PatchRequest::from_json(&body) {
        Ok(request) => request.operations,
        Err(error) => panic!("{body}: {error}"),
    }
}

#[track_caller]
fn patch(resource: &mut Value, operations: Value) -> PatchOutcome {
    let ops = request(operations);
    match apply_patch(resource, &ops) {
        Ok(outcome) => outcome,
        Err(error) => panic!("{error}"),
    }
}

#[track_caller]
fn patch_error(resource: &mut Value, operations: Value) -> ScimError {
    let before = resource.clone();
    let ops = request(operations);
    let error = apply_patch(resource, &ops).expect_err("the patch should fail");
    assert_eq!(
        *resource, before,
        "a failed PATCH leaves the resource as it was"
    );
    error
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "members": [
            {"value": BABS, "display": "Babs Jensen"},
            {"value": MANDY, "display": "Mandy Pepperidge"}
        ]
    })
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": BABS,
        "userName": "bjensen",
        "name": {"familyName": "Jensen", "givenName": "Barbara"},
        "displayName": "Babs Jensen",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [
            {
                "type": "work",
                "streetAddress": "100 Universal City Plaza",
                "locality": "Hollywood",
                "region": "CA",
                "postalCode": "91608",
                "country": "US",
                "primary": true
            }
        ]
    })
}

fn member_ids(group: &Value) -> Vec<&str> {
    group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|member| member["value"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

// --- The examples of RFC 7644 §3.5.2 ---

#[test]
fn rfc_add_members() {
    let mut group = group();
    let outcome = patch(
        &mut group,
        json!([{
            "op": "add",
            "path": "members",
            "value": [{
                "display": "James Smith",
                "$ref": format!("https://example.com/v2/Users/{JAMES}"),
                "value": JAMES
            }]
        }]),
    );
    assert_eq!(member_ids(&group), [BABS, MANDY, JAMES]);
    assert!(outcome.changed);
    assert_eq!(outcome.touched, [AttrPath::new("members")]);
}

#[test]
fn rfc_add_without_path() {
    let mut user = user();
    patch(
        &mut user,
        json!([{
            "op": "add",
            "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "babs@example.net", "type": "other"}],
                "nickName": "Babs"
            }
        }]),
    );
    assert_eq!(user["nickName"], "Babs");
    // The home address was there already: not added twice.
    assert_eq!(
        user["emails"],
        json!([
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"},
            {"value": "babs@example.net", "type": "other"}
        ])
    );
}

#[test]
fn rfc_remove_one_member() {
    let mut group = group();
    patch(
        &mut group,
        json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}]),
    );
    assert_eq!(member_ids(&group), [MANDY]);
}

#[test]
fn rfc_remove_all_members() {
    let mut group = group();
    patch(&mut group, json!([{"op": "remove", "path": "members"}]));
    assert!(group.get("members").is_none());
}

#[test]
fn rfc_remove_then_add_members() {
    let mut group = group();
    patch(
        &mut group,
        json!([
            {"op": "remove", "path": format!("members[value eq \"{BABS}\"]")},
            {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": JAMES}]}
        ]),
    );
    assert_eq!(member_ids(&group), [MANDY, JAMES]);
}

#[test]
fn rfc_replace_all_members() {
    let mut group = group();
    patch(
        &mut group,
        json!([{
            "op": "replace",
            "path": "members",
            "value": [{"display": "James Smith", "value": JAMES}]
        }]),
    );
    assert_eq!(member_ids(&group), [JAMES]);
}

#[test]
fn rfc_replace_a_complex_value_chosen_by_filter() {
    let mut user = user();
    patch(
        &mut user,
        json!([{
            "op": "replace",
            "path": "addresses[type eq \"work\"]",
            "value": {
                "type": "work",
                "streetAddress": "911 Universal City Plaza",
                "primary": true
            }
        }]),
    );
    let address = &user["addresses"][0];
    assert_eq!(address["streetAddress"], "911 Universal City Plaza");
    // Sub-attributes not given are left unchanged (§3.5.2.3).
    assert_eq!(address["locality"], "Hollywood");
}

#[test]
fn rfc_replace_a_sub_attribute_chosen_by_filter() {
    let mut user = user();
    patch(
        &mut user,
        json!([{
            "op": "replace",
            "path": "addresses[type eq \"work\"].streetAddress",
            "value": "1010 Broadway Ave"
        }]),
    );
    assert_eq!(user["addresses"][0]["streetAddress"], "1010 Broadway Ave");
    assert_eq!(user["addresses"][0]["postalCode"], "91608");
}

#[test]
fn rfc_replace_work_email_value() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"}]),
    );
    assert_eq!(user["emails"][0]["value"], "babs@example.com");
    assert_eq!(user["emails"][1]["value"], "babs@jensen.org");
}

#[test]
fn rfc_replace_without_path() {
    let mut user = user();
    patch(
        &mut user,
        json!([{
            "op": "replace",
            "value": {
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": true},
                    {"value": "babs@jensen.org", "type": "home"}
                ],
                "nickName": "Babs",
                "name": {"givenName": "Babs"}
            }
        }]),
    );
    assert_eq!(user["nickName"], "Babs");
    assert_eq!(user["emails"].as_array().map(Vec::len), Some(2));
    // A complex attribute keeps the sub-attributes not given.
    assert_eq!(
        user["name"],
        json!({"familyName": "Jensen", "givenName": "Babs"})
    );
}

#[test]
fn rfc_remove_values_chosen_by_complex_filter() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
    );
    assert_eq!(
        user["emails"],
        json!([{"value": "babs@jensen.org", "type": "home"}])
    );
}

#[test]
fn rfc_remove_a_sub_attribute_of_chosen_values() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "remove", "path": "addresses[type eq \"work\"].postalCode"}]),
    );
    assert!(user["addresses"][0].get("postalCode").is_none());
    assert_eq!(user["addresses"][0]["locality"], "Hollywood");
}

// --- Extensions ---

#[test]
fn enterprise_manager_goes_into_the_extension_object() {
    let mut user = user();
    let outcome = patch(
        &mut user,
        json!([{
            "op": "add",
            "path": format!("{ENTERPRISE}:manager"),
            "value": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
        }]),
    );
    assert_eq!(
        user[ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    assert!(user.get("manager").is_none());
    // The extension is now in use, so listed (RFC 7643 §3).
    assert_eq!(
        user["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );
    assert_eq!(
        outcome.touched,
        [AttrPath::new("manager").with_urn(ENTERPRISE)]
    );

    patch(
        &mut user,
        json!([{"op": "replace", "path": format!("{ENTERPRISE}:manager.displayName"), "value": "J. Smith"}]),
    );
    assert_eq!(user[ENTERPRISE]["manager"]["displayName"], "J. Smith");

    // Removing its last attribute drops the extension and unlists it.
    patch(
        &mut user,
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:manager")}]),
    );
    assert!(user.get(ENTERPRISE).is_none());
    assert_eq!(
        user["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
}

#[test]
fn extension_urns_as_members_of_a_pathless_value() {
    let mut user = user();
    patch(
        &mut user,
        json!([{
            "op": "add",
            "value": {
                ENTERPRISE: {"employeeNumber": "701984", "costCenter": "4130"},
                format!("{ENTERPRISE}:department"): "Tour Operations",
                "name.middleName": "Jane"
            }
        }]),
    );
    assert_eq!(
        user[ENTERPRISE],
        json!({"employeeNumber": "701984", "costCenter": "4130", "department": "Tour Operations"})
    );
    assert_eq!(user["name"]["middleName"], "Jane");

    patch(
        &mut user,
        json!([{"op": "replace", "path": ENTERPRISE, "value": {"costCenter": "4200", "department": null}}]),
    );
    assert_eq!(
        user[ENTERPRISE],
        json!({"employeeNumber": "701984", "costCenter": "4200"})
    );

    patch(&mut user, json!([{"op": "remove", "path": ENTERPRISE}]));
    assert!(user.get(ENTERPRISE).is_none());
    assert_eq!(user["schemas"].as_array().map(Vec::len), Some(1));
}

#[test]
fn core_urn_prefix_is_the_top_level() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName", "value": "Babs"}]),
    );
    assert_eq!(user["name"]["givenName"], "Babs");
}

// --- Attribute semantics ---

#[test]
fn names_match_ignoring_case() {
    let mut user = user();
    let outcome = patch(
        &mut user,
        json!([
            {"op": "REPLACE", "path": "DISPLAYNAME", "value": "Babs"},
            {"op": "Add", "path": "Name.GivenName", "value": "B."},
            {"op": "remove", "path": "EMAILS[TYPE EQ \"HOME\"]"}
        ]),
    );
    assert_eq!(user["displayName"], "Babs");
    assert!(user.get("DISPLAYNAME").is_none());
    assert_eq!(user["name"]["givenName"], "B.");
    assert_eq!(user["emails"].as_array().map(Vec::len), Some(1));
    let touched: Vec<String> = outcome.touched.iter().map(AttrPath::key).collect();
    assert_eq!(touched, ["displayname", "name", "emails"]);
}

#[test]
fn add_to_single_valued_replaces_and_to_unassigned_sets() {
    let mut user = user();
    patch(
        &mut user,
        json!([
            {"op": "add", "path": "displayName", "value": "Babs"},
            {"op": "add", "path": "title", "value": "Tour Guide"},
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "555-555-8377", "type": "work"}]}
        ]),
    );
    assert_eq!(user["displayName"], "Babs");
    assert_eq!(user["title"], "Tour Guide");
    assert_eq!(
        user["phoneNumbers"],
        json!([{"value": "555-555-8377", "type": "work"}])
    );
}

#[test]
fn add_of_a_present_member_changes_nothing_but_what_it_adds() {
    let mut group = group();
    let outcome = patch(
        &mut group,
        json!([{"op": "add", "path": "members", "value": [{"value": BABS}]}]),
    );
    assert_eq!(member_ids(&group), [BABS, MANDY]);
    assert!(!outcome.changed);

    patch(
        &mut group,
        json!([{"op": "add", "path": "members", "value": {"value": MANDY, "type": "User"}}]),
    );
    assert_eq!(
        group["members"][1],
        json!({"value": MANDY, "display": "Mandy Pepperidge", "type": "User"})
    );
}

#[test]
fn sub_attributes_without_filter() {
    let mut user = user();
    patch(
        &mut user,
        json!([
            {"op": "replace", "path": "name.familyName", "value": "Jensen-Smith"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "add", "path": "x509Info.issuer", "value": "CN=Example"}
        ]),
    );
    assert_eq!(user["name"], json!({"familyName": "Jensen-Smith"}));
    assert_eq!(user["x509Info"], json!({"issuer": "CN=Example"}));

    // Removing the last sub-attribute leaves the attribute unassigned.
    patch(
        &mut user,
        json!([{"op": "remove", "path": "name.familyName"}]),
    );
    assert!(user.get("name").is_none());
}

#[test]
fn replace_with_null_unassigns() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "replace", "path": "displayName", "value": null}]),
    );
    assert!(user.get("displayName").is_none());
    patch(
        &mut user,
        json!([{"op": "replace", "value": {"name": {"givenName": null}}}]),
    );
    assert_eq!(user["name"], json!({"familyName": "Jensen"}));
}

#[test]
fn remove_of_what_is_not_there_succeeds() {
    let mut user = user();
    let outcome = patch(
        &mut user,
        json!([
            {"op": "remove", "path": "nickName"},
            {"op": "remove", "path": "emails[type eq \"other\"]"},
            {"op": "remove", "path": format!("{ENTERPRISE}:manager")},
            {"op": "remove", "path": "name.middleName"}
        ]),
    );
    assert!(!outcome.changed);
    assert_eq!(user, self::user());
}

#[test]
fn remove_with_listed_values_removes_only_those() {
    // Microsoft Entra ID removes group members this way.
    let mut group = group();
    patch(
        &mut group,
        json!([{"op": "Remove", "path": "members", "value": [{"value": BABS}]}]),
    );
    assert_eq!(member_ids(&group), [MANDY]);
}

#[test]
fn add_with_an_unmatched_equality_filter_adds_the_value_it_describes() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "add", "path": "emails[type eq \"other\"].value", "value": "babs@example.net"}]),
    );
    assert_eq!(
        user["emails"][2],
        json!({"type": "other", "value": "babs@example.net"})
    );

    // With a match, the matching value is updated instead.
    patch(
        &mut user,
        json!([{"op": "add", "path": "emails[type eq \"other\"].display", "value": "Other"}]),
    );
    assert_eq!(
        user["emails"][2],
        json!({"type": "other", "value": "babs@example.net", "display": "Other"})
    );
    assert_eq!(user["emails"].as_array().map(Vec::len), Some(3));

    // Into an attribute the resource does not have yet.
    patch(
        &mut user,
        json!([{"op": "add", "path": "phoneNumbers[type eq \"work\"]", "value": {"value": "555-555-5555"}}]),
    );
    assert_eq!(
        user["phoneNumbers"],
        json!([{"type": "work", "value": "555-555-5555"}])
    );
}

#[test]
fn simple_multi_valued_attributes() {
    let mut resource = json!({"roles": ["admin"]});
    patch(
        &mut resource,
        json!([{"op": "add", "path": "roles", "value": ["ADMIN", "auditor"]}]),
    );
    assert_eq!(resource["roles"], json!(["admin", "auditor"]));
    patch(
        &mut resource,
        json!([{"op": "replace", "path": "roles[value eq \"auditor\"].value", "value": "reviewer"}]),
    );
    assert_eq!(resource["roles"], json!(["admin", "reviewer"]));
    patch(
        &mut resource,
        json!([{"op": "remove", "path": "roles[value eq \"admin\"]"}]),
    );
    assert_eq!(resource["roles"], json!(["reviewer"]));
}

// --- primary ---

#[test]
fn a_new_primary_value_takes_the_flag_from_the_others() {
    let mut user = user();
    patch(
        &mut user,
        json!([{"op": "add", "path": "emails", "value": [{"value": "babs@example.net", "type": "other", "primary": true}]}]),
    );
    assert_eq!(user["emails"][0]["primary"], false);
    assert_eq!(user["emails"][2]["primary"], true);

    patch(
        &mut user,
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    );
    let primaries: Vec<bool> = user["emails"]
        .as_array()
        .map(|emails| {
            emails
                .iter()
                .map(|email| email["primary"] == true)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(primaries, [false, true, false]);
}

#[test]
fn two_primary_values_are_refused() {
    let mut user = user();
    let error = patch_error(
        &mut user,
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a@example.com", "primary": true},
            {"value": "b@example.com", "primary": true}
        ]}]),
    );
    assert_eq!(error.scim_type, Some("invalidValue"));
}

// --- Errors ---

#[test]
fn remove_without_path_is_no_target() {
    let mut user = user();
    let error = patch_error(&mut user, json!([{"op": "remove"}]));
    assert_eq!(error.status, 400);
    assert_eq!(error.scim_type, Some("noTarget"));
}

#[test]
fn replace_with_an_unmatched_filter_is_no_target() {
    let mut user = user();
    let error = patch_error(
        &mut user,
        json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x@example.com"}]),
    );
    assert_eq!(error.scim_type, Some("noTarget"));
    assert!(
        error.detail.starts_with("Operations[0]: "),
        "{}",
        error.detail
    );

    let error = patch_error(
        &mut user,
        json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"]", "value": {"value": "1"}}]),
    );
    assert_eq!(error.scim_type, Some("noTarget"));
}

#[test]
fn add_with_an_unmatched_filter_that_describes_no_value_is_no_target() {
    let mut user = user();
    for path in [
        "emails[type co \"oth\"].value",
        "emails[type eq \"other\" or type eq \"home2\"].value",
        "emails[not (type eq \"work\") and type eq \"x\"].value",
    ] {
        let error = patch_error(
            &mut user,
            json!([{"op": "add", "path": path, "value": "x@example.com"}]),
        );
        assert_eq!(error.scim_type, Some("noTarget"), "{path}");
    }
}

#[test]
fn a_failing_operation_undoes_the_earlier_ones() {
    let mut user = user();
    let error = patch_error(
        &mut user,
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "emails[type eq \"nope\"]", "value": {"value": "x"}}
        ]),
    );
    assert!(
        error.detail.starts_with("Operations[1]: "),
        "{}",
        error.detail
    );
    assert_eq!(user["displayName"], "Babs Jensen");
}

#[test]
fn missing_or_wrong_values_are_invalid_value() {
    let mut user = user();
    for operations in [
        json!([{"op": "add", "path": "title"}]),
        json!([{"op": "add", "path": "title", "value": null}]),
        json!([{"op": "replace", "path": "title"}]),
        json!([{"op": "add", "value": "not an object"}]),
        json!([{"op": "replace", "value": ["not", "an", "object"]}]),
        json!([{"op": "add", "path": ENTERPRISE, "value": "not an object"}]),
    ] {
        let error = patch_error(&mut user, operations.clone());
        assert_eq!(
            error.scim_type,
            Some("invalidValue"),
            "{operations}: {error}"
        );
    }
}

#[test]
fn paths_that_cannot_be_operated_on_are_invalid_path() {
    let mut user = user();
    for operations in [
        // Which email's value?
        json!([{"op": "replace", "path": "emails.value", "value": "x@example.com"}]),
        json!([{"op": "remove", "path": "emails.value"}]),
        // userName has no sub-attributes.
        json!([{"op": "add", "path": "userName.first", "value": "x"}]),
        // name is not multi-valued.
        json!([{"op": "replace", "path": "name[givenName eq \"Barbara\"]", "value": {"givenName": "B"}}]),
        json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User"}]),
        json!([{"op": "add", "value": {"not a name": 1}}]),
    ] {
        let error = patch_error(&mut user, operations.clone());
        assert_eq!(
            error.scim_type,
            Some("invalidPath"),
            "{operations}: {error}"
        );
    }
}

#[test]
fn request_bodies() {
    let body = br#"{
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": "x"}]},
            {"op": "REMOVE", "path": "members[value eq \"y\"]"},
            {"op": "replace", "value": {"displayName": "z"}}
        ]
    }"#;
    let request = PatchRequest::from_slice(body).expect("request");
    let kinds: Vec<PatchOpKind> = request.operations.iter().map(|op| op.op).collect();
    assert_eq!(
        kinds,
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
    );
    assert!(request.operations[2].path.is_none());

    // serde, for handlers that take a typed body.
    let typed: PatchRequest = serde_json::from_slice(body).expect("serde");
    assert_eq!(typed, request);

    // Member names of the message are case-insensitive too.
    let lower = json!({
        "SCHEMAS": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "operations": [{"OP": "add", "PATH": "title", "VALUE": "x"}]
    });
    assert!(PatchRequest::from_json(&lower).is_ok());
}

#[test]
fn malformed_request_bodies() {
    let schemas = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
    let cases = [
        (json!([]), "invalidSyntax"),
        (
            json!({"Operations": [{"op": "add", "path": "a", "value": 1}]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "Operations": [{"op": "add", "path": "a", "value": 1}]}),
            "invalidSyntax",
        ),
        (json!({"schemas": schemas}), "invalidSyntax"),
        (
            json!({"schemas": schemas, "Operations": []}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": schemas, "Operations": {"op": "add"}}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": schemas, "Operations": ["add"]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": schemas, "Operations": [{"path": "a"}]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": schemas, "Operations": [{"op": "move", "path": "a"}]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": schemas, "Operations": [{"op": 1, "path": "a"}]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": schemas, "Operations": [{"op": "add", "path": 1, "value": 1}]}),
            "invalidPath",
        ),
        (
            json!({"schemas": schemas, "Operations": [{"op": "add", "path": "a[", "value": 1}]}),
            "invalidPath",
        ),
        (
            json!({"schemas": schemas, "Operations": [{"op": "add", "path": "a b", "value": 1}]}),
            "invalidPath",
        ),
    ];
    for (body, scim_type) in cases {
        let error = PatchRequest::from_json(&body).expect_err("malformed");
        assert_eq!(error.scim_type, Some(scim_type), "{body}: {error}");
    }
    let error = PatchRequest::from_json(
        &json!({"schemas": schemas, "Operations": [{"op": "add", "path": "ok", "value": 1}, {"op": "add", "path": "x[", "value": 1}]}),
    )
    .expect_err("bad path");
    assert!(
        error.detail.starts_with("Operations[1]: "),
        "{}",
        error.detail
    );

    let error = PatchRequest::from_slice(b"{not json").expect_err("not JSON");
    assert_eq!(error.scim_type, Some("invalidSyntax"));
    assert!(serde_json::from_value::<PatchRequest>(json!({"Operations": []})).is_err());
}

#[test]
fn the_resource_must_be_an_object() {
    let mut resource = json!(["not", "a", "resource"]);
    let ops = request(json!([{"op": "add", "path": "a", "value": 1}]));
    let error = apply_patch(&mut resource, &ops).expect_err("not an object");
    assert_eq!(error.status, 500);
}

/// A server that stores its attributes in their schema spelling.
struct SpellingSchema;

impl Schema for SpellingSchema {
    fn canonical_name(&self, attr: &AttrPath) -> Option<String> {
        let known = [
            "displayName",
            "nickName",
            "emails",
            "value",
            "type",
            "givenName",
            "name",
        ];
        let last = attr.sub.as_deref().unwrap_or(&attr.name);
        known
            .iter()
            .find(|known| known.eq_ignore_ascii_case(last))
            .map(|known| (*known).to_owned())
    }
}

#[test]
fn a_schema_spells_new_attributes() {
    let mut resource = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]});
    let ops = request(json!([
        {"op": "add", "path": "NICKNAME", "value": "Babs"},
        {"op": "add", "value": {"EMAILS": [{"VALUE": "b@example.com", "TYPE": "work"}]}},
        {"op": "add", "path": "NAME.GIVENNAME", "value": "Barbara"}
    ]));
    let outcome = apply_patch_with(&mut resource, &ops, &SpellingSchema).expect("patch");
    assert_eq!(
        resource,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "nickName": "Babs",
            "emails": [{"value": "b@example.com", "type": "work"}],
            "name": {"givenName": "Barbara"}
        })
    );
    assert_eq!(
        outcome.touched,
        [
            AttrPath::new("nickName"),
            AttrPath::new("emails"),
            AttrPath::new("name")
        ]
    );
}

#[test]
fn touched_attributes_let_the_server_refuse_read_only_ones() {
    let mut user = user();
    let ops = request(json!([
        {"op": "replace", "value": {"ID": "other", "displayName": "x"}},
        {"op": "remove", "path": "meta.created"}
    ]));
    let outcome = apply_patch(&mut user, &ops).expect("patch");
    let read_only = [AttrPath::new("id"), AttrPath::new("meta")];
    let refused: Vec<&AttrPath> = outcome
        .touched
        .iter()
        .filter(|attr| read_only.iter().any(|ro| ro.eq_ignore_ascii_case(attr)))
        .collect();
    assert_eq!(refused.len(), 2);
}

#[test]
fn error_body_of_rfc_7644_section_3_12() {
    let error = ScimError::no_target("no value of `emails` matches");
    assert_eq!(
        error.to_json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "400",
            "scimType": "noTarget",
            "detail": "no value of `emails` matches"
        })
    );
    let conflict = ScimError::uniqueness("userName is taken");
    assert_eq!(conflict.to_json()["status"], "409");
    let not_found = ScimError::new(404, None, "Resource 2819c223 not found");
    assert_eq!(
        not_found.to_json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "404",
            "detail": "Resource 2819c223 not found"
        })
    );
    assert_eq!(not_found.to_string(), "Resource 2819c223 not found");
}

#[test]
fn nulls_in_new_values_are_not_stored() {
    let mut user = user();
    patch(
        &mut user,
        json!([
            {"op": "add", "path": "x509Info", "value": {"issuer": "CN=Example", "serial": null}},
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "555", "type": null}, null]},
            {"op": "replace", "path": "name", "value": {"familyName": null, "middleName": "J"}}
        ]),
    );
    assert_eq!(user["x509Info"], json!({"issuer": "CN=Example"}));
    assert_eq!(user["phoneNumbers"], json!([{"value": "555"}]));
    assert_eq!(
        user["name"],
        json!({"givenName": "Barbara", "middleName": "J"})
    );
}
