//! A throw-away issuer for the tests: signing keys made with *ring*, token minting,
//! and an HTTP server on 127.0.0.1 serving discovery and a JWK Set that a test can
//! change (rotation), break (outage) or make lie (another issuer).

use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_resource_server::Clock;
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(now: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(now)))
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

enum Pair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A signing key and its public JWK.
pub struct Key {
    pub kid: String,
    pair: Pair,
}

/// A 2048-bit RSA key in PKCS#8 DER, base64, for the tests only (`openssl genpkey
/// -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl pkcs8 -topk8 -nocrypt
/// -outform DER`): ring cannot generate
/// RSA keys, and generating one in a debug build takes seconds.
const TEST_RSA_PKCS8: &str = "
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCibBaY/CUN7ySaoAuUyS25Lrsu
kqFXpXEIdMXJooic1FqxzcgOEdu2XmwUeFvMEb4Z7OWSNpgpiW390OK+655zHKVZQCsd3Bhxo32n
CC0w2SpOu+wW9qe5rY7iXk82gkxIaLEe4TTQGydIYHNGq/gPMJWlrCh2EFbt6CacAC5F83oXdFvb
+oU9hOU7UmRT2zKZ5lYiPLGF7jW6DxASyxbnUEShgTnxNIrhMZCU+hl+XMkndtxTPOAHNrhuzeQ4
8NZz0n4pI/G6ZOTMHFxrPxgbiKeKzDEquPOC7ipA5vApmH2sjbU/mwTRfLef/rOpeHhPgYHYJV2g
VCEDtXguz3UTAgMBAAECggEARlqCaU7isAfzt4R2r8J6qzl6O+CowWG4tdx65e2gtinnhRfpPWrv
3C1HLJC71oei6/Doue4q9+b+/U/TP7aowhzY5HF+m6b/8Y1LOqQ4iu2uPT96MrIxkaSDfTsznZ1P
9JdgjUsoiLISUG/yztxjjRTS5VnOhuFp/hAuVSlg4cw1xdQ0O71ZETkyCnnobiFdoZk+jUhYVv9n
tnQma1sPksIhQzfA2ii9ClZMzh7E8vOJp3TYGthywCvWfj/B2c+NnxUwFo7oQTfNj0m78/XQLFNn
c5j5CBSLMa6Ax+YGmuYnjeAWJBUqGv+LnnazQToE+xUJlamwb94Sy+m8tgf7SQKBgQDTNoNN6I64
wSb5Exh7am6WCZR5T7ks4NE2hu3Pg5ekUqGm1tunihf0DYueLFvwNl7la5wxeVIsplOIY2A7iNfa
ZsHKXYPnhF3DsilZlVo2XCyI9lW5bx1MKk/s1WdERRQcERsWTP53ouShkr1cR1B+TrBUvAvGDb54
yriQknsaGQKBgQDE3QTbilsDbqJwdHcdvmV+dRF+r+dEBwwQRtTA0Gf7nupu1Nm9njqtFSb9TZ35
y288jqM966MFE5IDwr2W7RwvxLJz/rZkj9HxXQzJeXTk+YaNKMdj2iECnIEW4vwzpF+1tG5VKRPr
+UvIiFJdjpOdO8pdtxvb9eMFgo6QLsbGCwKBgAx1mMVNxK2NZ1kmETmmi6N6KTIGy+ujz3Oh/gFR
x+4/mZ2X6xk1Aji5W9UW1M2Ux4BNGseoWnqbzS2sfw7EAce2bBQd9BwCKO3UYrAQKWQvh8kEjwYD
Uf0eOdzEsfTLBmapc6mbHR+9kjMdzuHUqyDoT2qQNTmXsfa6Lq0Ilw5xAoGAb+DfytjFQp0Uae52
Z4v16Dkl2Sakus96dqGadX27Ko+00YnbuNx8ojLcNqZuujB4JiU19pG80ry9ha+dyXE1TJxvgmZm
R55IhPAJvVJuMVbxtbVQI5oqmm5RGq2jAMJQtlY1QeaXcMr725pFnO/TSk9ZgYr3pTkHbPE2jhBX
XOMCgYEAzzY96edm5zIYTC4lRgcNRddiFxJDjEST+XSmlgHeaI+sJQKrzIrlwDJMYTR/aKGVDkRP
koiSP1BtxbwVquC8FkXXgxdgkc7GARmp79XEqJEcF1pA8JGjEywOe23rXA2/Zgv48N9yYbatNFEM
GcgB1ncQWR+M0mSbAdkM+dsppes=
";

impl Key {
    pub fn es256(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Key {
            kid: kid.to_owned(),
            pair: Pair::Es256(pair),
        }
    }

    pub fn rs256(kid: &str) -> Key {
        let der: String = TEST_RSA_PKCS8.split_whitespace().collect();
        let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(der).unwrap()).unwrap();
        Key {
            kid: kid.to_owned(),
            pair: Pair::Rs256(pair),
        }
    }

    pub fn eddsa(kid: &str) -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Key {
            kid: kid.to_owned(),
            pair: Pair::EdDsa(pair),
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::Rs256(_) => "RS256",
            Pair::EdDsa(_) => "EdDSA",
        }
    }

    /// The public JWK, as Gatehouse publishes it (`kid`, `alg`, `use`).
    pub fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.pair {
            Pair::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Pair::Rs256(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)})
            }
            Pair::EdDsa(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg());
        jwk["use"] = json!("sig");
        jwk
    }

    /// The raw public key bytes (what an alg-confusion attacker would use as an
    /// HMAC secret).
    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Es256(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Rs256(pair) => pair.public_key().as_ref().to_vec(),
            Pair::EdDsa(pair) => pair.public_key().as_ref().to_vec(),
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Es256(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .unwrap();
                signature
            }
            Pair::EdDsa(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// An access token with this key's standard header.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(
            &json!({"alg": self.alg(), "typ": "at+jwt", "kid": self.kid}),
            claims,
        )
    }

    /// A token with any header, signed by this key.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// What the issuer serves and has been asked, shared with its handlers.
#[derive(Default)]
pub struct State {
    pub url: String,
    pub keys: Vec<Value>,
    /// Discovery names this issuer instead of the real one.
    pub claimed_issuer: Option<String>,
    /// Discovery and JWKS answer 500.
    pub failing: bool,
    pub discovery_fetches: usize,
    pub jwks_fetches: usize,
}

pub struct TestIssuer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

async fn discovery(state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap();
    state.discovery_fetches += 1;
    if state.failing {
        return HttpResponse::InternalServerError().finish();
    }
    let issuer = state.claimed_issuer.clone().unwrap_or(state.url.clone());
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", state.url),
        "token_endpoint": format!("{}/oauth2/token", state.url),
    }))
}

async fn jwks(state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap();
    state.jwks_fetches += 1;
    if state.failing {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok().json(json!({ "keys": state.keys }))
}

impl TestIssuer {
    /// Starts serving on a free port; call inside an actix system (`#[actix_web::test]`).
    pub fn start(keys: &[&Key]) -> TestIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            url: url.clone(),
            keys: keys.iter().map(|k| k.jwk()).collect(),
            ..State::default()
        }));
        let data = web::Data::new(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/jwks", web::get().to(jwks))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        TestIssuer { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn publish(&self, key: &Key) {
        self.state().keys.push(key.jwk());
    }

    pub fn withdraw(&self, kid: &str) {
        self.state().keys.retain(|jwk| jwk["kid"] != kid);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state().jwks_fetches
    }
}
