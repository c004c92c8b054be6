//! An in-process Gatehouse on a free port, with time under the test's control, a
//! real SMTP catcher for its mail and a tiny browser (cookie jar, form posts);
//! the store look-ups and API calls the tests share, and a relying party's
//! back-channel logout endpoint.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_authn::testing::{CaughtMail, SmtpCatcher};
use gatehouse_core::config::Config;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::{Clock, ManualClock, SharedClock};
use gatehouse_identity_store::clients::{self, ClientData};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::{Backend, PageRequest, audit, tenants, users};
use gatehouse_server::state::AppState;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::local_config::local_config;

pub struct WebApp {
    pub base: String,
    pub clock: ManualClock,
    pub smtp: SmtpCatcher,
    pub state: AppState,
    pub db: TestDb,
    /// The one-time setup secret bootstrap printed for the first administrator.
    pub setup_secret: String,
    _dir: tempfile::TempDir,
}

impl WebApp {
    pub fn start(backend: Backend) -> WebApp {
        Self::start_with(backend, |_| {})
    }

    pub fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> WebApp {
        Self::start_on(TestDb::new(backend), adjust)
    }

    /// A second node of the same deployment: the same database, data directory (so
    /// the same development master key) and issuer URL, its own listener, clock and
    /// event bus. On PostgreSQL the nodes hear each other's events.
    pub fn start_node(&self) -> WebApp {
        let data_dir = self.state.config.data_dir.clone();
        let issuer = self.base.clone();
        Self::start_on(TestDb::attach(&self.db), move |config| {
            config.data_dir = data_dir;
            config.server.public_url = Some(issuer);
        })
    }

    /// A server on `db` that connects through `url` instead (a fault proxy in front
    /// of it); `db` still owns and drops the database.
    pub fn start_with_url(db: &TestDb, url: String, adjust: impl FnOnce(&mut Config)) -> WebApp {
        Self::start_on(TestDb::attach(db), move |config| {
            config.database.url = Some(url);
            adjust(config);
        })
    }

    fn start_on(db: TestDb, adjust: impl FnOnce(&mut Config)) -> WebApp {
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpCatcher::start();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = local_config(dir.path(), &db.url, port, smtp.port());
        config.database.pool_size = 4;
        // Cheap Argon2 keeps the suite fast; the benchmark measures the real parameters.
        config.passwords.memory_kib = 1024;
        config.passwords.iterations = 1;
        // Relying parties in the tests listen on 127.0.0.1.
        config.outbound.allow_private_networks = true;
        adjust(&mut config);
        let clock = ManualClock::new(chrono::Utc::now());
        let shared: SharedClock = Arc::new(clock.clone());
        let (state, bootstrapped) = AppState::open_with_clock(config, shared).unwrap();
        let setup_secret = bootstrapped
            .first_admin
            .map(|a| a.setup_secret.to_string())
            .unwrap_or_default();
        let serving = state.clone();
        std::thread::spawn(move || {
            let _ = actix_web::rt::System::new()
                .block_on(gatehouse_server::http::serve_on(serving, listener));
        });
        let app = WebApp {
            base: format!("http://127.0.0.1:{port}"),
            clock,
            smtp,
            state,
            db,
            setup_secret,
            _dir: dir,
        };
        app.wait_ready();
        app
    }

    fn wait_ready(&self) {
        let client = Client::new();
        for _ in 0..200 {
            if client.get(format!("{}/healthz", self.base)).send().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("in-process server did not start");
    }

    pub fn browser(&self) -> Browser {
        Browser {
            base: self.base.clone(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    pub fn mails(&self, count: usize) -> Vec<CaughtMail> {
        self.smtp.wait_for(count, Duration::from_secs(10))
    }

    /// The password-reset or invitation link in `mail`: its path on this server
    /// and its token.
    pub fn recovery_link(&self, mail: &CaughtMail) -> (String, String) {
        let link = mail
            .find_link(&format!("{}/recover?token=", self.base))
            .expect("a recovery link");
        let path = link.strip_prefix(&self.base).unwrap().to_owned();
        let token = path.split("token=").nth(1).unwrap().to_owned();
        (path, token)
    }

    /// Waits until the work that leaves the request path (mail, the account-dependent
    /// half of resend and sign-up) has finished: what a test asserts after it is
    /// final, with no sleep.
    pub fn settle(&self) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.state.authn.background().idle());
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// The id of the tenant `slug`, read from the store.
    pub fn tenant_id(&self, slug: &str) -> TenantId {
        tenants::find_by_slug(&mut self.db.conn(), slug)
            .unwrap()
            .unwrap_or_else(|| panic!("no tenant `{slug}`"))
            .id
    }

    /// The id of the tenant that the first start creates.
    pub fn default_tenant(&self) -> TenantId {
        self.tenant_id("default")
    }

    /// The id of the default tenant's user whose primary address is `email`.
    pub fn user_id(&self, email: &str) -> UserId {
        let tenant = self.default_tenant();
        users::find_by_primary_email(&mut self.db.conn(), tenant, email)
            .unwrap()
            .unwrap_or_else(|| panic!("no user {email}"))
            .id
    }

    /// Creates the tenant `slug` with `settings` (a JSON object) straight in the
    /// store. Created behind the server's back, so its tenant directory is told to
    /// forget what it cached (the TenantChanged event does this, a moment later,
    /// when the admin layer creates tenants).
    pub fn create_tenant(&self, slug: &str, display_name: &str, settings: serde_json::Value) {
        let serde_json::Value::Object(settings) = settings else {
            panic!("tenant settings are a JSON object: {settings}")
        };
        tenants::create(
            &mut self.db.conn(),
            self.clock.now(),
            tenants::TenantData {
                slug: slug.into(),
                display_name: display_name.into(),
                settings,
            },
        )
        .unwrap();
        self.state.tenants.invalidate();
    }

    /// Registers `data` as a client of the tenant `tenant_slug`, straight in the store.
    pub fn create_client(&self, tenant_slug: &str, data: ClientData) {
        let tenant = self.tenant_id(tenant_slug);
        clients::create(&mut self.db.conn(), self.clock.now(), tenant, data).unwrap();
    }

    /// The default tenant's first `limit` audit events.
    pub fn audit_events(&self, limit: u32) -> Vec<audit::AuditEvent> {
        let tenant = self.default_tenant();
        let mut conn = self.db.conn();
        let mut events = audit::list(&mut conn, tenant, &PageRequest::first(limit))
            .unwrap()
            .items;
        audit::personal::open(&mut conn, &self.state.cipher, &mut events).unwrap();
        events
    }

    /// Whether the default tenant's decision log holds a denial that `policy`
    /// decided (among its latest 50 decisions; the log is flushed first).
    pub fn denied_by_policy(&self, policy: &str) -> bool {
        self.state.pdp.flush_log();
        gatehouse_identity_store::decision_log::recent(
            &mut self.db.conn(),
            self.default_tenant(),
            50,
        )
        .unwrap()
        .iter()
        .any(|d| !d.decision && d.policies.iter().any(|p| p == policy))
    }

    /// The actions of the default tenant's first `limit` audit events.
    pub fn audit_actions(&self, limit: u32) -> Vec<String> {
        self.audit_events(limit)
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// A new browser signed in with the password of a user made before.
    pub fn signed_in_browser(&self, email: &str, password: &str) -> Browser {
        let mut browser = self.browser();
        let answer = browser.sign_in(email, password);
        assert_eq!(answer.status, 303, "{}", answer.body);
        browser
    }

    /// GETs `path` as an API client does and reads the answer as JSON.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        Client::new()
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// POSTs a form-encoded `body` to `path` as an OAuth client does, with the
    /// `Authorization` header when one is given.
    pub fn post_urlencoded(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> ApiAnswer {
        let mut request = Client::new()
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        ApiAnswer {
            status,
            headers,
            json,
        }
    }

    /// Marks the user's primary email verified, as following the link would.
    pub fn create_verified_user(&self, email: &str, password: &str) {
        let mut browser = self.browser();
        let before = self.smtp.messages().len();
        let page = browser.get("/signup");
        let response = browser.post_form(
            "/signup",
            &page,
            &[
                ("email", email),
                ("password", password),
                ("given_name", "Test"),
                ("family_name", "User"),
            ],
        );
        assert_eq!(response.status, 200, "{}", response.body);
        let mail = self.mails(before + 1).pop().unwrap();
        let link = mail
            .find_link(&format!("{}/verify?token=", self.base))
            .unwrap();
        let verified = browser.get_absolute(&link);
        assert_eq!(verified.status, 200, "{}", verified.body);
    }
}

/// `Authorization` for client_secret_basic. The tests' client ids and secrets
/// need no form-encoding first.
pub fn basic(client_id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")))
}

/// What an API answered: its status, headers and JSON body (`Null` when empty).
pub struct ApiAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

impl ApiAnswer {
    /// The value of header `name`, which the test expects to be there.
    #[track_caller]
    pub fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of header `name`, which the test expects to be there.
    #[track_caller]
    pub fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }

    /// Checks the page answered `status` and shows `text`; the body tells why not.
    #[track_caller]
    pub fn assert_shows(&self, status: u16, text: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.body.contains(text),
            "{text:?} not shown: {}",
            self.body
        );
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self
            .body
            .find(marker)
            .map(|i| i + marker.len())
            .expect("page has a CSRF field");
        self.body[start..].split('"').next().unwrap().to_owned()
    }

    pub fn location(&self) -> Option<String> {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

pub struct Browser {
    base: String,
    client: Client,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    /// A browser for a server this kit did not start (the real binary).
    pub fn at(base: &str) -> Browser {
        Browser {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    /// Opens the page at `page` and posts its form to `action` with `fields`, as a
    /// person filling it in would (with the page's CSRF token); the answer.
    pub fn fill_in(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let form = self.get(page);
        self.post_form(action, &form, fields)
    }

    /// Posts the sign-in form as a person would; the answer is the form's.
    pub fn sign_in(&mut self, email: &str, password: &str) -> Page {
        self.fill_in(
            "/signin",
            "/signin",
            &[("email", email), ("password", password)],
        )
    }

    /// Fills in the sign-up form at `form` (a path, perhaps with a query such as
    /// `?lang=de`) with just an address and a password; the answer to the post.
    pub fn sign_up(&mut self, form: &str, email: &str, password: &str) -> Page {
        let action = form.split('?').next().unwrap();
        self.fill_in(form, action, &[("email", email), ("password", password)])
    }

    /// Posts the first administrator's set-up form, with the CSRF token of `from`.
    pub fn post_setup(&mut self, from: &Page, secret: &str, email: &str, password: &str) -> Page {
        self.post_form(
            "/setup",
            from,
            &[
                ("setup_secret", secret),
                ("email", email),
                ("password", password),
            ],
        )
    }

    /// Posts the account page's form for a new address, as the signed-in user would.
    pub fn change_email(&mut self, new_email: &str, password: &str) -> Page {
        self.fill_in(
            "/account",
            "/account/email",
            &[("new_email", new_email), ("current_password", password)],
        )
    }

    /// Posts the account page's password form, as the signed-in user would.
    pub fn change_password(&mut self, current: &str, new: &str) -> Page {
        self.fill_in(
            "/account",
            "/account/password",
            &[("current_password", current), ("new_password", new)],
        )
    }

    /// The `Cookie` header this browser would send.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, response: Response) -> Page {
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().unwrap(),
        }
    }

    /// Approves the consent page `page` asks for the authorization `request` (its
    /// query); where the browser is sent next.
    #[track_caller]
    pub fn approve_consent(&mut self, page: &Page, request: &str) -> String {
        let approved = self.post_form(
            "/authorize/consent",
            page,
            &[("request", request), ("decision", "allow")],
        );
        assert_eq!(approved.status, 303, "{}", approved.body);
        approved.location().unwrap()
    }

    /// Checks that `page` loads the script at `path` and that it is served; the script.
    #[track_caller]
    pub fn script_of(&mut self, page: &Page, path: &str) -> Page {
        let tag = format!("src=\"{path}\"");
        assert!(page.body.contains(&tag), "no {tag} in {}", page.body);
        let script = self.get(path);
        assert_eq!(script.status, 200, "{path}");
        script
    }

    /// Checks that `page` redirects to `to`, then follows it.
    #[track_caller]
    pub fn follow_to(&mut self, page: &Page, to: &str) -> Page {
        assert_eq!(page.location().as_deref(), Some(to), "{}", page.body);
        self.get(to)
    }

    pub fn get(&mut self, path: &str) -> Page {
        let url = format!("{}{path}", self.base);
        self.get_absolute(&url)
    }

    pub fn get_absolute(&mut self, url: &str) -> Page {
        let response = self
            .client
            .get(url)
            .header("Cookie", self.cookie_header())
            .send()
            .unwrap();
        self.absorb(response)
    }

    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap();
        self.absorb(response)
    }

    /// Posts a form the way a browser would, with the CSRF token of `from`.
    pub fn post_form(&mut self, path: &str, from: &Page, fields: &[(&str, &str)]) -> Page {
        let token = from.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, &[])
    }

    pub fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .form(fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap();
        self.absorb(response)
    }

    /// Posts `body` exactly as given (any bytes, any declared type) with the
    /// browser's cookies: what a hostile client sends rather than a browser.
    pub fn post_bytes(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .unwrap();
        self.absorb(response)
    }

    /// Posts to the form at `path` the fields in `encoded`, already form-encoded and
    /// sent byte for byte (hostile escapes and all), after the CSRF token of the
    /// page there.
    pub fn post_encoded_form(&mut self, path: &str, encoded: &str) -> Page {
        let csrf = self.get(path).csrf();
        self.post_bytes(
            path,
            "application/x-www-form-urlencoded",
            format!("csrf_token={csrf}&{encoded}").into_bytes(),
        )
    }

    /// Posts JSON the way the pages' scripts do, with `csrf` in `X-CSRF-Token`.
    pub fn post_json(&mut self, path: &str, csrf: Option<&str>, body: &serde_json::Value) -> Page {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .json(body);
        if let Some(token) = csrf {
            request = request.header("X-CSRF-Token", token);
        }
        let response = request.send().unwrap();
        self.absorb(response)
    }

    pub fn session_cookie(&self) -> Option<(String, String)> {
        self.cookies
            .iter()
            .find(|(k, _)| k.contains("gatehouse-session"))
            .map(|(k, v)| (k.clone(), v.clone()))
    }
}

/// A relying party's back-channel logout endpoint on 127.0.0.1: answers 200 and
/// hands over each request it got.
pub struct BackchannelReceiver {
    pub url: String,
    requests: mpsc::Receiver<ReceivedRequest>,
}

/// One request a [`BackchannelReceiver`] got.
pub struct ReceivedRequest {
    /// Such as `POST /backchannel HTTP/1.1`.
    pub request_line: String,
    pub body: String,
}

impl ReceivedRequest {
    /// The `logout_token` field of the form the request carried.
    pub fn logout_token(&self) -> String {
        form_urlencoded::parse(self.body.as_bytes())
            .find(|(name, _)| name == "logout_token")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_else(|| panic!("no logout_token in {}", self.body))
    }
}

impl BackchannelReceiver {
    pub fn start() -> BackchannelReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
        let (sender, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut length = 0;
                let mut line = String::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let _ = sender.send(ReceivedRequest {
                    request_line: request_line.trim_end().to_owned(),
                    body: String::from_utf8(body).unwrap(),
                });
            }
        });
        BackchannelReceiver { url, requests }
    }

    /// The next request, waiting up to ten seconds for it.
    pub fn next(&self) -> Option<ReceivedRequest> {
        self.requests.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// Whether a request has come already (no waiting).
    pub fn has_received(&self) -> bool {
        self.requests.try_recv().is_ok()
    }
}
