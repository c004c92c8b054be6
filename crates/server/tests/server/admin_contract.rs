//! The admin API's contract: the OpenAPI document is served without a token for
//! each tenant's issuer, and changes only on purpose — a snapshot test fails on any
//! difference, so a change to the API is reviewed with the snapshot's diff. (The
//! document's validity and the answers' agreement with it are judged by
//! independent tools in `e2e/admin-openapi.test.js`.)

use gatehouse_identity_store::Backend;
use reqwest::blocking::Client as Http;
use serde_json::Value;

use crate::web_kit::WebApp;

/// Set to rewrite the snapshot after a reviewed change of the contract.
const UPDATE: &str = "GATEHOUSE_UPDATE_SNAPSHOTS";
const SNAPSHOT: &str = "tests/server/snapshots/admin-openapi.json";

#[test]
fn the_openapi_document_is_public_per_tenant_and_changes_only_on_purpose() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant("acme", "Acme", serde_json::json!({}));
    let get = |path: &str| {
        let answer = Http::new()
            .get(format!("{}{path}", app.base))
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        answer.json::<Value>().unwrap()
    };

    let root = get("/admin/v1/openapi.json");
    assert_eq!(root["openapi"], "3.1.0");
    assert_eq!(root["servers"][0]["url"], format!("{}/admin/v1", app.base));
    let acme = get("/t/acme/admin/v1/openapi.json");
    let acme_issuer = format!("{}/t/acme", app.base);
    assert_eq!(acme["servers"][0]["url"], format!("{acme_issuer}/admin/v1"));
    assert_eq!(
        acme["components"]["securitySchemes"]["admin_token"]["flows"]["clientCredentials"]["tokenUrl"],
        format!("{acme_issuer}/oauth2/token")
    );

    let mut sorted = root;
    sorted.sort_all_objects();
    let normalised = serde_json::to_string_pretty(&sorted)
        .unwrap()
        .replace(&app.base, "https://ISSUER");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(&path, format!("{normalised}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        normalised.trim() == expected.trim(),
        "the admin API's contract changed: review the difference, then rerun with \
         {UPDATE}=1 to update {SNAPSHOT}"
    );
}
