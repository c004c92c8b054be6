//! Security outcomes counted for operators: a sign-in that succeeded or failed, a
//! lockout, a second-factor challenge, a federation result, a mail sent. The feature
//! crates report them here; the server turns them into metrics. Counting is never
//! allowed to fail or slow the work it counts.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::ids::TenantId;

/// Where outcomes are counted.
pub trait Outcomes: Send + Sync + fmt::Debug {
    /// `event` names what happened with the audit log's action names
    /// (`login.succeeded`, `login.locked`, `mfa.failed`, `mail.sent`, …); `result`
    /// is `success`, `failure` or `denied`.
    fn count(&self, tenant: TenantId, event: &str, result: &str);
}

/// A place for the counter a service is given after it is built (the server's
/// metrics); until then, and in tests and CLI commands without metrics, nothing is
/// counted.
#[derive(Debug, Default)]
pub struct OutcomeCounter(OnceLock<Arc<dyn Outcomes>>);

impl OutcomeCounter {
    /// Sets where outcomes go; a second call is ignored (one registry per process).
    pub fn set(&self, outcomes: Arc<dyn Outcomes>) {
        let _ = self.0.set(outcomes);
    }

    pub fn count(&self, tenant: TenantId, event: &str, result: &str) {
        if let Some(outcomes) = self.0.get() {
            outcomes.count(tenant, event, result);
        }
    }
}
