//! Three nodes on one PostgreSQL database under a bounded load of sign-ins and
//! token requests: what an operator changes on one node is in force on the others
//! within a second, and the load never sees an error meanwhile.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gatehouse_consent::Channel;
use gatehouse_identity_store::Backend;
use serde_json::{Value, json};

use crate::admin_api::token_for;
use crate::code_flow::{PASSWORD, SECRET, introspect_active, refresh, signed_in_with_tokens};
use crate::consent::{consented, tenant_and_user};
use crate::web_kit::{WebApp, basic};

/// Polls `in_force` on the deployment's other nodes until it holds, failing when it
/// still does not a second after the change.
#[track_caller]
fn within_a_second(what: &str, changed: Instant, mut in_force: impl FnMut() -> bool) {
    while !in_force() {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "{what}: not in force on every node a second after the change"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn client_token(node: &WebApp, secret: &str) -> (u16, Value) {
    let answer = node.post_urlencoded(
        "/oauth2/token",
        Some(&basic("ops", secret)),
        "grant_type=client_credentials",
    );
    (answer.status, answer.json)
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[test]
fn three_nodes_see_each_others_changes_within_a_second_under_load() {
    let first = WebApp::start(Backend::Postgres);
    let audience = format!("{}/admin/v1", first.base);
    let admin = token_for(&first, "default", "ops", "admin", &audience);
    let (_browser, tokens) = signed_in_with_tokens(&first, false);
    consented(&first, "newsletter", "email");
    let others = [first.start_node(), first.start_node()];
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    for node in &others {
        assert!(introspect_active(node, &access));
    }

    // The load: sign-ins and token requests on the other nodes, all the time.
    let stop = AtomicBool::new(false);
    let secret_rotating = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let unexpected = Mutex::new(Vec::<String>::new());
    let http = reqwest::blocking::Client::new();
    std::thread::scope(|scope| {
        // However the checks end (a failed assertion included), the load stops, or
        // the scope would wait for it forever.
        let _stop_load = StopOnDrop(&stop);
        for (n, node) in others.iter().enumerate() {
            let (stop, answered, unexpected, secret_rotating) =
                (&stop, &answered, &unexpected, &secret_rotating);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let page = node.browser().sign_in("uma@example.com", PASSWORD);
                    if page.status != 303 {
                        unexpected.lock().unwrap().push(format!(
                            "node {}: sign-in {}",
                            n + 2,
                            page.status
                        ));
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // The secret changes at the end of the test: a 401 from then
                    // on is what the test asks for; before, nothing but 200.
                    let rotating = secret_rotating.load(Ordering::SeqCst);
                    let (status, _) = client_token(node, SECRET);
                    if status != 200 && !(rotating && status == 401) {
                        unexpected
                            .lock()
                            .unwrap()
                            .push(format!("node {}: token {status}", n + 2));
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }

        // 1. A consent withdrawal.
        let (tenant, user) = tenant_and_user(&first);
        first
            .state
            .consents
            .withdraw(tenant, user, "webapp", "newsletter", Channel::AccountPage)
            .unwrap();
        let changed = Instant::now();
        for node in &others {
            within_a_second("consent withdrawal", changed, || {
                !introspect_active(node, &access)
            });
        }
        for node in &others {
            assert_eq!(
                refresh(node, tokens["refresh_token"].as_str().unwrap()).0,
                400
            );
        }

        // 2. A token revocation.
        let (status, issued) = client_token(&first, SECRET);
        assert_eq!(status, 200, "{issued}");
        let revocable = issued["access_token"].as_str().unwrap().to_owned();
        let active_on = |node: &WebApp| {
            node.post_urlencoded(
                "/oauth2/introspect",
                Some(&basic("ops", SECRET)),
                &format!("token={revocable}"),
            )
            .json["active"]
                == true
        };
        assert!(others.iter().all(active_on));
        let revoked = first.post_urlencoded(
            "/oauth2/revoke",
            Some(&basic("ops", SECRET)),
            &format!("token={revocable}"),
        );
        assert_eq!(revoked.status, 200);
        let changed = Instant::now();
        for node in &others {
            within_a_second("token revocation", changed, || !active_on(node));
        }

        // 3. Key rotations: the new key is published everywhere, and once promoted
        // it signs everywhere.
        let rotate = || {
            let answer = http
                .post(format!("{}/admin/v1/keys/rotate", first.base))
                .bearer_auth(&admin)
                .json(&json!({"alg": "ES256"}))
                .send()
                .unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().unwrap()
        };
        let published = |node: &WebApp, kid: &str| {
            node.get_json::<Value>("/jwks")["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|key| key["kid"] == kid)
        };
        let mut rotation = rotate();
        let changed = Instant::now();
        let made = rotation["kid"].as_str().unwrap().to_owned();
        for node in &others {
            within_a_second("key publication", changed, || published(node, &made));
        }
        if rotation["activated"].is_null() {
            // The tenant had no key waiting: this one is next; the second promotes it.
            rotation = rotate();
        }
        let changed = Instant::now();
        let signing_now = rotation["activated"].as_str().unwrap().to_owned();
        assert_eq!(signing_now, made);
        for node in &others {
            within_a_second("key rotation", changed, || {
                let (_, issued) = client_token(node, SECRET);
                kid_of(issued["access_token"].as_str().unwrap()) == signing_now
            });
        }

        // 4. A theme change.
        let themed = http
            .put(format!("{}/admin/v1/theme", first.base))
            .bearer_auth(&admin)
            .json(&json!({"primary_color": "#0A7A55", "display_name": "Acme"}))
            .send()
            .unwrap();
        assert_eq!(themed.status(), 200, "{}", themed.text().unwrap());
        let changed = Instant::now();
        for node in &others {
            within_a_second("theme change", changed, || {
                let css = http
                    .get(format!("{}/theme.css", node.base))
                    .send()
                    .unwrap()
                    .text()
                    .unwrap();
                css.to_lowercase().contains("#0a7a55")
            });
        }

        // 5. A client change: the secret rotated, the old one refused.
        secret_rotating.store(true, Ordering::SeqCst);
        let rotated = http
            .post(format!("{}/admin/v1/clients/ops/secret", first.base))
            .bearer_auth(&admin)
            .send()
            .unwrap();
        assert_eq!(rotated.status(), 200, "{}", rotated.text().unwrap());
        let changed = Instant::now();
        for node in &others {
            within_a_second("client secret rotation", changed, || {
                client_token(node, SECRET).0 == 401
            });
        }
    });
    let unexpected = unexpected.into_inner().unwrap();
    assert!(unexpected.is_empty(), "the load saw: {unexpected:?}");
    assert!(answered.load(Ordering::Relaxed) > 10);
}
