//! SCIM 2.0 protocol grammar and semantics (RFC 7643, RFC 7644), free of any
//! knowledge of Gatehouse's users: the SCIM endpoints map their resources to
//! JSON, call into this crate, and map back.
//!
//! - [`filter`]: `filter=` expressions (RFC 7644 §3.4.2.2) — [`parse_filter`]
//!   into a [`Filter`] tree whose `Display` is canonical filter text.
//! - [`path`]: the `path` of PATCH operations (§3.5.2) — [`parse_patch_path`].
//! - [`eval`]: [`Filter::matches`] on a JSON resource, for filtering in memory
//!   (Groups) and for PATCH value filters.
//! - [`patch`]: PATCH request bodies ([`PatchRequest`]) and [`apply_patch`]
//!   (§3.5.2.1–3), atomic, reporting the attributes touched so the server can
//!   enforce mutability.
//! - [`ScimError`]: status, `scimType` and detail, rendered as the §3.12 error
//!   body by [`ScimError::to_json`].
//! - [`Schema`]: what the crate cannot tell from JSON — `caseExact`
//!   attributes, core versus extension schema URNs, canonical spellings —
//!   with RFC 7643 defaults in [`DefaultSchema`].
//!
//! ```
//! use gatehouse_scim::{PatchRequest, apply_patch, parse_filter};
//! use serde_json::json;
//!
//! let mut group = json!({
//!     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
//!     "displayName": "Tour Guides",
//!     "members": [{"value": "2819c223"}, {"value": "902c246b"}]
//! });
//! let body = br#"{
//!     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
//!     "Operations": [{"op": "Remove", "path": "members[value eq \"2819c223\"]"}]
//! }"#;
//! let request = PatchRequest::from_slice(body)?;
//! let outcome = apply_patch(&mut group, &request.operations)?;
//! assert!(outcome.changed);
//! assert!(!parse_filter(r#"members[value eq "2819c223"]"#)?.matches(&group));
//! assert!(parse_filter(r#"members.value eq "902c246b""#)?.matches(&group));
//! # Ok::<(), gatehouse_scim::ScimError>(())
//! ```
//!
//! Untrusted input is bounded: filters and paths longer than
//! [`MAX_FILTER_LEN`] bytes or nested deeper than [`MAX_FILTER_DEPTH`] levels
//! are refused with `invalidFilter`/`invalidPath` before they can cost much
//! time or stack, and parsing never panics.
//!
//! Fuzzing: the property tests in `tests/proptest_filter.rs` are the fuzzer
//! (no `cargo fuzz` target: that needs a nightly toolchain). They feed the
//! parsers arbitrary strings and strings assembled from the grammar's tokens
//! (every outcome must be a tree or an `invalidFilter`, never a panic), and
//! check that generated trees survive `Display` and parsing unchanged.

mod datetime;
pub mod error;
pub mod eval;
pub mod filter;
mod grammar;
pub mod patch;
pub mod path;
pub mod schema;

pub use error::{ERROR_SCHEMA, ScimError, scim_type};
pub use filter::{
    AttrPath, CompValue, CompareOp, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN, parse_attr_path,
    parse_filter,
};
pub use patch::{
    PATCH_OP_SCHEMA, PatchOp, PatchOpKind, PatchOutcome, PatchRequest, apply_patch,
    apply_patch_with,
};
pub use path::{PatchPath, parse_patch_path};
pub use schema::{DefaultSchema, Schema};
