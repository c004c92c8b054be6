//! An in-process Gatehouse on a free port, with time under the test's control, a
//! real SMTP catcher for its mail and a tiny browser (cookie jar, form posts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_authn::testing::{CaughtMail, SmtpCatcher};
use gatehouse_core::config::{Config, MailTls};
use gatehouse_core::{ManualClock, SharedClock};
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::testing::TestDb;
use gatehouse_server::state::AppState;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, SET_COOKIE};

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
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.database.url = Some(db.url.clone());
        config.database.pool_size = 4;
        config.server.public_url = Some(format!("http://127.0.0.1:{port}"));
        config.server.workers = 2;
        config.mail.smtp_host = Some("127.0.0.1".into());
        config.mail.smtp_port = smtp.port();
        config.mail.tls = MailTls::None;
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

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
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
