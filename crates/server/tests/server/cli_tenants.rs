//! `gatehouse tenants disable|enable|delete` with the real binary: the switch is
//! stored and audited with the reason; the platform's own tenant is never disabled;
//! only a disabled tenant is deleted.

use gatehouse_identity_store::tenants;

use crate::support::{gatehouse, run, sqlite_store, started_once, stderr, succeeded};

#[test]
fn a_tenant_is_disabled_and_enabled_with_a_reason() {
    let dir = started_once();
    let cli = |args: &[&str]| run(&mut gatehouse(dir.path(), args));
    succeeded(&cli(&[
        "tenants", "create", "--slug", "acme", "--name", "Acme",
    ]));

    let refused = cli(&[
        "tenants", "disable", "--tenant", "default", "--reason", "test",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("never disabled"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !cli(&["tenants", "disable", "--tenant", "acme", "--reason", " "])
            .status
            .success()
    );

    let said = succeeded(&cli(&[
        "tenants",
        "disable",
        "--tenant",
        "acme",
        "--reason",
        "contract ended",
        "--operator",
        "grace",
    ]));
    assert!(said.contains("disabled"), "{said}");
    let again = succeeded(&cli(&[
        "tenants", "disable", "--tenant", "acme", "--reason", "again",
    ]));
    assert!(again.contains("already disabled"), "{again}");
    let store = sqlite_store(dir.path());
    let acme = tenants::find_by_slug(&mut store.get().unwrap(), "acme")
        .unwrap()
        .unwrap();
    assert!(acme.disabled_at.is_some());

    succeeded(&cli(&[
        "tenants", "enable", "--tenant", "acme", "--reason", "renewed",
    ]));
    let acme = tenants::find_by_slug(&mut store.get().unwrap(), "acme")
        .unwrap()
        .unwrap();
    assert!(acme.disabled_at.is_none());
    let events = succeeded(&cli(&["audit", "list", "--tenant", "acme"]));
    assert!(
        events.contains("tenant.disabled") && events.contains("contract ended"),
        "{events}"
    );
    assert!(events.contains("tenant.enabled"), "{events}");
}

#[test]
fn a_disabled_tenant_is_deleted_from_the_command_line() {
    let dir = started_once();
    let cli = |args: &[&str]| run(&mut gatehouse(dir.path(), args));
    succeeded(&cli(&[
        "tenants", "create", "--slug", "gone", "--name", "Gone",
    ]));
    let served = cli(&[
        "tenants", "delete", "--tenant", "gone", "--reason", "closing",
    ]);
    assert!(!served.status.success());
    assert!(
        stderr(&served).contains("disable it first"),
        "{}",
        stderr(&served)
    );
    succeeded(&cli(&[
        "tenants", "disable", "--tenant", "gone", "--reason", "closing",
    ]));
    let said = succeeded(&cli(&[
        "tenants",
        "delete",
        "--tenant",
        "gone",
        "--reason",
        "closing",
        "--operator",
        "grace",
    ]));
    assert!(said.contains("deleted tenant gone"), "{said}");
    let store = sqlite_store(dir.path());
    assert!(
        tenants::find_by_slug(&mut store.get().unwrap(), "gone")
            .unwrap()
            .is_none()
    );
    let events = succeeded(&cli(&["audit", "list", "--action", "tenant.deleted"]));
    assert!(
        events.contains("\"operator:grace\"") && events.contains("closing"),
        "{events}"
    );
    let verified = succeeded(&cli(&["audit", "verify"]));
    assert!(verified.contains("audit log intact"), "{verified}");
}
