use chrono::Duration;
use gatehouse_core::ids::SessionId;
use gatehouse_identity_store::consents;
use gatehouse_identity_store::grants::{
    self, Authentication, CodeRedemption, NewCode, NewGrant, RefreshUse,
};
use gatehouse_identity_store::users::{self, UserData};

use crate::{now, tenant};

fn authentication(user: gatehouse_core::ids::UserId) -> Authentication {
    Authentication {
        user_id: user,
        session_id: SessionId::new(),
        auth_time: now(),
        acr: Some("urn:aal1".into()),
        amr: vec!["pwd".into()],
    }
}

gatehouse_identity_store::backend_tests! {
    fn a_code_is_redeemed_once_and_a_replay_names_its_grant(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let code = NewCode {
            code_hash: "c1".into(),
            client_id: "shop".into(),
            authentication: authentication(user.id),
            redirect_uri: "https://shop.example/cb".into(),
            scope: "openid profile".into(),
            resources: vec!["https://api.example".into()],
            nonce: Some("n".into()),
            code_challenge: Some("ch".into()),
            code_challenge_method: Some("S256".into()),
            lifetime: Duration::seconds(60),
        };
        grants::insert_code(&mut conn, now(), t, code.clone()).unwrap();
        let CodeRedemption::Fresh(redeemed) = grants::redeem_code(&mut conn, now(), t, "c1").unwrap() else { panic!("first redemption failed") };
        assert_eq!((redeemed.client_id.as_str(), redeemed.nonce.as_deref()), ("shop", Some("n")));
        assert_eq!(redeemed.authentication.amr, vec!["pwd".to_owned()]);
        let grant = grants::create(&mut conn, now(), t, NewGrant { client_id: "shop".into(), issuer: Some("https://id.example".into()), authentication: Some(redeemed.authentication.clone()), scope: redeemed.scope.clone(), resources: redeemed.resources.clone(), purposes: vec![], lifetime: Duration::days(30) }).unwrap();
        grants::link_code(&mut conn, t, "c1", &grant.id).unwrap();
        assert_eq!(grants::redeem_code(&mut conn, now(), t, "c1").unwrap(), CodeRedemption::Replayed { grant_id: Some(grant.id.clone()) });

        grants::insert_code(&mut conn, now(), t, NewCode { code_hash: "c2".into(), ..code }).unwrap();
        assert_eq!(grants::redeem_code(&mut conn, now() + Duration::seconds(61), t, "c2").unwrap(), CodeRedemption::Invalid, "expired code redeemed");
        let other = tenant(&mut conn, "other");
        assert_eq!(grants::redeem_code(&mut conn, now(), other, "c2").unwrap(), CodeRedemption::Invalid, "code redeemed in another tenant");
    }

    fn refresh_tokens_rotate_and_a_reuse_is_detected(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let grant = grants::create(&mut conn, now(), t, NewGrant { client_id: "shop".into(), issuer: Some("https://id.example".into()), authentication: Some(authentication(user.id)), scope: "openid".into(), resources: vec![], purposes: vec![], lifetime: Duration::days(30) }).unwrap();
        assert!(grant.is_active(now()));
        grants::insert_refresh_token(&mut conn, now(), t, &grant.id, "r1", Duration::days(7)).unwrap();
        assert_eq!(grants::use_refresh_token(&mut conn, now(), t, "r1").unwrap(), RefreshUse::Fresh { grant_id: grant.id.clone() });
        assert_eq!(grants::use_refresh_token(&mut conn, now(), t, "r1").unwrap(), RefreshUse::Reused { grant_id: grant.id.clone() });
        grants::insert_refresh_token(&mut conn, now(), t, &grant.id, "r2", Duration::days(7)).unwrap();
        assert_eq!(grants::use_refresh_token(&mut conn, now() + Duration::days(8), t, "r2").unwrap(), RefreshUse::Invalid, "idle-expired token used");
        assert_eq!(grants::use_refresh_token(&mut conn, now(), t, "nope").unwrap(), RefreshUse::Invalid);

        assert!(grants::revoke(&mut conn, now(), t, &grant.id, "refresh_reuse").unwrap());
        assert!(!grants::get(&mut conn, t, &grant.id).unwrap().unwrap().is_active(now()));
        let second = grants::create(&mut conn, now(), t, NewGrant { client_id: "app".into(), issuer: None, authentication: Some(authentication(user.id)), scope: "openid".into(), resources: vec![], purposes: vec![], lifetime: Duration::days(1) }).unwrap();
        assert_eq!(grants::revoke_for_user(&mut conn, now(), t, user.id, "password_reset").unwrap(), 1);
        assert!(!grants::get(&mut conn, t, &second.id).unwrap().unwrap().is_active(now()));
    }

    fn consents_accumulate_per_user_and_client(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        assert!(consents::scopes(&mut conn, t, user.id, "shop").unwrap().is_empty());
        consents::grant(&mut conn, now(), t, user.id, "shop", &["openid".into(), "email".into()]).unwrap();
        consents::grant(&mut conn, now(), t, user.id, "shop", &["email".into(), "profile".into()]).unwrap();
        assert_eq!(consents::scopes(&mut conn, t, user.id, "shop").unwrap(), ["openid", "email", "profile"]);
        assert!(consents::scopes(&mut conn, t, user.id, "other").unwrap().is_empty());
    }
}
