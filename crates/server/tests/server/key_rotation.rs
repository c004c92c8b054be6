//! Scheduled signing-key rotation: a key is published before it signs, the retired
//! key stays published for the configured time, nodes that run the schedule at the
//! same moment rotate once, and every node's JWKS follows through the event bus.

use std::time::{Duration, Instant};

use gatehouse_core::Clock;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::signing_keys::{self, KeyAlgorithm, KeyState};
use gatehouse_server::key_schedule;
use serde_json::Value;

use crate::web_kit::WebApp;

fn published_kids(app: &WebApp) -> Vec<String> {
    let jwks: Value = app.get_json("/jwks");
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The JWKS reflects `expected` kids within a second (the event, not a cache TTL).
fn wait_for_jwks(app: &WebApp, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let kids = published_kids(app);
        if kids.len() == expected || Instant::now() > deadline {
            return kids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kid_in(app: &WebApp, state: KeyState) -> Option<String> {
    signing_keys::find(
        &mut app.db.conn(),
        app.default_tenant(),
        KeyAlgorithm::Es256,
        state,
    )
    .unwrap()
    .map(|k| k.kid)
}

fn run_passes_concurrently(app: &WebApp, passes: usize) -> usize {
    let handles: Vec<_> = (0..passes)
        .map(|_| {
            let state = app.state.clone();
            std::thread::spawn(move || key_schedule::run_once(&state).unwrap())
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn scheduled_rotation(backend: Backend) {
    let app = WebApp::start(backend);
    let first = published_kids(&app);
    assert_eq!(first.len(), 1, "{first:?}");

    // First pass: a `next` key is published; the first key keeps signing.
    assert_eq!(key_schedule::run_once(&app.state).unwrap(), 1);
    let kids = wait_for_jwks(&app, 2);
    assert_eq!(
        kids.len(),
        2,
        "the next key was not published at once: {kids:?}"
    );
    let next = kid_in(&app, KeyState::Next).unwrap();
    assert_eq!(
        kid_in(&app, KeyState::Active).as_deref(),
        Some(first[0].as_str())
    );
    assert_eq!(
        key_schedule::run_once(&app.state).unwrap(),
        0,
        "rotated again without being due"
    );

    // After the interval, passes on several nodes at once rotate exactly once.
    app.advance(chrono::Duration::days(91));
    assert_eq!(run_passes_concurrently(&app, 3), 1);
    assert_eq!(
        kid_in(&app, KeyState::Active).as_deref(),
        Some(next.as_str())
    );
    let kids = wait_for_jwks(&app, 3);
    assert!(
        kids.contains(&first[0]),
        "the retired key left the JWKS too early: {kids:?}"
    );
    assert_eq!(kids.len(), 3, "{kids:?}");

    // Once its publication ends, the retired key goes.
    app.advance(chrono::Duration::hours(25));
    assert_eq!(key_schedule::run_once(&app.state).unwrap(), 1);
    let kids = wait_for_jwks(&app, 2);
    assert!(!kids.contains(&first[0]), "{kids:?}");
    assert!(app.clock.now() > chrono::Utc::now());
}

gatehouse_identity_store::on_both_backends!(scheduled_rotation);
