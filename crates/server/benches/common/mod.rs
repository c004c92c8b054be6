//! What the server benchmarks share: seeded users, an in-process server, and a
//! keep-alive client that posts a form the way a browser does, with its CSRF
//! cookie and token.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use gatehouse_authn::PasswordHasher;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::db;
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_server::state::AppState;
use reqwest::blocking::Client;
use reqwest::header::SET_COOKIE;

/// Serves `state` on `listener` from a thread of its own and waits (five seconds
/// at most) until `ready_path` answers with success; the server's base URL.
pub fn serve_in_background(
    state: &AppState,
    listener: std::net::TcpListener,
    ready_path: &str,
) -> String {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = state.clone();
    std::thread::spawn(move || {
        let _ = actix_web::rt::System::new()
            .block_on(gatehouse_server::http::serve_on(serving, listener));
    });
    let probe = Client::new();
    let ready = (0..250).any(|_| {
        let up = probe
            .get(format!("{base}{ready_path}"))
            .send()
            .is_ok_and(|r| r.status().is_success());
        if !up {
            std::thread::sleep(Duration::from_millis(20));
        }
        up
    });
    assert!(ready, "in-process server did not start");
    base
}

/// The password every benchmark user has.
pub const PASSWORD: &str = "violet-harbor-quilt-97-lantern";

/// `count` active users with verified addresses `{prefix}-{i}@example.test` and
/// [`PASSWORD`], seeded through the store in one transaction. One hash serves every
/// user: verifying costs the same whatever the salt, and hashing each would take
/// longer than the benchmark. Returns their ids and the hash.
pub fn seed_users(
    state: &AppState,
    tenant: TenantId,
    prefix: &str,
    count: usize,
) -> (Vec<UserId>, String) {
    let hasher = PasswordHasher::new(&state.config.passwords).unwrap();
    let phc = hasher.hash(PASSWORD).unwrap();
    let mut conn = state.pool.get().unwrap();
    let now = Utc::now();
    let users = db::transaction(&mut conn, |conn| {
        (0..count)
            .map(|i| {
                let user = users::create(
                    conn,
                    now,
                    tenant,
                    UserData {
                        emails: vec![Email {
                            value: format!("{prefix}-{i}@example.test"),
                            kind: None,
                            primary: true,
                            verified: true,
                        }],
                        ..UserData::new(format!("{prefix}-{i}"))
                    },
                )?;
                credentials::create(
                    conn,
                    &state.cipher,
                    now,
                    tenant,
                    user.id,
                    NewCredential {
                        kind: CredentialKind::Password,
                        label: None,
                        secret: phc.as_bytes(),
                    },
                )?;
                Ok(user.id)
            })
            .collect::<Result<Vec<_>, gatehouse_identity_store::StoreError>>()
    })
    .unwrap();
    (users, phc)
}

/// A keep-alive client that fetched one form: its CSRF cookie and token.
pub struct FormClient {
    client: Client,
    url: String,
    cookie: String,
    csrf: String,
}

impl FormClient {
    pub fn new(base: &str, path: &str) -> FormClient {
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let url = format!("{base}{path}");
        let page = client.get(&url).send().unwrap();
        assert_eq!(page.status().as_u16(), 200);
        let mut cookies = HashMap::new();
        for value in page.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            cookies.insert(name.to_owned(), value.to_owned());
        }
        let body = page.text().unwrap();
        let marker = "name=\"csrf_token\" value=\"";
        let start = body.find(marker).expect("the form has a CSRF field") + marker.len();
        let csrf = body[start..].split('"').next().unwrap().to_owned();
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        FormClient {
            client,
            url,
            cookie,
            csrf,
        }
    }

    /// Posts the form; true when the answer was `expected` (and, for 303, set a
    /// session cookie).
    pub fn post(&self, email: &str, expected: u16) -> bool {
        let Ok(response) = self
            .client
            .post(&self.url)
            .header("Cookie", &self.cookie)
            .form(&[
                ("csrf_token", self.csrf.as_str()),
                ("email", email),
                ("password", PASSWORD),
            ])
            .send()
        else {
            return false;
        };
        let status = response.status().as_u16();
        let session = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("gatehouse-session")));
        let _ = response.bytes();
        status == expected && (expected != 303 || session)
    }
}

/// The benchmark knob `name` from the environment, else `default`.
#[allow(dead_code)] // not every benchmark has knobs
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0–1) of sorted `latencies`, in milliseconds.
#[allow(dead_code)] // not every benchmark reports quantiles
pub fn at(latencies: &[Duration], p: f64) -> f64 {
    let index = ((latencies.len() - 1) as f64 * p).round() as usize;
    latencies[index].as_secs_f64() * 1000.0
}
