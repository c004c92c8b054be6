//! The resource-server helper against a real (test) issuer over HTTP: discovery,
//! JWKS, rotation, every way a token can be wrong, and the exact RFC 6750 / RFC 9470
//! answers an actix API gives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod issuer;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{App, test, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_resource_server::{
    AccessToken, BearerError, Rejection, RequireToken, Requirement, Verifier, VerifyError, acr,
};
use ring::hmac;
use serde_json::{Value, json};

use issuer::{Key, ManualClock, TestIssuer, signing_input};

const NOW: i64 = 1_700_000_000;
const AUDIENCE: &str = "https://orders.example.com";

struct Fixture {
    issuer: TestIssuer,
    key: Key,
    clock: Arc<ManualClock>,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let key = Key::es256("key-1");
    let issuer = TestIssuer::start(&[&key]);
    let clock = ManualClock::at(NOW);
    let verifier = Verifier::builder(&issuer.url, AUDIENCE)
        .clock(clock.clone())
        .build()
        .unwrap();
    Fixture {
        issuer,
        key,
        clock,
        verifier,
    }
}

impl Fixture {
    /// What Gatehouse puts in a user's access token after a password sign-in a
    /// minute ago.
    fn claims(&self) -> Value {
        json!({
            "iss": self.issuer.url,
            "sub": "0193a1b2-user",
            "aud": AUDIENCE,
            "exp": NOW + 300,
            "iat": NOW,
            "jti": "0193a1b2-grant.5f2c",
            "client_id": "shop-frontend",
            "scope": "openid orders:read",
            "auth_time": NOW - 60,
            "acr": acr::AAL1,
            "amr": ["pwd"],
        })
    }

    /// [`Fixture::claims`] with `changes` applied; a `null` removes the claim.
    fn claims_with(&self, changes: Value) -> Value {
        let mut claims = self.claims();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    fn token(&self, changes: Value) -> String {
        self.key.token(&self.claims_with(changes))
    }

    async fn refused(&self, token: &str) -> Rejection {
        match self.verifier.verify(token).await {
            Err(VerifyError::Invalid(rejection)) => rejection,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_valid_token_yields_its_claims() {
    let f = fixture();
    let claims = f.verifier.verify(&f.token(json!({}))).await.unwrap();
    assert_eq!(claims.sub, "0193a1b2-user");
    assert_eq!(claims.client_id, "shop-frontend");
    assert_eq!(claims.jti, "0193a1b2-grant.5f2c");
    assert_eq!(claims.aud, [AUDIENCE]);
    assert!(claims.has_scope("orders:read"));
    assert_eq!(claims.acr.as_deref(), Some(acr::AAL1));
    assert_eq!(claims.auth_time, Some(NOW - 60));
    assert_eq!(claims.amr, Some(vec!["pwd".to_owned()]));

    // An audience list naming this API, `application/at+jwt`: both accepted.
    let listed = f.token(json!({"aud": ["https://other.example.com", AUDIENCE]}));
    f.verifier.verify(&listed).await.unwrap();
    let long_typ = f.key.token_with_header(
        &json!({"alg": "ES256", "typ": "application/at+jwt", "kid": f.key.kid}),
        &f.claims(),
    );
    f.verifier.verify(&long_typ).await.unwrap();
    assert_eq!(f.issuer.jwks_fetches(), 1, "keys are cached");
    assert_eq!(f.issuer.state().discovery_fetches, 1);
}

#[actix_web::test]
async fn rs256_and_eddsa_keys_verify_too() {
    let (rsa, ed) = (Key::rs256("rsa-1"), Key::eddsa("ed-1"));
    let issuer = TestIssuer::start(&[&rsa, &ed]);
    let verifier = Verifier::builder(&issuer.url, AUDIENCE)
        .clock(ManualClock::at(NOW))
        .build()
        .unwrap();
    let claims = json!({
        "iss": issuer.url, "sub": "svc", "aud": AUDIENCE, "exp": NOW + 60, "iat": NOW,
        "jti": "j", "client_id": "svc",
    });
    for key in [&rsa, &ed] {
        let claims = verifier.verify(&key.token(&claims)).await.unwrap();
        assert_eq!(claims.sub, "svc", "{}", key.alg());
    }
    // A key answers only to its own algorithm, even when the signature is valid.
    let mislabelled = rsa.token_with_header(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "rsa-1"}),
        &claims,
    );
    assert!(matches!(
        verifier.verify(&mislabelled).await,
        Err(VerifyError::Invalid(Rejection::AlgorithmNotAllowed))
    ));
}

#[actix_web::test]
async fn expiry_and_not_before_allow_five_seconds_of_leeway() {
    let f = fixture();
    f.verifier
        .verify(&f.token(json!({"exp": NOW - 4})))
        .await
        .unwrap();
    assert_eq!(
        f.refused(&f.token(json!({"exp": NOW - 5}))).await,
        Rejection::Expired
    );
    assert_eq!(
        f.refused(&f.token(json!({"exp": NOW - 3600}))).await,
        Rejection::Expired
    );
    f.verifier
        .verify(&f.token(json!({"nbf": NOW + 5})))
        .await
        .unwrap();
    assert_eq!(
        f.refused(&f.token(json!({"nbf": NOW + 6}))).await,
        Rejection::NotYetValid
    );
    // The verifier's clock decides: the same token expires as time passes.
    let token = f.token(json!({}));
    f.clock.advance(305);
    assert_eq!(f.refused(&token).await, Rejection::Expired);
}

#[actix_web::test]
async fn issuer_audience_and_required_claims_are_checked() {
    let f = fixture();
    let other = format!("{}/t/other", f.issuer.url);
    assert_eq!(
        f.refused(&f.token(json!({"iss": other}))).await,
        Rejection::WrongIssuer
    );
    assert_eq!(
        f.refused(&f.token(json!({"aud": "https://billing.example.com"})))
            .await,
        Rejection::WrongAudience
    );
    assert_eq!(
        f.refused(&f.token(json!({"aud": ["https://billing.example.com"]})))
            .await,
        Rejection::WrongAudience
    );
    assert_eq!(
        f.refused(&f.token(json!({"client_id": null}))).await,
        Rejection::BadClaims
    );
}

#[actix_web::test]
async fn an_id_token_or_plain_jwt_is_not_an_access_token() {
    let f = fixture();
    for typ in [json!("JWT"), json!("logout+jwt"), Value::Null] {
        let mut header = json!({"alg": "ES256", "kid": f.key.kid});
        if !typ.is_null() {
            header["typ"] = typ;
        }
        let token = f.key.token_with_header(&header, &f.claims());
        assert_eq!(f.refused(&token).await, Rejection::WrongType, "{header}");
    }
}

#[actix_web::test]
async fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let f = fixture();
    let unsigned = format!(
        "{}.",
        signing_input(
            &json!({"alg": "none", "typ": "at+jwt", "kid": f.key.kid}),
            &f.claims()
        )
    );
    assert_eq!(f.refused(&unsigned).await, Rejection::AlgorithmNotAllowed);

    // The classic confusion: HS256 keyed with the issuer's public key.
    for secret in [f.key.public_bytes(), f.key.jwk().to_string().into_bytes()] {
        let input = signing_input(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": f.key.kid}),
            &f.claims(),
        );
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(f.refused(&forged).await, Rejection::AlgorithmNotAllowed);
    }
}

#[actix_web::test]
async fn a_tampered_payload_or_a_foreign_key_fails_the_signature() {
    let f = fixture();
    let token = f.token(json!({}));
    let mut parts: Vec<&str> = token.split('.').collect();
    let elevated = URL_SAFE_NO_PAD.encode(
        f.claims_with(json!({"acr": acr::AAL3, "scope": "orders:read orders:admin"}))
            .to_string(),
    );
    parts[1] = &elevated;
    assert_eq!(f.refused(&parts.join(".")).await, Rejection::BadSignature);

    // Signed by another key that claims the issuer's kid.
    let impostor = Key::es256(&f.key.kid);
    assert_eq!(
        f.refused(&impostor.token(&f.claims())).await,
        Rejection::BadSignature
    );
    assert_eq!(f.refused("not.a.jwt").await, Rejection::Malformed);
}

#[actix_web::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_per_cooldown() {
    let f = fixture();
    f.verifier.verify(&f.token(json!({}))).await.unwrap();
    assert_eq!(f.issuer.jwks_fetches(), 1);

    // The issuer publishes a new key and signs with it at once (Gatehouse publishes
    // an hour ahead, but a resource server must cope either way).
    let next = Key::es256("key-2");
    f.issuer.publish(&next);
    let rotated = next.token(&f.claims_with(json!({"exp": NOW + 3600})));

    // Within the cool-down of the first fetch: no new fetch, the kid stays unknown.
    assert_eq!(f.refused(&rotated).await, Rejection::UnknownKey);
    assert_eq!(f.issuer.jwks_fetches(), 1);

    // After it, the unknown kid triggers one fetch, shared by concurrent requests.
    f.clock.advance(30);
    let (a, b, c) = tokio::join!(
        f.verifier.verify(&rotated),
        f.verifier.verify(&rotated),
        f.verifier.verify(&rotated)
    );
    assert_eq!(a.unwrap().sub, "0193a1b2-user");
    assert!(b.is_ok() && c.is_ok());
    assert_eq!(f.issuer.jwks_fetches(), 2);
    assert_eq!(f.issuer.state().discovery_fetches, 1, "jwks_uri is kept");

    // Forged kids right after cannot make the API hammer the issuer.
    for kid in ["x1", "x2", "x3"] {
        let forged = Key::es256(kid).token(&f.claims());
        assert_eq!(f.refused(&forged).await, Rejection::UnknownKey);
    }
    assert_eq!(f.issuer.jwks_fetches(), 2);
}

#[actix_web::test]
async fn cached_keys_expire_so_a_withdrawn_key_stops_working() {
    let f = fixture();
    let token = f.token(json!({"exp": NOW + 3600}));
    f.verifier.verify(&token).await.unwrap();
    f.issuer.withdraw(&f.key.kid);
    f.clock.advance(299);
    f.verifier.verify(&token).await.unwrap();
    assert_eq!(f.issuer.jwks_fetches(), 1);
    f.clock.advance(1);
    assert_eq!(f.refused(&token).await, Rejection::UnknownKey);
    assert_eq!(f.issuer.jwks_fetches(), 2);
}

#[actix_web::test]
async fn an_unreachable_issuer_keeps_the_cached_keys_in_use() {
    let f = fixture();
    let token = f.token(json!({"exp": NOW + 3600}));
    f.verifier.verify(&token).await.unwrap();
    f.issuer.state().failing = true;
    f.clock.advance(600);
    f.verifier.verify(&token).await.unwrap();
    // The failed fetch was attempted once and is not retried within the cool-down.
    f.verifier.verify(&token).await.unwrap();
    // One lock for both counts: the guard lives to the end of the statement.
    let state = f.issuer.state();
    assert_eq!((state.discovery_fetches, state.jwks_fetches), (1, 2));
}

#[actix_web::test]
async fn without_any_keys_the_answer_is_503_not_a_challenge() {
    let f = fixture();
    f.issuer.state().failing = true;
    let token = f.token(json!({}));
    assert!(matches!(
        f.verifier.verify(&token).await,
        Err(VerifyError::KeysUnavailable(_))
    ));
    let (status, challenge, _) = call(&f.verifier, "/orders", Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(challenge, None);
}

#[actix_web::test]
async fn discovery_naming_another_issuer_is_not_trusted() {
    let f = fixture();
    f.issuer.state().claimed_issuer = Some("https://evil.example.com".to_owned());
    match f.verifier.refresh().await {
        Err(VerifyError::KeysUnavailable(error)) => {
            assert!(error.contains("evil.example.com"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.issuer.jwks_fetches(), 0);
}

// --- The actix API, as in examples/protected_api.rs ---------------------------------

async fn orders(token: AccessToken) -> String {
    format!("orders of {}", token.claims().sub)
}

async fn export(token: AccessToken) -> Result<String, BearerError> {
    token.require(
        &Requirement::default()
            .scope("orders:read")
            .acr(acr::AAL2)
            .max_age(300),
    )?;
    Ok(format!("export for {}", token.claims().sub))
}

fn routes(cfg: &mut web::ServiceConfig) {
    let guarded = |path: &str, requirement: Requirement| {
        web::resource(path)
            .wrap(RequireToken::new(requirement))
            .route(web::get().to(orders))
    };
    cfg.route("/public", web::get().to(|| async { "public" }))
        .service(guarded(
            "/orders",
            Requirement::default().scope("orders:read"),
        ))
        .route("/orders/export", web::get().to(export))
        .service(guarded(
            "/step-up/acr",
            Requirement::default().acr(acr::AAL2),
        ))
        .service(guarded(
            "/step-up/recent",
            Requirement::default().max_age(300),
        ));
}

/// Status, `WWW-Authenticate` and body of a GET with an optional bearer token.
async fn call(
    verifier: &Verifier,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    call_with(verifier, path, token.map(|t| format!("Bearer {t}"))).await
}

async fn call_with(
    verifier: &Verifier,
    path: &str,
    authorization: Option<String>,
) -> (StatusCode, Option<String>, String) {
    let app = test::init_service(App::new().app_data(verifier.clone()).configure(routes)).await;
    let mut request = test::TestRequest::get().uri(path);
    if let Some(authorization) = authorization {
        request = request.insert_header((AUTHORIZATION, authorization));
    }
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    (status, challenge, body)
}

#[actix_web::test]
async fn no_token_gets_a_bare_bearer_challenge() {
    let f = fixture();
    assert_eq!(
        call(&f.verifier, "/public", None).await,
        (StatusCode::OK, None, "public".to_owned())
    );
    for path in ["/orders", "/orders/export"] {
        let (status, challenge, _) = call(&f.verifier, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{path}");
    }
    // Another scheme is no bearer token either (RFC 6750 §3.1).
    let (status, challenge, _) = call_with(
        &f.verifier,
        "/orders",
        Some("Basic dXNlcjpwYXNz".to_owned()),
    )
    .await;
    assert_eq!(
        (status, challenge.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );
    let (status, challenge, _) =
        call_with(&f.verifier, "/orders", Some("Bearer two words".to_owned())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_request", error_description="Malformed bearer token""#)
    );
}

#[actix_web::test]
async fn invalid_tokens_get_invalid_token() {
    let f = fixture();
    let (status, challenge, _) = call(
        &f.verifier,
        "/orders",
        Some(&f.token(json!({"exp": NOW - 60}))),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="The access token expired""#)
    );
    let forged = Key::es256(&f.key.kid).token(&f.claims());
    let (status, challenge, _) = call(&f.verifier, "/orders/export", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="The access token is invalid""#)
    );
}

#[actix_web::test]
async fn a_sufficient_token_reaches_the_handler() {
    let f = fixture();
    assert_eq!(
        call(&f.verifier, "/orders", Some(&f.token(json!({})))).await,
        (StatusCode::OK, None, "orders of 0193a1b2-user".to_owned())
    );
    let stepped_up =
        f.token(json!({"acr": acr::AAL2, "auth_time": NOW - 300, "amr": ["pwd", "otp", "mfa"]}));
    assert_eq!(
        call(&f.verifier, "/orders/export", Some(&stepped_up)).await,
        (StatusCode::OK, None, "export for 0193a1b2-user".to_owned())
    );
    // Ordered levels: AAL3 satisfies a demand for AAL2.
    let aal3 = f.token(json!({"acr": acr::AAL3}));
    assert_eq!(
        call(&f.verifier, "/step-up/acr", Some(&aal3)).await.0,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn a_missing_scope_gets_insufficient_scope() {
    let f = fixture();
    let token = f.token(json!({"scope": "openid orders:write"}));
    let (status, challenge, _) = call(&f.verifier, "/orders", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_scope", error_description="The access token does not grant the required scope", scope="orders:read""#
        )
    );
}

#[actix_web::test]
async fn an_acr_below_the_demand_gets_the_rfc_9470_challenge() {
    let f = fixture();
    let aal1 = f.token(json!({}));
    let (status, challenge, _) = call(&f.verifier, "/step-up/acr", Some(&aal1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:gatehouse:aal2""#
        )
    );
    // A client-credentials token has no acr at all.
    let service = f.token(
        json!({"sub": "batch", "client_id": "batch", "acr": null, "auth_time": null, "amr": null}),
    );
    assert_eq!(
        call(&f.verifier, "/step-up/acr", Some(&service)).await.1,
        challenge
    );
    // The export needs both; the challenge names both, so one re-authorization does.
    let (status, challenge, _) = call(&f.verifier, "/orders/export", Some(&aal1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:gatehouse:aal2", max_age="300""#
        )
    );
}

#[actix_web::test]
async fn an_old_authentication_gets_the_max_age_challenge() {
    let f = fixture();
    let old = f.token(json!({"acr": acr::AAL2, "auth_time": NOW - 301}));
    let (status, challenge, _) = call(&f.verifier, "/step-up/recent", Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", max_age="300""#
        )
    );
    let (status, challenge, _) = call(&f.verifier, "/orders/export", Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", acr_values="urn:gatehouse:aal2", max_age="300""#
        )
    );
}

#[actix_web::test]
async fn a_verifier_in_web_data_is_found_too_and_a_missing_one_is_a_500() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(f.verifier.clone()))
            .configure(routes),
    )
    .await;
    let request = test::TestRequest::get()
        .uri("/orders")
        .insert_header((AUTHORIZATION, format!("Bearer {}", f.token(json!({})))))
        .to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::OK
    );

    let app = test::init_service(App::new().configure(routes)).await;
    let request = test::TestRequest::get()
        .uri("/orders")
        .insert_header((AUTHORIZATION, format!("Bearer {}", f.token(json!({})))))
        .to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
