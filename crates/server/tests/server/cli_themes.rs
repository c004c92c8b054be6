//! `gatehouse themes validate|apply` with the real binary: a theme file is checked
//! as the admin API checks one, and applying it changes what the pages serve.

use gatehouse_identity_store::tenants;

use crate::support::{gatehouse, run, sqlite_store, started_once, stderr, succeeded};

#[test]
fn a_theme_file_is_checked_then_applied_and_audited() {
    let dir = started_once();
    let file = dir.path().join("theme.json");
    let themes = |args: &[&str]| run(&mut gatehouse(dir.path(), args));

    std::fs::write(&file, r##"{"primary_colour": "#0a7a55"}"##).unwrap();
    let refused = themes(&["themes", "validate", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("primary_colour"),
        "{}",
        stderr(&refused)
    );

    let overrides = dir.path().join("overrides");
    std::fs::create_dir(&overrides).unwrap();
    std::fs::write(overrides.join("sign_in.html"), "{% if %}").unwrap();
    let theme = serde_json::json!({"primary_color": "#0a7a55", "template_dir": overrides});
    std::fs::write(&file, theme.to_string()).unwrap();
    let refused = themes(&[
        "themes",
        "apply",
        file.to_str().unwrap(),
        "--operator",
        "grace",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("sign_in.html"),
        "{}",
        stderr(&refused)
    );

    std::fs::write(
        overrides.join("sign_in.html"),
        "{% extends \"base.html\" %}",
    )
    .unwrap();
    succeeded(&themes(&["themes", "validate", file.to_str().unwrap()]));
    succeeded(&themes(&[
        "themes",
        "apply",
        file.to_str().unwrap(),
        "--operator",
        "grace",
    ]));

    let store = sqlite_store(dir.path());
    let mut conn = store.get().unwrap();
    let tenant = tenants::find_by_slug(&mut conn, "default")
        .unwrap()
        .unwrap();
    assert_eq!(tenant.settings["theme"]["primary_color"], "#0a7a55");
    let events = gatehouse_identity_store::audit::search(
        &mut conn,
        tenant.id,
        &gatehouse_identity_store::audit::AuditFilter {
            action: Some("tenant.updated".into()),
            ..Default::default()
        },
        &gatehouse_identity_store::PageRequest::first(10),
    )
    .unwrap();
    assert_eq!(events.items.len(), 1, "only the applied theme was written");
    assert_eq!(events.items[0].actor, "operator:grace");
}
