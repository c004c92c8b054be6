//! A scripted upstream OpenID provider for the federation tests and benchmark: a
//! plain HTTP server serving discovery, its key set and a token endpoint. The
//! caller says, per authorization code, which PKCE challenge the exchange must
//! answer and what ID token comes back — claims the provider signs with its
//! current key at exchange time, or a token the caller forged. Answers come from
//! a thread per connection, so many sign-ins can be in flight.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One P-256 key with its kid.
pub struct Key {
    pub kid: String,
    der: Vec<u8>,
    pub jwk: Value,
}

impl Key {
    pub fn new(kid: &str) -> Key {
        let signing = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let point = signing.verifying_key().to_encoded_point(false);
        Key {
            kid: kid.to_owned(),
            der: signing.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &EncodingKey::from_ec_der(&self.der)).unwrap()
    }
}

/// What the token endpoint answers an authorization code with.
pub enum IdToken {
    /// Claims the provider signs with its current key.
    Signed(Value),
    /// A token as given (a forgery).
    Raw(String),
}

struct Expected {
    code_challenge: String,
    id_token: IdToken,
}

/// What the provider says of itself and holds.
pub struct Script {
    /// The `issuer` its discovery document names.
    pub issuer: String,
    pub key: Key,
    /// The key set it publishes (its key's by default).
    pub jwks: Value,
    pub token_requests: usize,
    expected: HashMap<String, Expected>,
}

pub struct ScriptedOp {
    pub base: String,
    pub script: Arc<Mutex<Script>>,
}

impl ScriptedOp {
    pub fn start() -> ScriptedOp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let key = Key::new("k1");
        let script = Arc::new(Mutex::new(Script {
            issuer: base.clone(),
            jwks: json!({"keys": [key.jwk]}),
            key,
            token_requests: 0,
            expected: HashMap::new(),
        }));
        let shared = Arc::clone(&script);
        let origin = base.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (shared, origin) = (Arc::clone(&shared), origin.clone());
                std::thread::spawn(move || serve(stream, &origin, &shared));
            }
        });
        ScriptedOp { base, script }
    }

    pub fn set(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.script.lock().unwrap());
    }

    /// The exchange of `code` must answer `code_challenge`; it gets `id_token`.
    pub fn expect(&self, code: &str, code_challenge: &str, id_token: IdToken) {
        self.script.lock().unwrap().expected.insert(
            code.to_owned(),
            Expected {
                code_challenge: code_challenge.to_owned(),
                id_token,
            },
        );
    }

    pub fn token_requests(&self) -> usize {
        self.script.lock().unwrap().token_requests
    }
}

fn serve(mut stream: std::net::TcpStream, base: &str, script: &Mutex<Script>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // Keep-alive: one request after another on the connection.
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let answer = answer(path, &body, base, script);
        let text = answer.to_string();
        let status = if answer.get("error").is_some() {
            "400 Bad Request"
        } else {
            "200 OK"
        };
        // One write for the whole answer: pieces written apart would meet Nagle's
        // algorithm and the client's delayed ACK (a 40 ms stall each time).
        let whole = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(whole.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(path: &str, body: &[u8], base: &str, script: &Mutex<Script>) -> Value {
    let mut script = script.lock().unwrap();
    if path.ends_with("/.well-known/openid-configuration") {
        return json!({
            "issuer": script.issuer,
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        });
    }
    if path == "/jwks" {
        return script.jwks.clone();
    }
    if path != "/token" {
        return json!({"error": "not_found"});
    }
    script.token_requests += 1;
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(expected) = script.expected.remove(&code) else {
        return json!({"error": "invalid_grant", "error_description": "unknown code"});
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != expected.code_challenge {
        return json!({"error": "invalid_grant", "error_description": "PKCE verifier mismatch"});
    }
    let id_token = match expected.id_token {
        IdToken::Signed(claims) => script.key.sign(&claims),
        IdToken::Raw(token) => token,
    };
    json!({
        "access_token": "scripted-access-token",
        "token_type": "Bearer",
        "expires_in": 60,
        "id_token": id_token,
    })
}

/// The URL the start page sends the browser to (the link its script follows).
pub fn upstream_url(body: &str) -> openidconnect::url::Url {
    let marker = "id=\"continue-upstream\" class=\"gh-button gh-button--primary\" href=\"";
    let start = body
        .find(marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no way upstream: {body}"));
    let href = body[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    openidconnect::url::Url::parse(&href).unwrap()
}
