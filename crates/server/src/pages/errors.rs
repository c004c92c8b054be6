//! The one mapping of authn's failures to what the pages say. A failure is either
//! shown on the form it came from (status, message key, a refused password's
//! suggestions), or answered with a page of its own (an unusable link, throttling,
//! a busy server), or it is the server's own and answered with the internal-error
//! page while the log keeps the detail. Where one page words a failure more
//! sharply — the account page's "current password is wrong" — it replaces the
//! message and keeps the status.

use actix_web::HttpResponse;
use actix_web::http::{StatusCode, header};
use gatehouse_authn::AuthnError;

use crate::pages::context::PageContext;

/// A failure the form shows next to what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormError {
    pub status: StatusCode,
    /// The message key (`web/i18n`).
    pub message: String,
    /// Where a password was refused, the policy's suggestions.
    pub suggestions: Vec<String>,
}

impl FormError {
    fn new(status: StatusCode, message: &str) -> Self {
        FormError {
            status,
            message: message.to_owned(),
            suggestions: Vec::new(),
        }
    }

    /// The same failure in this page's words.
    pub(crate) fn worded(mut self, message: &str) -> Self {
        self.message = message.to_owned();
        self
    }
}

/// What the user is shown for an authn failure.
#[derive(Debug)]
pub(crate) enum Shown {
    OnForm(FormError),
    /// A page of its own: the status, the title and message keys.
    Page {
        status: StatusCode,
        title: &'static str,
        message: &'static str,
    },
    /// The server's own failure.
    Internal,
}

/// How a page shows `error`.
pub(crate) fn shown(error: &AuthnError) -> Shown {
    let form = |status, message| Shown::OnForm(FormError::new(status, message));
    match error {
        // One message for an unknown account and a wrong password.
        AuthnError::InvalidCredentials => form(StatusCode::UNAUTHORIZED, "signin.error.invalid"),
        AuthnError::Throttled { .. } => {
            form(StatusCode::TOO_MANY_REQUESTS, "signin.error.throttled")
        }
        AuthnError::EmailNotVerified => form(StatusCode::FORBIDDEN, "signin.error.unverified"),
        AuthnError::InvalidEmail => form(StatusCode::UNPROCESSABLE_ENTITY, "signup.error.email"),
        AuthnError::EmailTaken => form(StatusCode::CONFLICT, "account.error.email_taken"),
        AuthnError::PasswordPolicy(violation) => Shown::OnForm(FormError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: PageContext::policy_message(violation.code),
            suggestions: violation.suggestions.clone(),
        }),
        AuthnError::RegistrationClosed => Shown::Page {
            status: StatusCode::NOT_FOUND,
            title: "signup.closed.title",
            message: "signup.closed.message",
        },
        AuthnError::InvalidLink => Shown::Page {
            status: StatusCode::BAD_REQUEST,
            title: "verify.invalid.title",
            message: "verify.invalid.message",
        },
        // Every hashing thread busy and the queue full, or the database out of
        // reach in time: refused now, worth retrying shortly.
        AuthnError::Busy => Shown::Page {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "error.unavailable.title",
            message: "error.unavailable.message",
        },
        // Where a page has no better words: the federated sign-in's own page adds
        // the refusal's reference.
        AuthnError::Federation(_) => Shown::Page {
            status: StatusCode::BAD_REQUEST,
            title: "federation.refused.title",
            message: "federation.refused.message",
        },
        AuthnError::LastSignInMethod => form(StatusCode::CONFLICT, "federation.error.last_method"),
        AuthnError::Store(store) if store.is_unavailable() => Shown::Page {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "error.unavailable.title",
            message: "error.unavailable.message",
        },
        _ => Shown::Internal,
    }
}

impl PageContext {
    /// The answer for an authn failure that has no form to show it on (or whose
    /// form is not this page's): its page, or the internal-error page.
    pub(crate) fn authn_failure(&self, error: &AuthnError) -> HttpResponse {
        match shown(error) {
            Shown::Page {
                status,
                title,
                message,
            } => {
                let mut response = self.error_page(status, title, message);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                }
                response
            }
            Shown::OnForm(form) if form.status == StatusCode::TOO_MANY_REQUESTS => self.error_page(
                form.status,
                "error.too_many_requests.title",
                "error.too_many_requests.message",
            ),
            Shown::OnForm(_) | Shown::Internal => self.internal_error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_the_user_can_correct_is_shown_on_the_form() {
        for error in [
            AuthnError::InvalidCredentials,
            AuthnError::InvalidEmail,
            AuthnError::EmailTaken,
            AuthnError::EmailNotVerified,
        ] {
            assert!(matches!(shown(&error), Shown::OnForm(_)), "{error:?}");
        }
        let Shown::OnForm(throttled) = shown(&AuthnError::Throttled { until: None }) else {
            panic!("throttling is shown on the form");
        };
        assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn the_servers_own_failures_never_reach_the_page_as_detail() {
        assert!(matches!(
            shown(&AuthnError::Internal("secret detail".into())),
            Shown::Internal
        ));
        assert!(matches!(
            shown(&AuthnError::Hash("argon2".into())),
            Shown::Internal
        ));
    }

    #[test]
    fn a_database_out_of_reach_is_unavailable_not_internal() {
        let unreachable = AuthnError::Store(gatehouse_identity_store::StoreError::Connect {
            backend: "PostgreSQL",
            message: "timed out".into(),
        });
        assert!(matches!(
            shown(&unreachable),
            Shown::Page {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..
            }
        ));
    }

    #[test]
    fn a_page_rewords_a_failure_and_keeps_its_status() {
        let Shown::OnForm(form) = shown(&AuthnError::InvalidCredentials) else {
            panic!("shown on the form");
        };
        let worded = form.clone().worded("account.error.current_password");
        assert_eq!(worded.status, form.status);
        assert_eq!(worded.message, "account.error.current_password");
    }
}
