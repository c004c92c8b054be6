//! The authentication service façade. Handlers call one async method per user action;
//! database work runs on the blocking pool, password sign-in's Argon2 work on the
//! fixed hashing pool ([`crate::hashing`]), mail is sent afterwards.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_core::SharedClock;
use gatehouse_core::config::Config;
use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::ids::{SessionId, TenantId, UserId};
use gatehouse_core::outcomes::{OutcomeCounter, Outcomes};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::audit::{self, NewAuditEvent, Outcome};
use gatehouse_identity_store::{AnyConnection, Pool, StoreError, tenants};

use crate::AuthnError;
use crate::hashing::HashingPool;
use crate::mail::{Mailer, OutgoingMail};
use crate::mail_render::{Mail, MailRenderer};
use crate::password::{HashMemory, PasswordHasher, PasswordPolicy};
use crate::registration::LinkBase;
use crate::settings::AuthnSettings;

/// A mail asked for by address, for [`Authn::mail_in_background`]: the address (whose
/// account, if any, is looked up after the answer), where its links point and who
/// asked.
pub(crate) struct MailRequest {
    pub(crate) tenant: TenantId,
    pub(crate) address: String,
    pub(crate) links: LinkBase,
    pub(crate) client: ClientInfo,
}

impl MailRequest {
    pub(crate) fn new(
        tenant: TenantId,
        address: String,
        links: LinkBase,
        client: ClientInfo,
    ) -> MailRequest {
        MailRequest {
            tenant,
            address,
            links,
            client,
        }
    }
}

/// Where a request came from, for throttling, sessions and the audit log.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The language negotiated for the request (`"de"`): mail the request causes is
    /// written in it.
    pub locale: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Authn {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) cipher: Cipher,
    pub(crate) clock: SharedClock,
    pub(crate) events: EventBus,
    pub(crate) hasher: PasswordHasher,
    /// Where sign-in verifies passwords: a thread per core, a bounded queue.
    pub(crate) hashing: HashingPool,
    pub(crate) policy: PasswordPolicy,
    pub(crate) mailer: Mailer,
    /// Words and layout of every mail (the server's templates).
    pub(crate) mail_renderer: Arc<dyn MailRenderer>,
    pub(crate) settings: AuthnSettings,
    /// Work that leaves the request path (mail, account-dependent steps).
    pub(crate) background: Background,
    /// Partners' identity providers as this node knows them.
    pub(crate) upstream: crate::federation::Upstream,
    /// Where audited outcomes and mail results are counted (the server's metrics).
    pub(crate) outcomes: OutcomeCounter,
}

/// Tasks started after a request is answered: mail, and the account-dependent half
/// of enumeration-sensitive actions. Counted, so tests (and a shutdown) can wait
/// until every one has finished instead of sleeping.
#[derive(Debug, Clone, Default)]
pub struct Background {
    running: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
}

impl Background {
    pub(crate) fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        use std::sync::atomic::Ordering;
        let running = Arc::clone(&self.running);
        running.0.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            work.await;
            if running.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                running.1.notify_waiters();
            }
        });
    }

    /// Returns once no background task is running.
    pub async fn idle(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let notified = self.running.1.notified();
            if self.running.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Authn {
    pub fn new(
        config: &Config,
        pool: Pool,
        cipher: Cipher,
        clock: SharedClock,
        events: EventBus,
        mail_renderer: Arc<dyn MailRenderer>,
    ) -> Result<Authn, AuthnError> {
        Ok(Authn {
            inner: Arc::new(Inner {
                hasher: PasswordHasher::new(&config.passwords)?,
                hashing: HashingPool::for_this_machine()?,
                policy: PasswordPolicy::new(&config.passwords),
                mailer: Mailer::from_config(config)?,
                mail_renderer,
                settings: AuthnSettings::from_config(config),
                background: Background::default(),
                upstream: crate::federation::Upstream::new(
                    gatehouse_outbound::Outbound::from_config(&config.outbound)
                        .map_err(|e| AuthnError::Internal(e.to_string()))?,
                ),
                pool,
                cipher,
                clock,
                events,
                outcomes: OutcomeCounter::default(),
            }),
        })
    }

    /// Counts every audited outcome and every mail sent or failed from now on
    /// (the server's metrics); without it nothing is counted.
    pub fn count_outcomes(&self, outcomes: Arc<dyn Outcomes>) {
        self.inner.outcomes.set(outcomes);
    }

    pub fn settings(&self) -> &AuthnSettings {
        &self.inner.settings
    }

    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.inner.policy
    }

    /// Runs database (and, outside sign-in, hashing) work off the async workers, with
    /// one pooled connection for the whole of `work`.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut AnyConnection) -> Result<T, AuthnError> + Send + 'static,
    ) -> Result<T, AuthnError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.pool.get().map_err(StoreError::from)?;
            work(&inner, &mut conn)
        })
        .await
        .map_err(|e| AuthnError::Internal(e.to_string()))?
    }

    /// The tasks this service left running after answering (see [`Background`]).
    pub fn background(&self) -> &Background {
        &self.inner.background
    }

    /// Sends `mail` after the answer: the answer never waits for SMTP, and never
    /// waits for it only for some addresses. A failure is logged; the user can ask
    /// again.
    pub(crate) fn send_in_background(&self, tenant: TenantId, mail: Mail, what: &'static str) {
        let authn = self.clone();
        self.inner.background.spawn(async move {
            if let Err(error) = authn.send_mail(tenant, mail).await {
                tracing::error!(%error, what, "mail could not be sent");
            }
        });
    }

    /// Issues a mail and sends it, both after the answer: what depends on whether
    /// the address has an account (looking it up, issuing a link, auditing) must
    /// not make the answer differ. `issue` finds no mail to send when there is no
    /// account to write to; a failure is logged as one of `what` (the mail's kind).
    pub(crate) fn mail_in_background(
        &self,
        what: &'static str,
        request: MailRequest,
        issue: fn(&Inner, &mut AnyConnection, &MailRequest) -> Result<Option<Mail>, AuthnError>,
    ) {
        let authn = self.clone();
        let tenant = request.tenant;
        self.inner.background.spawn(async move {
            match authn
                .blocking(move |inner, conn| issue(inner, conn, &request))
                .await
            {
                Ok(Some(mail)) => authn.send_in_background(tenant, mail, what),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "issuing the {what} mail failed"),
            }
        });
    }

    /// Renders `mail` in the tenant's theme and sends it.
    pub(crate) async fn send_mail(&self, tenant: TenantId, mail: Mail) -> Result<(), AuthnError> {
        let outgoing = self.render_mail(tenant, mail).await?;
        let sent = self.inner.mailer.send(&outgoing).await;
        let result = if sent.is_ok() { "success" } else { "failure" };
        self.inner.outcomes.count(tenant, "mail.sent", result);
        sent
    }

    /// Off the async workers: the tenant is read on a pooled connection, given back
    /// before rendering (which may read template files).
    async fn render_mail(&self, tenant: TenantId, mail: Mail) -> Result<OutgoingMail, AuthnError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let tenant = {
                let mut conn = inner.pool.get().map_err(StoreError::from)?;
                tenants::get(&mut conn, tenant)?
            };
            inner.mail_renderer.render(&tenant, &mail)
        })
        .await
        .map_err(|e| AuthnError::Internal(e.to_string()))?
    }

    /// Runs password hashing work on the hashing pool, without a database connection.
    /// [`AuthnError::Busy`] when its queue is full.
    pub(crate) async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher, &mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, AuthnError> {
        let hasher = self.inner.hasher.clone();
        self.inner
            .hashing
            .run(move |memory| work(&hasher, memory))
            .await
    }
}

impl Inner {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Announces ended sessions, so relying parties signed in through them hear of it
    /// (back-channel logout) and their grants end.
    pub(crate) fn sessions_ended(&self, tenant: TenantId, user: UserId, sessions: Vec<SessionId>) {
        if sessions.is_empty() {
            return;
        }
        self.events.announce(DomainEvent::SessionsEnded {
            tenant,
            user,
            sessions,
        });
    }

    /// Tells every node that something policies see of the user changed (their
    /// profile, a verified address, roles).
    pub(crate) fn user_changed(&self, tenant: TenantId, user: UserId) {
        self.events
            .announce(DomainEvent::UserChanged { tenant, user });
    }

    /// Tells every node that a user's credentials changed (a factor added or
    /// removed, a password reset).
    pub(crate) fn credentials_changed(&self, tenant: TenantId, user: UserId) {
        self.events
            .announce(DomainEvent::CredentialsChanged { tenant, user });
    }

    /// Writes an audit event. Failing to audit fails the action: a security event
    /// that cannot be recorded must not happen silently.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        actor: String,
        action: &str,
        target: Option<String>,
        outcome: Outcome,
        client: &ClientInfo,
        details: serde_json::Value,
    ) -> Result<(), AuthnError> {
        audit::append(
            conn,
            &self.cipher,
            self.now(),
            tenant,
            NewAuditEvent {
                actor,
                action: action.to_owned(),
                target,
                outcome,
                ip: client.ip.clone(),
                details,
            },
        )?;
        // Counted with the audit record, before its transaction commits: the rare
        // transaction that fails after this line (a database error, answered 503)
        // is counted although it left no trace. Counting after each commit would
        // need every caller's cooperation for that edge.
        self.outcomes.count(tenant, action, outcome.as_str());
        Ok(())
    }

    /// Audits a successful change the user made to their own account: the user is
    /// both actor and target.
    pub(crate) fn audit_own_account(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
        action: &str,
        client: &ClientInfo,
        details: serde_json::Value,
    ) -> Result<(), AuthnError> {
        let user = format!("user:{user}");
        self.audit(
            conn,
            tenant,
            user.clone(),
            action,
            Some(user),
            Outcome::Success,
            client,
            details,
        )
    }
}
