//! Cookie policy. On https the session and CSRF cookies are `__Host-` prefixed,
//! Secure, HttpOnly, SameSite=Lax and Path=/ (no Domain), so no sibling host can set or
//! read them. The only exception is dev mode on http://localhost, where browsers
//! would drop Secure cookies: there the prefix and Secure are left off. The
//! configuration refuses production mode without an https public URL.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};

#[derive(Clone, Debug)]
pub struct CookiePolicy {
    secure: bool,
}

impl CookiePolicy {
    pub fn for_public_url(public_url: &str) -> Self {
        CookiePolicy {
            secure: public_url.starts_with("https://"),
        }
    }

    pub fn secure(&self) -> bool {
        self.secure
    }

    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// One session cookie per tenant, so path-routed tenants on one host do not
    /// overwrite each other's sign-in.
    pub fn session_name(&self, tenant_slug: &str) -> String {
        self.name(&format!("gatehouse-session-{tenant_slug}"))
    }

    /// Holds a right password's sealed token while the second factor is asked for.
    pub fn pending_sign_in_name(&self, tenant_slug: &str) -> String {
        self.name(&format!("gatehouse-mfa-{tenant_slug}"))
    }

    pub fn csrf_name(&self) -> String {
        self.name("gatehouse-csrf")
    }

    pub fn build(&self, name: String, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(name, value);
        cookie.set_path("/");
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(SameSite::Lax);
        cookie
    }

    pub fn removal(&self, name: String) -> Cookie<'static> {
        let mut cookie = self.build(name, String::new());
        cookie.set_max_age(CookieDuration::ZERO);
        cookie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        let policy = CookiePolicy::for_public_url("https://login.example.com");
        let cookie = policy.build(policy.session_name("acme"), "v".into());
        assert_eq!(cookie.name(), "__Host-gatehouse-session-acme");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
    }

    #[test]
    fn localhost_development_drops_only_the_prefix_and_secure() {
        let policy = CookiePolicy::for_public_url("http://localhost:8080");
        let cookie = policy.build(policy.csrf_name(), "v".into());
        assert_eq!(cookie.name(), "gatehouse-csrf");
        assert_eq!(cookie.secure(), Some(false));
        assert_eq!(cookie.http_only(), Some(true));
    }
}
