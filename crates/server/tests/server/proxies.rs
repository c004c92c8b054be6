//! Behind a reverse proxy: per-address limits count the client the proxy names, and
//! only when the proxy is one the configuration trusts.

use gatehouse_identity_store::Backend;
use gatehouse_identity_store::audit;

use crate::web_kit::*;

/// A failed sign-in (each with its own identifier, so only the per-address limit
/// can lock anything), with `X-Forwarded-For` as a client or proxy would send it.
fn failed_sign_in(app: &WebApp, attempt: usize, forwarded_for: &str) -> u16 {
    let mut browser = app.browser();
    let page = browser.get("/signin");
    let token = page.csrf();
    let email = format!("nobody-{attempt}@example.com");
    browser
        .post_raw(
            "/signin",
            &[
                ("csrf_token", &token),
                ("email", &email),
                ("password", "not-the-password-at-all"),
            ],
            &[("X-Forwarded-For", forwarded_for)],
        )
        .status
}

fn limited(backend: Backend, trusted: bool) -> WebApp {
    WebApp::start_with(backend, |config| {
        config.sign_in.ip_lockout_threshold = 3;
        if trusted {
            // The test's requests come from 127.0.0.1: it plays the proxy.
            config.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        }
    })
}

fn failures_count_against_the_client_a_trusted_proxy_names(backend: Backend) {
    let app = limited(backend, true);
    for attempt in 0..3 {
        assert_eq!(failed_sign_in(&app, attempt, "203.0.113.10"), 401);
    }
    assert_eq!(failed_sign_in(&app, 3, "203.0.113.10"), 429, "never locked");
    // Whatever the client puts in front, the proxy appends the address it saw.
    assert_eq!(
        failed_sign_in(&app, 4, "198.51.100.1, 203.0.113.10"),
        429,
        "a forged entry escaped the lock"
    );
    // Everyone else behind the same proxy signs in as usual.
    assert_eq!(failed_sign_in(&app, 5, "203.0.113.11"), 401);
    assert_eq!(failed_sign_in(&app, 6, "2001:db8::11"), 401);

    let tenant = app
        .state
        .tenants
        .resolve(None, "127.0.0.1")
        .unwrap()
        .unwrap()
        .tenant
        .id;
    // Read as an operator reads them: the address is sealed with the event's
    // personal data (the identifier typed).
    let mut conn = app.db.conn();
    let mut events = audit::list(
        &mut conn,
        tenant,
        &gatehouse_identity_store::PageRequest::first(50),
    )
    .unwrap()
    .items;
    audit::personal::open(&mut conn, &app.state.cipher, &mut events).unwrap();
    let failed: Vec<Option<String>> = events
        .into_iter()
        .filter(|event| event.action == "login.failed")
        .map(|event| event.ip)
        .collect();
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert!(failed.contains(&Some("203.0.113.10".into())), "{failed:?}");
    assert!(failed.contains(&Some("203.0.113.11".into())), "{failed:?}");
    assert!(failed.contains(&Some("2001:db8::11".into())), "{failed:?}");
}

fn forwarding_headers_from_an_untrusted_peer_are_ignored(backend: Backend) {
    let app = limited(backend, false);
    for attempt in 0..3 {
        let spoofed = format!("198.51.100.{attempt}");
        assert_eq!(failed_sign_in(&app, attempt, &spoofed), 401);
    }
    // A new address in the header each time changes nothing: the peer is locked.
    assert_eq!(failed_sign_in(&app, 3, "198.51.100.200"), 429);
}

gatehouse_identity_store::on_both_backends!(
    failures_count_against_the_client_a_trusted_proxy_names
);

gatehouse_identity_store::on_both_backends!(forwarding_headers_from_an_untrusted_peer_are_ignored);
