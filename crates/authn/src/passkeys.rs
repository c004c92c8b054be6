//! Passkeys (WebAuthn): registration, passwordless sign-in and a passkey as the
//! second factor after a password.
//!
//! A user may register several passkeys. Each is a `webauthn` credential whose
//! sealed data is the serialised webauthn-rs [`Passkey`] (public key, signature
//! counter, backup flags), labelled with the name the user gave it, and found by its
//! credential id (base64url, the credential's `lookup_key`, unique per tenant, so
//! one authenticator credential never belongs to two accounts).
//!
//! Every ceremony has two steps. `begin_*` returns options for the browser and a
//! challenge id; the server half of the ceremony is kept in `webauthn_challenges`
//! for [`CHALLENGE_LIFETIME_MINUTES`], bound to the browser (`binding`: the caller
//! passes something only that browser has, such as its session or pre-session
//! cookie secret; only its SHA-256 is stored). `finish_*` takes the challenge out
//! of the database before anything else, so it is used at most once whatever the
//! outcome, and only with the same binding.
//!
//! User verification is always required, so a passkey alone is two factors (the
//! device, and the PIN or biometric that unlocked it). Registrations ask for a
//! discoverable credential (resident key): passwordless sign-in lets the
//! authenticator name the account, in a modal dialog or in the browser's autofill
//! (conditional UI). With a known user (after a password) the options list that
//! user's passkeys (`allowCredentials`).
//!
//! An assertion is checked against the passkey as stored at that moment, with its
//! row locked, and the stored passkey is then updated (signature counter, backup
//! state), so a counter that does not move forward is refused even when two
//! ceremonies race. Finishing a sign-in opens no session: the caller gets
//! [`PasskeyAuthenticated`] and decides.
//!
//! Rejected assertions are counted like failed passwords, with limits from the
//! configuration (`[passkeys]`; [`AuthnSettings`]): per passkey
//! ([`credential_bucket`]) when the response was checked against a registered
//! passkey's key (a backoff, then a lockout), and per client address
//! ([`address_bucket`]) for every rejection (a lockout, set well above what one NAT
//! produces). A success forgets the counts of its passkey and of its address. Call
//! these outside a transaction of your own: a failure is counted in its own commit.
//!
//! A verified assertion also cancels the user's waiting recoveries of lost factors,
//! in the transaction that records the passkey's use ([`crate::recovery`]).
//!
//! [`AuthnSettings`]: crate::settings::AuthnSettings
//!
//! The relying party comes from the tenant's public origin ([`RelyingParty`]);
//! WebAuthn refuses IP addresses as relying party ids, and browsers accept
//! `http://localhost` as a secure context.

use std::fmt;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::{CredentialId, TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, Credential, CredentialKind, NewCredential};
use gatehouse_identity_store::webauthn_challenges::{self, NewChallenge, Purpose};
use gatehouse_identity_store::{AnyConnection, StoreError, db, rate_limits, users};
use serde::{Deserialize, Serialize};
use serde_json::json;
/// The ceremony types the caller hands to and from the browser (JSON via serde).
pub use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url,
};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, Uuid,
    Webauthn, WebauthnBuilder, WebauthnError,
};
use zeroize::Zeroizing;

use crate::factor_attempts::cancel_recoveries_on_factor_use;
use crate::factor_attempts::ensure_not_locked;
use crate::service::{Authn, ClientInfo, Inner};
use crate::{AuthnError, secrets};

/// How long a begun ceremony can be finished: WebAuthn's recommended timeout,
/// which the options also give the browser.
pub const CHALLENGE_LIFETIME_MINUTES: i64 = 5;
/// The longest passkey name kept, in characters.
pub const NAME_MAX_CHARS: usize = 64;
/// The name of a passkey registered without one.
pub const DEFAULT_NAME: &str = "Passkey";

/// The rate-limit bucket for rejected assertions checked against one passkey.
pub fn credential_bucket(credential: CredentialId) -> String {
    format!("passkey:credential:{credential}")
}

/// The rate-limit bucket for rejected assertions from one client address.
pub fn address_bucket(ip: &str) -> String {
    format!("passkey:ip:{ip}")
}

/// The relying party a ceremony is for: the tenant's public origin and the id
/// credentials are scoped to (its host, or a registrable suffix of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelyingParty {
    id: String,
    origin: Url,
    name: String,
}

impl RelyingParty {
    /// `id` must be `origin`'s host or a registrable suffix of it; `name` is shown
    /// by some authenticators. Only `origin`'s scheme, host and port count.
    pub fn new(id: &str, origin: &Url, name: &str) -> Result<RelyingParty, AuthnError> {
        let unusable =
            |why: &str| AuthnError::Internal(format!("{origin} cannot be a passkey origin: {why}"));
        let origin = Url::parse(&origin.origin().ascii_serialization())
            .map_err(|_| unusable("it has no host"))?;
        if origin.domain().is_none() {
            return Err(unusable("WebAuthn needs a domain name, not an IP address"));
        }
        let rp = RelyingParty {
            id: id.to_owned(),
            origin,
            name: name.trim().to_owned(),
        };
        rp.webauthn()
            .map_err(|_| unusable(&format!("{id} is not its host or a suffix of it")))?;
        Ok(rp)
    }

    /// The usual case: the relying party id is the origin's host.
    pub fn for_origin(origin: &Url, name: &str) -> Result<RelyingParty, AuthnError> {
        let host = origin.host_str().unwrap_or_default().to_owned();
        RelyingParty::new(&host, origin, name)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// Built for each ceremony rather than cached per origin: building is a few
    /// small allocations, less than the ceremony's one signature check, and there
    /// is no cache to keep in step when a tenant's origin changes.
    fn webauthn(&self) -> Result<Webauthn, AuthnError> {
        let timeout = StdDuration::from_secs(CHALLENGE_LIFETIME_MINUTES.unsigned_abs() * 60);
        let mut builder = WebauthnBuilder::new(&self.id, &self.origin)
            .map_err(|e| internal("configuring the relying party", &e))?
            .timeout(timeout);
        if !self.name.is_empty() {
            builder = builder.rp_name(&self.name);
        }
        builder
            .build()
            .map_err(|e| internal("configuring the relying party", &e))
    }
}

/// A registration begun: the options for `navigator.credentials.create()` and the
/// id that finishes it.
pub struct RegistrationChallenge {
    pub challenge_id: String,
    /// Serialise as JSON for the page (`PublicKeyCredential.parseCreationOptionsFromJSON`).
    pub options: CreationChallengeResponse,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for RegistrationChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationChallenge")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A sign-in begun: the options for `navigator.credentials.get()` (with
/// `mediation: "conditional"` for autofill) and the id that finishes it.
pub struct AuthenticationChallenge {
    pub challenge_id: String,
    /// Serialise as JSON for the page (`PublicKeyCredential.parseRequestOptionsFromJSON`).
    pub options: RequestChallengeResponse,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for AuthenticationChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticationChallenge")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A registered passkey, as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyInfo {
    pub id: CredentialId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The last successful sign-in with it.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key may be synced between devices or backed up (a "synced passkey"),
    /// rather than bound to one authenticator.
    pub backup_eligible: bool,
    /// It was backed up when last seen.
    pub backed_up: bool,
}

/// Who signed in with a passkey, and how. No session has been opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyAuthenticated {
    pub user_id: UserId,
    pub credential_id: CredentialId,
    /// The authenticator verified the user (PIN, biometric): with the key that is
    /// two factors. Always true today, since verification is required.
    pub user_verified: bool,
    /// A synced or backed-up key (RFC 8176 `swk`) rather than one bound to a
    /// device (`hwk`).
    pub backup_eligible: bool,
    pub backed_up: bool,
    /// Passwordless: the passkey named the account. False for a passkey used as the
    /// second factor of a known user.
    pub discoverable: bool,
}

/// The server half of a ceremony, as kept between its two steps.
#[derive(Serialize, Deserialize)]
#[serde(tag = "flow", content = "state", rename_all = "snake_case")]
enum Ceremony {
    Registration(PasskeyRegistration),
    SecondFactor(PasskeyAuthentication),
    Passwordless(DiscoverableAuthentication),
}

/// What listings show without exposing webauthn-rs internals: read off the
/// serialised passkey (webauthn-rs's stable storage form).
#[derive(Deserialize)]
struct StoredFlags {
    cred: CredentialFlags,
}

#[derive(Deserialize, Clone, Copy)]
struct CredentialFlags {
    backup_eligible: bool,
    backup_state: bool,
}

struct StoredPasskey {
    passkey: Passkey,
    flags: CredentialFlags,
}

impl StoredPasskey {
    fn open(credential: &Credential, cipher: &Cipher) -> Result<StoredPasskey, AuthnError> {
        let bytes = credential.secret(cipher)?;
        let unreadable = |_| {
            AuthnError::Internal(format!(
                "passkey credential {} is unreadable",
                credential.id
            ))
        };
        Ok(StoredPasskey {
            passkey: serde_json::from_slice(&bytes).map_err(unreadable)?,
            flags: serde_json::from_slice::<StoredFlags>(&bytes)
                .map_err(unreadable)?
                .cred,
        })
    }

    fn encode(passkey: Passkey) -> Result<(StoredPasskey, Zeroizing<Vec<u8>>), AuthnError> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(&passkey)
                .map_err(|e| AuthnError::Internal(format!("encoding a passkey: {e}")))?,
        );
        let flags = serde_json::from_slice::<StoredFlags>(&bytes)
            .map_err(|e| AuthnError::Internal(format!("reading a passkey's flags: {e}")))?
            .cred;
        Ok((StoredPasskey { passkey, flags }, bytes))
    }

    fn info(&self, credential: &Credential) -> PasskeyInfo {
        PasskeyInfo {
            id: credential.id,
            name: credential
                .label
                .clone()
                .unwrap_or_else(|| DEFAULT_NAME.to_owned()),
            created_at: credential.created_at,
            last_used_at: credential.last_used_at,
            backup_eligible: self.flags.backup_eligible,
            backed_up: self.flags.backup_state,
        }
    }
}

fn internal(what: &str, error: &WebauthnError) -> AuthnError {
    AuthnError::Internal(format!("{what}: {error}"))
}

/// A failed ceremony, named by the check that failed (never by what the client
/// sent: some parser errors would quote it).
fn rejected(error: WebauthnError) -> AuthnError {
    tracing::debug!(%error, "passkey response refused");
    AuthnError::PasskeyRejected(
        match error {
            WebauthnError::InvalidRPOrigin => "the response comes from another origin",
            WebauthnError::InvalidRPIDHash => "the response is for another relying party",
            WebauthnError::MismatchedChallenge => "the response answers another challenge",
            WebauthnError::InvalidClientDataType => "the response is for another ceremony",
            WebauthnError::UserNotVerified => "the authenticator did not verify the user",
            WebauthnError::UserNotPresent => "the authenticator did not test the user's presence",
            WebauthnError::CredentialPossibleCompromise => {
                "the signature counter did not increase (a cloned authenticator?)"
            }
            WebauthnError::AuthenticationFailure => "the signature does not verify",
            WebauthnError::CredentialNotFound => "the passkey was not offered",
            WebauthnError::CredentialBackupEligibilityInconsistent => {
                "the passkey's backup eligibility changed"
            }
            WebauthnError::CredentialAlteredAlgFromRequest => {
                "the credential is excluded or uses an algorithm not offered"
            }
            _ => "the authenticator's response is invalid",
        }
        .to_owned(),
    )
}

fn rejected_because(reason: &str) -> AuthnError {
    AuthnError::PasskeyRejected(reason.to_owned())
}

/// Whitespace runs become one space, control characters go, and the result is cut
/// to [`NAME_MAX_CHARS`]; an empty name becomes [`DEFAULT_NAME`].
fn normalise_name(name: &str) -> String {
    let cleaned: String = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(NAME_MAX_CHARS)
        .collect();
    match cleaned.trim() {
        "" => DEFAULT_NAME.to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

fn lookup_key(credential_id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(credential_id)
}

/// The browser binding as stored: its SHA-256, so the database never holds the
/// cookie secret it may be derived from.
fn binding_digest(binding: &str) -> Result<String, AuthnError> {
    if binding.is_empty() {
        return Err(AuthnError::Internal(
            "a passkey ceremony must be bound to the browser".into(),
        ));
    }
    Ok(secrets::digest(binding))
}

/// WebAuthn options ask for a discoverable credential (resident key), which
/// passwordless sign-in needs; webauthn-rs's passkey registration discourages one.
fn require_resident_key(
    options: CreationChallengeResponse,
) -> Result<CreationChallengeResponse, AuthnError> {
    let failed = |e: serde_json::Error| AuthnError::Internal(format!("passkey options: {e}"));
    let mut value = serde_json::to_value(&options).map_err(failed)?;
    let selection = value
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| {
            AuthnError::Internal("passkey options without authenticatorSelection".into())
        })?;
    selection.insert("residentKey".into(), json!("required"));
    selection.insert("requireResidentKey".into(), json!(true));
    serde_json::from_value(value).map_err(failed)
}

/// A second factor is verified like a passwordless sign-in: against the one passkey
/// the response names, as stored now (after checking it is the user's), rather than
/// against the copies of all the user's passkeys taken when the ceremony began,
/// which could hold an older counter. Both ceremony states are the same
/// authentication state in webauthn-rs's serialised form.
fn as_single_credential(
    state: PasskeyAuthentication,
) -> Result<DiscoverableAuthentication, AuthnError> {
    serde_json::to_value(state)
        .and_then(serde_json::from_value)
        .map_err(|e| AuthnError::Internal(format!("passkey authentication state: {e}")))
}

/// Which failure counters an assertion touches.
struct Attempt {
    /// The registered passkey the response named, if any (for the audit log).
    named: Option<CredentialId>,
    /// The passkey whose key the response was checked against: its failures count.
    checked: Option<CredentialId>,
    /// The client address's bucket, when the address is known.
    address: Option<String>,
}

/// How a sign-in ceremony was begun.
#[derive(Clone, Copy)]
enum Flow {
    /// After a password: only this user's passkeys.
    SecondFactor(UserId),
    /// The passkey names the account.
    Passwordless,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::SecondFactor(_) => "second_factor",
            Flow::Passwordless => "passwordless",
        }
    }
}

impl Inner {
    fn passkeys_of(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<(Credential, StoredPasskey)>, AuthnError> {
        credentials::list_for_user(conn, tenant, user, Some(CredentialKind::Webauthn))?
            .into_iter()
            .map(|credential| {
                let stored = StoredPasskey::open(&credential, &self.cipher)?;
                Ok((credential, stored))
            })
            .collect()
    }

    /// Keeps a begun ceremony; returns the challenge id for the browser and when it
    /// expires.
    fn remember(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: Option<UserId>,
        binding: &str,
        ceremony: &Ceremony,
    ) -> Result<(String, DateTime<Utc>), AuthnError> {
        let purpose = match ceremony {
            Ceremony::Registration(_) => Purpose::Registration,
            Ceremony::SecondFactor(_) | Ceremony::Passwordless(_) => Purpose::Authentication,
        };
        let state = Zeroizing::new(
            serde_json::to_vec(ceremony)
                .map_err(|e| AuthnError::Internal(format!("encoding a passkey ceremony: {e}")))?,
        );
        let (id, id_hash) = secrets::generate();
        let now = self.now();
        let expires_at = now + Duration::minutes(CHALLENGE_LIFETIME_MINUTES);
        webauthn_challenges::insert(
            conn,
            &self.cipher,
            now,
            tenant,
            &id_hash,
            NewChallenge {
                purpose,
                user,
                binding: &binding_digest(binding)?,
                state: &state,
                expires_at,
            },
        )?;
        Ok((id, expires_at))
    }

    /// Takes a ceremony out of the database (so it is spent); its user, if it had
    /// one. [`AuthnError::ChallengeInvalid`] if it is unknown, spent, expired, for
    /// another purpose or was begun by another browser.
    fn take(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        challenge_id: &str,
        purpose: Purpose,
        binding: &str,
    ) -> Result<(Option<UserId>, Ceremony), AuthnError> {
        let taken = webauthn_challenges::take(
            conn,
            &self.cipher,
            self.now(),
            tenant,
            &secrets::digest(challenge_id),
            purpose,
            &binding_digest(binding)?,
        )?
        .ok_or(AuthnError::ChallengeInvalid)?;
        let ceremony = serde_json::from_slice(&taken.state)
            .map_err(|_| AuthnError::Internal("a kept passkey ceremony is unreadable".into()))?;
        Ok((taken.user_id, ceremony))
    }

    /// Checks an assertion against passkey `id` of `user`, with its row locked, and
    /// stores the moved-on counter and backup state. A failure rolls back, so
    /// `last_used_at` records successes only.
    #[allow(clippy::too_many_arguments)]
    fn verify_assertion(
        &self,
        conn: &mut AnyConnection,
        webauthn: &Webauthn,
        tenant: TenantId,
        user: UserId,
        id: CredentialId,
        response: &PublicKeyCredential,
        state: DiscoverableAuthentication,
        discoverable: bool,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        let now = self.now();
        db::transaction_with(conn, |conn| {
            // The write first: PostgreSQL then holds the row until commit, and SQLite
            // takes its write lock before reading (see `totp::lock`).
            match credentials::mark_used(conn, now, tenant, id) {
                Err(StoreError::NotFound { .. }) => {
                    return Err(rejected_because("the passkey is not registered"));
                }
                other => other?,
            }
            let credential = credentials::get(conn, tenant, id)?;
            if credential.user_id != user || credential.kind != CredentialKind::Webauthn {
                return Err(rejected_because("the passkey is not registered"));
            }
            let mut stored = StoredPasskey::open(&credential, &self.cipher)?;
            let result = webauthn
                .finish_discoverable_authentication_v2(response, state, &stored.passkey)
                .map_err(rejected)?;
            if stored.passkey.update_credential(&result) == Some(true) {
                let (_, bytes) = StoredPasskey::encode(stored.passkey)?;
                credentials::replace_secret(conn, &self.cipher, &credential, &bytes)?;
            }
            cancel_recoveries_on_factor_use(conn, &self.cipher, now, tenant, user, "passkey")?;
            Ok(PasskeyAuthenticated {
                user_id: user,
                credential_id: id,
                user_verified: result.user_verified(),
                backup_eligible: result.backup_eligible(),
                backed_up: result.backup_state(),
                discoverable,
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_authentication(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        binding: &str,
        challenge_id: &str,
        response: &PublicKeyCredential,
        rp: &RelyingParty,
        client: &ClientInfo,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        let webauthn = rp.webauthn()?;
        let now = self.now();
        let (expected, ceremony) =
            self.take(conn, tenant, challenge_id, Purpose::Authentication, binding)?;
        let (flow, state) = match (ceremony, expected) {
            (Ceremony::SecondFactor(state), Some(user)) => {
                (Flow::SecondFactor(user), as_single_credential(state)?)
            }
            (Ceremony::Passwordless(state), None) => (Flow::Passwordless, state),
            _ => return Err(AuthnError::ChallengeInvalid),
        };
        let address = client.ip.as_deref().map(address_bucket);
        if let Some(bucket) = &address {
            ensure_not_locked(conn, now, tenant, bucket)?;
        }

        // The stored passkey the response names, and the account it must belong to.
        // The user handle is not signed, so it only has to agree.
        let found = credentials::find_by_lookup_key(
            conn,
            tenant,
            CredentialKind::Webauthn,
            &lookup_key(response.get_credential_id()),
        )?;
        let handle = response
            .get_user_unique_id()
            .map(|bytes| Uuid::from_slice(bytes).map(UserId::from_uuid).ok());
        let owner = match (&found, flow) {
            (None, _) => Err("the passkey is not registered"),
            (Some(credential), Flow::SecondFactor(user)) if credential.user_id != user => {
                Err("the passkey is not one of the user's")
            }
            (Some(_), Flow::Passwordless) if handle.is_none() => {
                Err("the response names no user (not a discoverable credential)")
            }
            (Some(credential), _) => match handle {
                Some(named) if named != Some(credential.user_id) => {
                    Err("the response names another user")
                }
                _ => Ok((credential.user_id, credential.id)),
            },
        };
        let user = match flow {
            Flow::SecondFactor(user) => Some(user),
            Flow::Passwordless => owner.ok().map(|(user, _)| user),
        };
        // The passkey whose key the response will be checked against.
        let checked = owner.ok().map(|(_, id)| id);
        if let Some(id) = checked {
            ensure_not_locked(conn, now, tenant, &credential_bucket(id))?;
        }

        let outcome = owner.map_err(rejected_because).and_then(|(user, id)| {
            let discoverable = matches!(flow, Flow::Passwordless);
            self.verify_assertion(
                conn,
                &webauthn,
                tenant,
                user,
                id,
                response,
                state,
                discoverable,
            )
        });
        let outcome = outcome.and_then(|done| {
            // Checked after the signature, so a passkey of a disabled account tells
            // nothing to someone without the authenticator.
            if users::get(conn, tenant, done.user_id)?.data.active {
                Ok(done)
            } else {
                Err(AuthnError::InvalidCredentials)
            }
        });
        let named = found.map(|credential| credential.id);
        self.settle_authentication(
            conn,
            tenant,
            flow,
            user,
            Attempt {
                named,
                checked,
                address,
            },
            outcome,
            client,
        )
    }

    /// Counts a rejected assertion against its passkey (when its key was checked)
    /// and its address, each count committed on its own, and audits it; after a
    /// success, forgets the failures of both. A lock applies from the next attempt.
    #[allow(clippy::too_many_arguments)]
    fn settle_authentication(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        flow: Flow,
        user: Option<UserId>,
        attempt: Attempt,
        outcome: Result<PasskeyAuthenticated, AuthnError>,
        client: &ClientInfo,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        let now = self.now();
        let settings = &self.settings;
        let error = match outcome {
            Ok(done) => {
                rate_limits::reset(conn, tenant, &credential_bucket(done.credential_id))?;
                if let Some(address) = &attempt.address {
                    rate_limits::reset(conn, tenant, address)?;
                }
                return Ok(done);
            }
            Err(error @ (AuthnError::PasskeyRejected(_) | AuthnError::InvalidCredentials)) => error,
            Err(other) => return Err(other),
        };
        let mut locked = false;
        if matches!(error, AuthnError::PasskeyRejected(_)) {
            let mut counted = Vec::new();
            if let Some(id) = attempt.checked {
                counted.push(rate_limits::record_failure(
                    conn,
                    now,
                    tenant,
                    &credential_bucket(id),
                    settings.passkey_failure_window,
                    |n| settings.passkey_credential_lock_for(n),
                )?);
            }
            if let Some(address) = &attempt.address {
                counted.push(rate_limits::record_failure(
                    conn,
                    now,
                    tenant,
                    address,
                    settings.passkey_failure_window,
                    |n| settings.passkey_ip_lock_for(n),
                )?);
            }
            locked = counted.iter().any(|counter| counter.is_locked(now));
        }
        let reason = match &error {
            AuthnError::PasskeyRejected(reason) => reason.as_str(),
            _ => "the account is disabled",
        };
        self.audit(
            conn,
            tenant,
            user.map_or_else(|| "anonymous".to_owned(), |user| format!("user:{user}")),
            "passkey.authentication_failed",
            attempt.named.map(|id| format!("credential:{id}")),
            Outcome::Failure,
            client,
            json!({ "flow": flow.name(), "reason": reason, "locked": locked }),
        )?;
        // As with a wrong password: this attempt is told what was wrong; a lock it
        // set refuses the next ones.
        Err(error)
    }

    fn begin_passwordless(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        binding: &str,
        rp: &RelyingParty,
        conditional: bool,
    ) -> Result<AuthenticationChallenge, AuthnError> {
        let (mut options, state) = rp
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(|e| internal("starting a passkey sign-in", &e))?;
        if !conditional {
            // webauthn-rs always asks for autofill; a sign-in button wants the dialog.
            options.mediation = None;
        }
        let (challenge_id, expires_at) =
            self.remember(conn, tenant, None, binding, &Ceremony::Passwordless(state))?;
        Ok(AuthenticationChallenge {
            challenge_id,
            options,
            expires_at,
        })
    }

    /// The user's passkey `id`; [`AuthnError::NotEnrolled`] if it is not theirs.
    fn passkey_of(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
        id: CredentialId,
    ) -> Result<Credential, AuthnError> {
        match credentials::get(conn, tenant, id) {
            Ok(credential)
                if credential.user_id == user && credential.kind == CredentialKind::Webauthn =>
            {
                Ok(credential)
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(AuthnError::NotEnrolled),
            Err(other) => Err(other.into()),
        }
    }
}

impl Authn {
    /// Starts adding a passkey for `user`. The options exclude the passkeys the user
    /// already has, ask for a discoverable credential and require user
    /// verification. `binding` identifies the browser (see the module docs).
    pub async fn begin_passkey_registration(
        &self,
        tenant: TenantId,
        user: UserId,
        binding: String,
        rp: RelyingParty,
    ) -> Result<RegistrationChallenge, AuthnError> {
        self.blocking(move |inner, conn| {
            let webauthn = rp.webauthn()?;
            let user = users::get(conn, tenant, user)?;
            let exclude = inner
                .passkeys_of(conn, tenant, user.id)?
                .iter()
                .map(|(_, stored)| stored.passkey.cred_id().clone())
                .collect();
            let account = user
                .primary_email()
                .map_or_else(|| user.data.user_name.clone(), |email| email.value.clone());
            let display_name = user
                .data
                .display_name
                .clone()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| account.clone());
            let (options, state) = webauthn
                .start_passkey_registration(
                    user.id.as_uuid(),
                    &account,
                    &display_name,
                    Some(exclude),
                )
                .map_err(|e| internal("starting a passkey registration", &e))?;
            let options = require_resident_key(options)?;
            let (challenge_id, expires_at) = inner.remember(
                conn,
                tenant,
                Some(user.id),
                &binding,
                &Ceremony::Registration(state),
            )?;
            Ok(RegistrationChallenge {
                challenge_id,
                options,
                expires_at,
            })
        })
        .await
    }

    /// Finishes adding a passkey with the browser's response, under `name` (see
    /// [`normalise_name`]). The challenge is spent whatever the outcome.
    /// [`AuthnError::ChallengeInvalid`], [`AuthnError::PasskeyRejected`], or
    /// [`AuthnError::PasskeyAlreadyRegistered`] for a credential the tenant knows.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_passkey_registration(
        &self,
        tenant: TenantId,
        user: UserId,
        binding: String,
        challenge_id: String,
        name: String,
        response: RegisterPublicKeyCredential,
        rp: RelyingParty,
        client: ClientInfo,
    ) -> Result<PasskeyInfo, AuthnError> {
        self.blocking(move |inner, conn| {
            let webauthn = rp.webauthn()?;
            let (owner, ceremony) =
                inner.take(conn, tenant, &challenge_id, Purpose::Registration, &binding)?;
            let Ceremony::Registration(state) = ceremony else {
                return Err(AuthnError::ChallengeInvalid);
            };
            if owner != Some(user) {
                return Err(AuthnError::ChallengeInvalid);
            }
            let passkey = webauthn
                .finish_passkey_registration(&response, &state)
                .map_err(rejected)?;
            let key = lookup_key(passkey.cred_id());
            let (stored, bytes) = StoredPasskey::encode(passkey)?;
            let name = normalise_name(&name);
            let now = inner.now();
            let credential = db::transaction_with(conn, |conn| {
                let new = NewCredential {
                    kind: CredentialKind::Webauthn,
                    label: Some(name.clone()),
                    secret: &bytes,
                };
                let credential = match credentials::create_with_lookup_key(
                    conn,
                    &inner.cipher,
                    now,
                    tenant,
                    user,
                    new,
                    &key,
                ) {
                    Err(StoreError::Conflict { .. }) => {
                        return Err(AuthnError::PasskeyAlreadyRegistered);
                    }
                    other => other?,
                };
                inner.audit(
                    conn,
                    tenant,
                    format!("user:{user}"),
                    "passkey.registered",
                    Some(format!("credential:{}", credential.id)),
                    Outcome::Success,
                    &client,
                    json!({
                        "name": name,
                        "backup_eligible": stored.flags.backup_eligible,
                        "backed_up": stored.flags.backup_state,
                    }),
                )?;
                Ok(credential)
            })?;
            inner.credentials_changed(tenant, user);
            Ok(stored.info(&credential))
        })
        .await
    }

    /// Starts a sign-in with a passkey. `None`: passwordless, in a modal dialog; the
    /// authenticator offers the discoverable credentials it holds for this relying
    /// party. `Some(user)`: a second factor for a user already known (after a
    /// password), limited to that user's passkeys that are not locked;
    /// [`AuthnError::NotEnrolled`] when they have none, [`AuthnError::Throttled`]
    /// (until the first unlocks) while every one of them is locked.
    pub async fn begin_passkey_authentication(
        &self,
        tenant: TenantId,
        binding: String,
        rp: RelyingParty,
        user: Option<UserId>,
    ) -> Result<AuthenticationChallenge, AuthnError> {
        self.blocking(move |inner, conn| {
            let Some(user) = user else {
                return inner.begin_passwordless(conn, tenant, &binding, &rp, false);
            };
            let now = inner.now();
            let mut passkeys: Vec<Passkey> = Vec::new();
            let mut unlocks: Option<DateTime<Utc>> = None;
            for (credential, stored) in inner.passkeys_of(conn, tenant, user)? {
                match rate_limits::get(conn, tenant, &credential_bucket(credential.id))? {
                    Some(counter) if counter.is_locked(now) => {
                        let until = counter.locked_until.unwrap_or(now);
                        unlocks = Some(unlocks.map_or(until, |first| first.min(until)));
                    }
                    _ => passkeys.push(stored.passkey),
                }
            }
            if passkeys.is_empty() {
                return Err(match unlocks {
                    Some(until) => AuthnError::Throttled { until: Some(until) },
                    None => AuthnError::NotEnrolled,
                });
            }
            let (options, state) = rp
                .webauthn()?
                .start_passkey_authentication(&passkeys)
                .map_err(|e| internal("starting a passkey sign-in", &e))?;
            let (challenge_id, expires_at) = inner.remember(
                conn,
                tenant,
                Some(user),
                &binding,
                &Ceremony::SecondFactor(state),
            )?;
            Ok(AuthenticationChallenge {
                challenge_id,
                options,
                expires_at,
            })
        })
        .await
    }

    /// Starts a passwordless sign-in through the browser's autofill (conditional
    /// UI: `mediation: "conditional"`), for the sign-in page to start on load and
    /// leave pending while the user types. Finished like any other.
    pub async fn begin_conditional_passkey_authentication(
        &self,
        tenant: TenantId,
        binding: String,
        rp: RelyingParty,
    ) -> Result<AuthenticationChallenge, AuthnError> {
        self.blocking(move |inner, conn| {
            inner.begin_passwordless(conn, tenant, &binding, &rp, true)
        })
        .await
    }

    /// Finishes a passkey sign-in with the browser's response: who it is and how.
    /// Opens no session. The challenge is spent whatever the outcome.
    /// [`AuthnError::ChallengeInvalid`]; [`AuthnError::PasskeyRejected`] for a
    /// response that does not verify (counted, audited as
    /// `passkey.authentication_failed`), [`AuthnError::Throttled`] while those
    /// lock the passkey or the client's address; [`AuthnError::InvalidCredentials`] for a disabled
    /// account.
    pub async fn finish_passkey_authentication(
        &self,
        tenant: TenantId,
        binding: String,
        challenge_id: String,
        response: PublicKeyCredential,
        rp: RelyingParty,
        client: ClientInfo,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        self.blocking(move |inner, conn| {
            inner.finish_authentication(
                conn,
                tenant,
                &binding,
                &challenge_id,
                &response,
                &rp,
                &client,
            )
        })
        .await
    }

    /// The user's passkeys, oldest first.
    pub async fn passkeys(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<PasskeyInfo>, AuthnError> {
        self.blocking(move |inner, conn| {
            Ok(inner
                .passkeys_of(conn, tenant, user)?
                .iter()
                .map(|(credential, stored)| stored.info(credential))
                .collect())
        })
        .await
    }

    /// Renames one of the user's passkeys ([`AuthnError::NotEnrolled`] if it is not
    /// theirs).
    pub async fn rename_passkey(
        &self,
        tenant: TenantId,
        user: UserId,
        passkey: CredentialId,
        name: String,
    ) -> Result<PasskeyInfo, AuthnError> {
        self.blocking(move |inner, conn| {
            inner.passkey_of(conn, tenant, user, passkey)?;
            credentials::set_label(conn, tenant, passkey, Some(&normalise_name(&name)))?;
            let credential = inner.passkey_of(conn, tenant, user, passkey)?;
            Ok(StoredPasskey::open(&credential, &inner.cipher)?.info(&credential))
        })
        .await
    }

    /// Removes one of the user's passkeys ([`AuthnError::NotEnrolled`] if it is not
    /// theirs). Whether the user may (a recent second factor, another way to sign
    /// in left) is the caller's decision.
    pub async fn remove_passkey(
        &self,
        tenant: TenantId,
        user: UserId,
        passkey: CredentialId,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        self.blocking(move |inner, conn| {
            db::transaction_with(conn, |conn| {
                let credential = inner.passkey_of(conn, tenant, user, passkey)?;
                match credentials::delete(conn, tenant, passkey) {
                    Err(StoreError::NotFound { .. }) => return Err(AuthnError::NotEnrolled),
                    other => other?,
                }
                // Recovery codes stand in for a second factor; with none left, they go.
                if !inner.factors(conn, tenant, user)?.any() {
                    crate::recovery_codes::remove_all(conn, tenant, user)?;
                }
                inner.audit(
                    conn,
                    tenant,
                    format!("user:{user}"),
                    "passkey.removed",
                    Some(format!("credential:{passkey}")),
                    Outcome::Success,
                    &client,
                    json!({ "name": credential.label }),
                )
            })?;
            inner.credentials_changed(tenant, user);
            Ok(())
        })
        .await
    }

    /// Housekeeping: deletes abandoned passkey ceremonies; returns how many.
    pub async fn prune_passkey_challenges(&self) -> Result<usize, AuthnError> {
        self.blocking(|inner, conn| Ok(webauthn_challenges::prune_expired(conn, inner.now())?))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use gatehouse_core::config::Config;
    use gatehouse_core::events::{DomainEvent, EventSubscription};

    use gatehouse_core::{Clock, ManualClock};
    use gatehouse_identity_store::db::Backend;

    use gatehouse_identity_store::testing::TestDb;
    use gatehouse_identity_store::users::{Email, UserData};
    use gatehouse_identity_store::{PageRequest, Pool, audit};
    use serde_json::Value;

    use super::*;
    use crate::testing::soft_authenticator::{Refusal, SoftAuthenticator};

    const ORIGIN: &str = "https://id.example.com";
    /// What the caller derives the binding from: the browser's cookie secret.
    const BROWSER: &str = "cookie-secret-of-the-browser";
    const IP: &str = "203.0.113.9";

    fn rp() -> RelyingParty {
        RelyingParty::for_origin(&Url::parse(ORIGIN).unwrap(), "Acme").unwrap()
    }

    fn from(ip: &str) -> ClientInfo {
        ClientInfo {
            ip: Some(ip.into()),
            user_agent: Some("test".into()),
            locale: None,
        }
    }

    fn json<T: Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    fn rejected_for(result: &Result<PasskeyAuthenticated, AuthnError>, words: &str) -> bool {
        matches!(result, Err(AuthnError::PasskeyRejected(reason)) if reason.contains(words))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    }

    /// The service on a throwaway database with one tenant.
    struct Env {
        authn: Authn,
        pool: Pool,
        clock: ManualClock,
        tenant: TenantId,
        events: EventSubscription,
        // Dropped last: the database outlives the service's connections.
        _dir: tempfile::TempDir,
        _db: TestDb,
    }

    impl Env {
        fn new(backend: Backend) -> Env {
            Env::with(backend, |_| {})
        }

        fn with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Env {
            let kit = crate::testing::kit::Kit::with(backend, Default::default(), |config| {
                // These tests hash real passwords at the default cost as before.
                config.passwords = Config::default().passwords;
                adjust(config);
            });
            Env {
                events: kit.bus.subscribe(),
                authn: kit.authn,
                pool: kit.pool,
                clock: kit.clock,
                tenant: kit.tenant.id,
                _dir: kit.dir,
                _db: kit.db,
            }
        }

        fn user(&self, name: &str) -> UserId {
            users::create(
                &mut self.pool.get().unwrap(),
                self.clock.now(),
                self.tenant,
                UserData {
                    emails: vec![Email {
                        value: format!("{name}@example.com"),
                        kind: None,
                        primary: true,
                        verified: true,
                    }],
                    ..UserData::new(name)
                },
            )
            .unwrap()
            .id
        }

        async fn begin_registration(&self, user: UserId) -> RegistrationChallenge {
            self.authn
                .begin_passkey_registration(self.tenant, user, BROWSER.into(), rp())
                .await
                .unwrap()
        }

        async fn finish_registration(
            &self,
            user: UserId,
            challenge_id: String,
            name: &str,
            response: Value,
        ) -> Result<PasskeyInfo, AuthnError> {
            self.authn
                .finish_passkey_registration(
                    self.tenant,
                    user,
                    BROWSER.into(),
                    challenge_id,
                    name.into(),
                    serde_json::from_value(response).unwrap(),
                    rp(),
                    from(IP),
                )
                .await
        }

        /// Registers a new credential of `authenticator` for `user`.
        async fn register(
            &self,
            user: UserId,
            authenticator: &mut SoftAuthenticator,
            name: &str,
        ) -> Result<PasskeyInfo, AuthnError> {
            let challenge = self.begin_registration(user).await;
            let response = authenticator.create(&json(&challenge.options)).unwrap();
            self.finish_registration(user, challenge.challenge_id, name, response)
                .await
        }

        async fn begin(&self, user: Option<UserId>) -> AuthenticationChallenge {
            self.authn
                .begin_passkey_authentication(self.tenant, BROWSER.into(), rp(), user)
                .await
                .unwrap()
        }

        async fn finish_as(
            &self,
            binding: &str,
            ip: &str,
            challenge_id: &str,
            response: Value,
        ) -> Result<PasskeyAuthenticated, AuthnError> {
            self.authn
                .finish_passkey_authentication(
                    self.tenant,
                    binding.into(),
                    challenge_id.into(),
                    serde_json::from_value(response).unwrap(),
                    rp(),
                    from(ip),
                )
                .await
        }

        async fn finish(
            &self,
            challenge_id: &str,
            response: Value,
        ) -> Result<PasskeyAuthenticated, AuthnError> {
            self.finish_as(BROWSER, IP, challenge_id, response).await
        }

        /// A whole sign-in: passwordless with `None`, a second factor with a user.
        async fn sign_in(
            &self,
            authenticator: &mut SoftAuthenticator,
            user: Option<UserId>,
        ) -> Result<PasskeyAuthenticated, AuthnError> {
            self.sign_in_with(authenticator, user, 0).await
        }

        /// [`Env::sign_in`] from [`IP`] (`0`) or another address (`1`).
        async fn sign_in_with(
            &self,
            authenticator: &mut SoftAuthenticator,
            user: Option<UserId>,
            address: usize,
        ) -> Result<PasskeyAuthenticated, AuthnError> {
            let challenge = self.begin(user).await;
            let response = authenticator.get(&json(&challenge.options)).unwrap();
            let ip = [IP, "198.51.100.4"][address];
            self.finish_as(BROWSER, ip, &challenge.challenge_id, response)
                .await
        }

        async fn passkeys(&self, user: UserId) -> Vec<PasskeyInfo> {
            self.authn.passkeys(self.tenant, user).await.unwrap()
        }

        fn failures(&self, bucket: &str) -> Option<i32> {
            rate_limits::get(&mut self.pool.get().unwrap(), self.tenant, bucket)
                .unwrap()
                .map(|counter| counter.failures)
        }

        /// Every audit action so far, in order; the chain must be intact.
        fn actions(&self) -> Vec<String> {
            let mut conn = self.pool.get().unwrap();
            assert!(
                audit::verify(&mut conn, &self.authn.inner.cipher)
                    .unwrap()
                    .is_intact()
            );
            audit::list(&mut conn, self.tenant, &PageRequest::first(500))
                .unwrap()
                .items
                .into_iter()
                .map(|event| event.action)
                .collect()
        }

        /// How many `CredentialsChanged` events were published since the last call.
        fn credentials_changed(&mut self) -> usize {
            std::iter::from_fn(|| self.events.try_next())
                .filter(|envelope| {
                    matches!(envelope.event, DomainEvent::CredentialsChanged { tenant, .. } if tenant == self.tenant)
                })
                .count()
        }
    }

    gatehouse_identity_store::on_both_backends!(
        registers_then_signs_in_without_a_user_name,
        a_passkey_is_a_second_factor_for_a_known_user,
        a_response_from_another_origin_is_refused,
        a_challenge_is_used_once,
        a_challenge_is_bound_to_the_browser_that_began_it,
        an_expired_challenge_is_refused,
        a_signature_counter_that_does_not_move_forward_is_refused,
        user_verification_is_required,
        a_removed_passkey_no_longer_signs_in,
        several_passkeys_are_listed_with_their_names,
        backup_state_is_stored_and_follows_the_authenticator,
        failed_assertions_lock_the_passkey_with_a_backoff,
        a_passkey_locked_everywhere_throttles_the_second_factor,
        failed_assertions_lock_the_address_until_a_success_or_the_lockout,
        passwordless_failures_get_the_generous_password_limits_by_default,
        a_disabled_account_cannot_sign_in,
        a_cloned_authenticator_racing_the_original_passes_once,
    );

    fn registers_then_signs_in_without_a_user_name(backend: Backend) {
        let mut env = Env::new(backend);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let challenge = env.begin_registration(alice).await;
            assert_eq!(challenge.expires_at, env.clock.now() + Duration::minutes(5));
            assert!(!format!("{challenge:?}").contains(&challenge.challenge_id));
            let options = json(&challenge.options);
            let public_key = &options["publicKey"];
            assert_eq!(
                public_key["rp"],
                json!({ "id": "id.example.com", "name": "Acme" })
            );
            assert_eq!(public_key["user"]["name"], "alice@example.com");
            assert_eq!(
                public_key["user"]["id"],
                URL_SAFE_NO_PAD.encode(alice.as_uuid().as_bytes())
            );
            let selection = &public_key["authenticatorSelection"];
            assert_eq!(selection["residentKey"], "required");
            assert_eq!(selection["requireResidentKey"], true);
            assert_eq!(selection["userVerification"], "required");
            assert_eq!(public_key["timeout"], 300_000);

            let response = phone.create(&options).unwrap();
            let registered = env
                .finish_registration(alice, challenge.challenge_id, "Phone", response)
                .await
                .unwrap();
            assert_eq!(registered.name, "Phone");
            assert_eq!(registered.created_at, env.clock.now());
            assert_eq!(registered.last_used_at, None);
            assert_eq!(env.passkeys(alice).await, std::slice::from_ref(&registered));

            // A sign-in button: the modal dialog, any discoverable credential.
            env.clock.advance(Duration::minutes(1));
            let challenge = env.begin(None).await;
            let options = json(&challenge.options);
            assert_eq!(options.get("mediation"), None);
            assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
            assert_eq!(options["publicKey"]["userVerification"], "required");
            assert_eq!(options["publicKey"]["rpId"], "id.example.com");
            let response = phone.get(&options).unwrap();
            let signed_in = env.finish(&challenge.challenge_id, response).await.unwrap();
            assert_eq!(
                signed_in,
                PasskeyAuthenticated {
                    user_id: alice,
                    credential_id: registered.id,
                    user_verified: true,
                    backup_eligible: false,
                    backed_up: false,
                    discoverable: true,
                }
            );
            assert_eq!(
                env.passkeys(alice).await[0].last_used_at,
                Some(env.clock.now())
            );

            // Autofill: the same ceremony, mediated by the browser's form filling.
            let challenge = env
                .authn
                .begin_conditional_passkey_authentication(env.tenant, BROWSER.into(), rp())
                .await
                .unwrap();
            let options = json(&challenge.options);
            assert_eq!(options["mediation"], "conditional");
            assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
            let response = phone.get(&options).unwrap();
            let signed_in = env.finish(&challenge.challenge_id, response).await.unwrap();
            assert_eq!((signed_in.user_id, signed_in.discoverable), (alice, true));
        });
        assert_eq!(env.actions(), ["passkey.registered"]);
        assert_eq!(env.credentials_changed(), 1);
    }

    fn a_passkey_is_a_second_factor_for_a_known_user(backend: Backend) {
        let env = Env::new(backend);
        let (alice, bob, carol) = (env.user("alice"), env.user("bob"), env.user("carol"));
        let mut laptop = SoftAuthenticator::new(ORIGIN);
        let mut key = SoftAuthenticator::new(ORIGIN);
        let mut bobs = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut laptop, "Laptop").await.unwrap();
            let on_key = env.register(alice, &mut key, "Key").await.unwrap();
            let bobs_passkey = env.register(bob, &mut bobs, "Bob's").await.unwrap();

            let challenge = env.begin(Some(alice)).await;
            let options = json(&challenge.options);
            let allowed: Vec<&str> = options["publicKey"]["allowCredentials"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect();
            let alices = [
                lookup_key(&laptop.credentials[0].id),
                lookup_key(&key.credentials[0].id),
            ];
            assert_eq!(allowed, alices, "exactly alice's passkeys");
            assert_eq!(options["publicKey"]["userVerification"], "required");
            assert_eq!(options.get("mediation"), None);

            // Bob's passkey answering alice's challenge (a tampered client).
            let bobs_id = bobs.credentials[0].id.clone();
            let wrong = env
                .finish(
                    &challenge.challenge_id,
                    bobs.assert_with(&options, &bobs_id),
                )
                .await;
            assert!(rejected_for(&wrong, "not one of the user's"), "{wrong:?}");
            assert_eq!(env.failures(&address_bucket(IP)), Some(1));
            assert_eq!(
                env.failures(&credential_bucket(bobs_passkey.id)),
                None,
                "bob was not signing in"
            );

            let challenge = env.begin(Some(alice)).await;
            let response = key.get(&json(&challenge.options)).unwrap();
            let passed = env.finish(&challenge.challenge_id, response).await.unwrap();
            assert_eq!(
                passed,
                PasskeyAuthenticated {
                    user_id: alice,
                    credential_id: on_key.id,
                    user_verified: true,
                    backup_eligible: false,
                    backed_up: false,
                    discoverable: false,
                }
            );
            assert_eq!(
                env.failures(&address_bucket(IP)),
                None,
                "a success forgets the failures"
            );

            let none = env
                .authn
                .begin_passkey_authentication(env.tenant, BROWSER.into(), rp(), Some(carol))
                .await;
            assert!(matches!(none, Err(AuthnError::NotEnrolled)), "{none:?}");
        });
        assert_eq!(
            env.actions(),
            [
                "passkey.registered",
                "passkey.registered",
                "passkey.registered",
                "passkey.authentication_failed"
            ]
        );
    }

    fn a_response_from_another_origin_is_refused(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        // The browser reports where the page really was: a look-alike site.
        let mut phished = SoftAuthenticator::new("https://id.example.com.evil.test");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let refused = env.register(alice, &mut phished, "Phone").await;
            assert!(
                matches!(&refused, Err(AuthnError::PasskeyRejected(reason)) if reason.contains("origin")),
                "{refused:?}"
            );
            assert!(env.passkeys(alice).await.is_empty());

            env.register(alice, &mut phone, "Phone").await.unwrap();
            phone.origin = "https://evil.test".into();
            let refused = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&refused, "another origin"), "{refused:?}");
            let refused = env.sign_in(&mut phone, Some(alice)).await;
            assert!(rejected_for(&refused, "another origin"), "{refused:?}");
            // Another port is another origin too.
            phone.origin = "https://id.example.com:8443".into();
            let refused = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&refused, "another origin"), "{refused:?}");

            // Three failures of the passkey: the next attempt waits a second.
            env.clock.advance(Duration::seconds(1));
            phone.origin = ORIGIN.into();
            env.sign_in(&mut phone, None).await.unwrap();
        });
    }

    fn a_challenge_is_used_once(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let challenge = env.begin_registration(alice).await;
            let response = phone.create(&json(&challenge.options)).unwrap();
            env.finish_registration(
                alice,
                challenge.challenge_id.clone(),
                "Phone",
                response.clone(),
            )
            .await
            .unwrap();
            let again = env
                .finish_registration(alice, challenge.challenge_id, "Phone", response)
                .await;
            assert!(
                matches!(again, Err(AuthnError::ChallengeInvalid)),
                "{again:?}"
            );

            let challenge = env.begin(None).await;
            let options = json(&challenge.options);
            let response = phone.get(&options).unwrap();
            env.finish(&challenge.challenge_id, response.clone())
                .await
                .unwrap();
            let replayed = env.finish(&challenge.challenge_id, response).await;
            assert!(
                matches!(replayed, Err(AuthnError::ChallengeInvalid)),
                "{replayed:?}"
            );
            let fresh_answer = phone.get(&options).unwrap();
            let reused = env.finish(&challenge.challenge_id, fresh_answer).await;
            assert!(
                matches!(reused, Err(AuthnError::ChallengeInvalid)),
                "{reused:?}"
            );

            // A failed attempt spends the challenge too.
            let challenge = env.begin(None).await;
            let options = json(&challenge.options);
            phone.user_verification = false;
            let failed = env
                .finish(&challenge.challenge_id, phone.get(&options).unwrap())
                .await;
            assert!(rejected_for(&failed, "verify the user"), "{failed:?}");
            phone.user_verification = true;
            let retried = env
                .finish(&challenge.challenge_id, phone.get(&options).unwrap())
                .await;
            assert!(
                matches!(retried, Err(AuthnError::ChallengeInvalid)),
                "{retried:?}"
            );

            // A registration challenge does not finish a sign-in.
            let registration = env.begin_registration(alice).await;
            let crossed = env
                .finish(&registration.challenge_id, phone.get(&options).unwrap())
                .await;
            assert!(
                matches!(crossed, Err(AuthnError::ChallengeInvalid)),
                "{crossed:?}"
            );
        });
    }

    fn a_challenge_is_bound_to_the_browser_that_began_it(backend: Backend) {
        let env = Env::new(backend);
        let (alice, bob) = (env.user("alice"), env.user("bob"));
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut phone, "Phone").await.unwrap();

            let challenge = env.begin(None).await;
            let response = phone.get(&json(&challenge.options)).unwrap();
            let elsewhere = env
                .finish_as(
                    "cookie-secret-of-another-browser",
                    IP,
                    &challenge.challenge_id,
                    response.clone(),
                )
                .await;
            assert!(
                matches!(elsewhere, Err(AuthnError::ChallengeInvalid)),
                "{elsewhere:?}"
            );
            let then_here = env.finish(&challenge.challenge_id, response).await;
            assert!(
                matches!(then_here, Err(AuthnError::ChallengeInvalid)),
                "a challenge shown to another browser is spent: {then_here:?}"
            );

            let challenge = env.begin(None).await;
            let response = phone.get(&json(&challenge.options)).unwrap();
            let unbound = env
                .finish_as("", IP, &challenge.challenge_id, response)
                .await;
            assert!(
                matches!(unbound, Err(AuthnError::Internal(_))),
                "{unbound:?}"
            );

            // A registration is also bound to its user.
            let challenge = env.begin_registration(alice).await;
            let response = phone.create(&json(&challenge.options)).unwrap_err();
            assert_eq!(response, Refusal::InvalidState, "alice's phone is excluded");
            let mut laptop = SoftAuthenticator::new(ORIGIN);
            let response = laptop.create(&json(&challenge.options)).unwrap();
            let for_bob = env
                .finish_registration(bob, challenge.challenge_id, "Laptop", response)
                .await;
            assert!(
                matches!(for_bob, Err(AuthnError::ChallengeInvalid)),
                "{for_bob:?}"
            );
            assert!(env.passkeys(bob).await.is_empty());
        });
    }

    fn an_expired_challenge_is_refused(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let challenge = env.begin_registration(alice).await;
            let response = phone.create(&json(&challenge.options)).unwrap();
            env.clock
                .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES));
            let late = env
                .finish_registration(alice, challenge.challenge_id, "Phone", response)
                .await;
            assert!(
                matches!(late, Err(AuthnError::ChallengeInvalid)),
                "{late:?}"
            );

            let mut phone = SoftAuthenticator::new(ORIGIN);
            env.register(alice, &mut phone, "Phone").await.unwrap();
            let challenge = env.begin(None).await;
            let response = phone.get(&json(&challenge.options)).unwrap();
            env.clock
                .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES) - Duration::seconds(1));
            env.finish(&challenge.challenge_id, response)
                .await
                .expect("just in time");

            let challenge = env.begin(Some(alice)).await;
            let response = phone.get(&json(&challenge.options)).unwrap();
            env.clock
                .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES));
            let late = env.finish(&challenge.challenge_id, response).await;
            assert!(
                matches!(late, Err(AuthnError::ChallengeInvalid)),
                "{late:?}"
            );

            // Abandoned ceremonies are pruned once expired.
            env.begin(None).await;
            env.begin_registration(alice).await;
            assert_eq!(env.authn.prune_passkey_challenges().await.unwrap(), 0);
            env.clock
                .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES));
            assert_eq!(env.authn.prune_passkey_challenges().await.unwrap(), 2);
        });
        assert_eq!(
            env.failures(&address_bucket(IP)),
            None,
            "late answers are no guesses"
        );
    }

    fn a_signature_counter_that_does_not_move_forward_is_refused(backend: Backend) {
        let env = Env::new(backend);
        let (alice, bob) = (env.user("alice"), env.user("bob"));
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut phone, "Phone").await.unwrap();
            env.sign_in(&mut phone, None).await.unwrap();
            env.sign_in(&mut phone, Some(alice)).await.unwrap();
            let id = phone.credentials[0].id.clone();
            assert_eq!(phone.credential(&id).counter, 2);

            // A clone still at 1 answers with 2: not above the stored 2.
            phone.credential(&id).counter = 1;
            let cloned = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&cloned, "counter"), "{cloned:?}");
            phone.credential(&id).counter = 0;
            let cloned = env.sign_in(&mut phone, Some(alice)).await;
            assert!(rejected_for(&cloned, "counter"), "{cloned:?}");

            // The original goes on from where it was.
            phone.credential(&id).counter = 2;
            env.sign_in(&mut phone, None).await.unwrap();
            env.sign_in(&mut phone, None).await.unwrap();

            // Synced passkeys have no counter (always 0): nothing to compare.
            let mut synced = SoftAuthenticator::new(ORIGIN);
            synced.counter_step = 0;
            env.register(bob, &mut synced, "Synced").await.unwrap();
            for _ in 0..3 {
                assert_eq!(env.sign_in(&mut synced, None).await.unwrap().user_id, bob);
            }
        });
    }

    fn user_verification_is_required(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        let mut key = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            key.user_verification = false;
            let refused = env.register(alice, &mut key, "Key").await;
            assert!(
                matches!(&refused, Err(AuthnError::PasskeyRejected(reason)) if reason.contains("verify the user")),
                "{refused:?}"
            );
            assert!(env.passkeys(alice).await.is_empty());

            // The refused credential stays on the authenticator; start with another.
            let mut key = SoftAuthenticator::new(ORIGIN);
            env.register(alice, &mut key, "Key").await.unwrap();
            key.user_verification = false;
            let passwordless = env.sign_in(&mut key, None).await;
            assert!(rejected_for(&passwordless, "verify the user"), "{passwordless:?}");
            let second_factor = env.sign_in(&mut key, Some(alice)).await;
            assert!(rejected_for(&second_factor, "verify the user"), "{second_factor:?}");
            assert_eq!(env.passkeys(alice).await[0].last_used_at, None, "failures are not uses");

            key.user_verification = true;
            assert!(env.sign_in(&mut key, None).await.unwrap().user_verified);
        });
    }

    fn a_removed_passkey_no_longer_signs_in(backend: Backend) {
        let mut env = Env::new(backend);
        let (alice, bob) = (env.user("alice"), env.user("bob"));
        let mut phone = SoftAuthenticator::new(ORIGIN);
        let mut key = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let on_phone = env.register(alice, &mut phone, "Phone").await.unwrap();
            let on_key = env.register(alice, &mut key, "Key").await.unwrap();
            assert_eq!(env.credentials_changed(), 2);

            let not_bobs = env
                .authn
                .remove_passkey(env.tenant, bob, on_phone.id, from(IP))
                .await;
            assert!(
                matches!(not_bobs, Err(AuthnError::NotEnrolled)),
                "{not_bobs:?}"
            );
            env.authn
                .remove_passkey(env.tenant, alice, on_phone.id, from(IP))
                .await
                .unwrap();
            assert_eq!(env.credentials_changed(), 1);
            assert_eq!(env.passkeys(alice).await, std::slice::from_ref(&on_key));
            let again = env
                .authn
                .remove_passkey(env.tenant, alice, on_phone.id, from(IP))
                .await;
            assert!(matches!(again, Err(AuthnError::NotEnrolled)), "{again:?}");

            let removed = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&removed, "not registered"), "{removed:?}");
            // Nobody is known to blame: the failure counts against the client.
            assert_eq!(env.failures(&address_bucket(IP)), Some(1));
            assert_eq!(env.failures(&credential_bucket(on_phone.id)), None);

            let challenge = env.begin(Some(alice)).await;
            let options = json(&challenge.options);
            assert_eq!(
                options["publicKey"]["allowCredentials"]
                    .as_array()
                    .unwrap()
                    .len(),
                1,
                "only the key is offered"
            );
            let phone_id = phone.credentials[0].id.clone();
            let removed = env
                .finish(
                    &challenge.challenge_id,
                    phone.assert_with(&options, &phone_id),
                )
                .await;
            assert!(rejected_for(&removed, "not registered"), "{removed:?}");
            assert_eq!(
                env.sign_in(&mut key, Some(alice))
                    .await
                    .unwrap()
                    .credential_id,
                on_key.id
            );
        });
        assert_eq!(
            env.actions(),
            [
                "passkey.registered",
                "passkey.registered",
                "passkey.removed",
                "passkey.authentication_failed",
                "passkey.authentication_failed"
            ]
        );
    }

    fn several_passkeys_are_listed_with_their_names(backend: Backend) {
        let env = Env::new(backend);
        let (alice, bob) = (env.user("alice"), env.user("bob"));
        let mut laptop = SoftAuthenticator::new(ORIGIN);
        let mut phone = SoftAuthenticator::new(ORIGIN);
        let mut key = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let first = env
                .register(alice, &mut laptop, "  Work \n laptop ")
                .await
                .unwrap();
            env.clock.advance(Duration::minutes(1));
            let second = env.register(alice, &mut phone, " ").await.unwrap();
            env.clock.advance(Duration::minutes(1));
            let third = env
                .register(alice, &mut key, &"k".repeat(100))
                .await
                .unwrap();
            let listed = env.passkeys(alice).await;
            assert_eq!(
                listed,
                [first.clone(), second.clone(), third.clone()],
                "oldest first"
            );
            let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(
                names,
                ["Work laptop", DEFAULT_NAME, &"k".repeat(NAME_MAX_CHARS)]
            );
            assert!(listed[0].created_at < listed[1].created_at);
            assert!(env.passkeys(bob).await.is_empty());

            let renamed = env
                .authn
                .rename_passkey(env.tenant, alice, second.id, "Old phone".into())
                .await
                .unwrap();
            assert_eq!(
                renamed,
                PasskeyInfo {
                    name: "Old phone".into(),
                    ..second.clone()
                }
            );
            assert_eq!(env.passkeys(alice).await[1].name, "Old phone");
            let not_bobs = env
                .authn
                .rename_passkey(env.tenant, bob, second.id, "Mine".into())
                .await;
            assert!(
                matches!(not_bobs, Err(AuthnError::NotEnrolled)),
                "{not_bobs:?}"
            );

            // The next registration excludes all three.
            let challenge = env.begin_registration(alice).await;
            let options = json(&challenge.options);
            let excluded = options["publicKey"]["excludeCredentials"]
                .as_array()
                .unwrap()
                .len();
            assert_eq!(excluded, 3);
            assert_eq!(phone.create(&options).unwrap_err(), Refusal::InvalidState);
            // An authenticator that ignores the exclusion is refused by the server.
            let phone_id = phone.credentials[0].id.clone();
            let twice = env
                .finish_registration(
                    alice,
                    challenge.challenge_id,
                    "Again",
                    phone.create_again(&options, &phone_id),
                )
                .await;
            assert!(
                matches!(
                    twice,
                    Err(AuthnError::PasskeyRejected(_) | AuthnError::PasskeyAlreadyRegistered)
                ),
                "{twice:?}"
            );
            // Nor can another account claim the same credential.
            let challenge = env.begin_registration(bob).await;
            let options = json(&challenge.options);
            let stolen = env
                .finish_registration(
                    bob,
                    challenge.challenge_id,
                    "Mine",
                    phone.create_again(&options, &phone_id),
                )
                .await;
            assert!(
                matches!(stolen, Err(AuthnError::PasskeyAlreadyRegistered)),
                "{stolen:?}"
            );
            assert!(env.passkeys(bob).await.is_empty());
            assert_eq!(env.passkeys(alice).await.len(), 3);
        });
    }

    fn backup_state_is_stored_and_follows_the_authenticator(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        let mut synced = SoftAuthenticator::new(ORIGIN);
        synced.backup_eligible = true;
        runtime().block_on(async {
            let registered = env.register(alice, &mut synced, "Synced").await.unwrap();
            assert!(registered.backup_eligible);
            assert!(!registered.backed_up);

            synced.backed_up = true;
            let signed_in = env.sign_in(&mut synced, None).await.unwrap();
            assert!(signed_in.backup_eligible && signed_in.backed_up);
            let listed = env.passkeys(alice).await;
            assert!(
                listed[0].backup_eligible && listed[0].backed_up,
                "{listed:?}"
            );

            synced.backed_up = false;
            let signed_in = env.sign_in(&mut synced, Some(alice)).await.unwrap();
            assert!(!signed_in.backed_up);
            assert!(!env.passkeys(alice).await[0].backed_up);
        });
    }

    /// Limits small enough to walk through: backoff from the 2nd failure of a
    /// passkey, its lockout at the 4th, an address's lockout at the 6th.
    fn small_limits(config: &mut Config) {
        config.passkeys.credential_backoff_after = 2;
        config.passkeys.credential_lockout_threshold = 4;
        config.passkeys.ip_lockout_threshold = 6;
        config.passkeys.lockout_mins = 10;
    }

    fn failed_assertions_lock_the_passkey_with_a_backoff(backend: Backend) {
        let env = Env::with(backend, small_limits);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        let mut key = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let on_phone = env.register(alice, &mut phone, "Phone").await.unwrap();
            let phone_bucket = credential_bucket(on_phone.id);

            phone.user_verification = false;
            let refused = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&refused, "verify the user"), "{refused:?}");
            assert_eq!(env.failures(&phone_bucket), Some(1));
            assert_eq!(env.failures(&address_bucket(IP)), Some(1));
            // From the second failure on, each further attempt waits longer.
            for wait in [Duration::seconds(1), Duration::seconds(2)] {
                let refused = env.sign_in(&mut phone, None).await;
                assert!(rejected_for(&refused, "verify the user"), "{refused:?}");
                match env.sign_in(&mut phone, None).await {
                    Err(AuthnError::Throttled { until }) => {
                        assert_eq!(until, Some(env.clock.now() + wait));
                    }
                    other => panic!("expected a backoff of {wait}, got {other:?}"),
                }
                env.clock.advance(wait);
            }
            let refused = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&refused, "verify the user"), "{refused:?}");
            match env.sign_in(&mut phone, None).await {
                Err(AuthnError::Throttled { until }) => {
                    assert_eq!(until, Some(env.clock.now() + Duration::minutes(10)));
                }
                other => panic!("expected a lockout, got {other:?}"),
            }
            assert_eq!(
                env.failures(&phone_bucket),
                Some(4),
                "refusals while locked are not counted"
            );

            // Locked wherever it is used, even from another address, and left out of
            // a second factor's options while the user's other passkey is not.
            phone.user_verification = true;
            let elsewhere = env.sign_in_with(&mut phone, None, 1).await;
            assert!(
                matches!(elsewhere, Err(AuthnError::Throttled { .. })),
                "{elsewhere:?}"
            );
            env.register(alice, &mut key, "Key").await.unwrap();
            let options = json(&env.begin(Some(alice)).await.options);
            let allowed: Vec<&str> = options["publicKey"]["allowCredentials"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect();
            assert_eq!(allowed, [lookup_key(&key.credentials[0].id)]);
            env.sign_in(&mut key, Some(alice)).await.unwrap();
            assert_eq!(env.failures(&address_bucket(IP)), None);
            assert_eq!(
                env.failures(&phone_bucket),
                Some(4),
                "another passkey's success forgets nothing of this one"
            );

            env.clock.advance(Duration::minutes(10));
            env.sign_in(&mut phone, None).await.expect("unlocked");
            assert_eq!(env.failures(&phone_bucket), None, "a success forgets");
        });
    }

    fn a_passkey_locked_everywhere_throttles_the_second_factor(backend: Backend) {
        let env = Env::with(backend, small_limits);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut phone, "Phone").await.unwrap();
            phone.user_verification = false;
            for _ in 0..4 {
                let _ = env.sign_in_with(&mut phone, Some(alice), 0).await;
                env.clock.advance(Duration::seconds(10));
            }
            let begin = env
                .authn
                .begin_passkey_authentication(env.tenant, BROWSER.into(), rp(), Some(alice))
                .await;
            match begin {
                Err(AuthnError::Throttled { until }) => assert_eq!(
                    until,
                    Some(env.clock.now() - Duration::seconds(10) + Duration::minutes(10))
                ),
                other => panic!("expected a lockout, got {other:?}"),
            }
        });
    }

    fn failed_assertions_lock_the_address_until_a_success_or_the_lockout(backend: Backend) {
        let env = Env::with(backend, small_limits);
        let (alice, bob) = (env.user("alice"), env.user("bob"));
        let mut phone = SoftAuthenticator::new(ORIGIN);
        let mut stranger = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut phone, "Phone").await.unwrap();
            // A credential nobody registered: only the address is there to blame.
            let challenge = env.begin_registration(bob).await;
            stranger.create(&json(&challenge.options)).unwrap();
            for _ in 1..6 {
                let unknown = env.sign_in(&mut stranger, None).await;
                assert!(rejected_for(&unknown, "not registered"), "{unknown:?}");
            }
            assert_eq!(env.failures(&address_bucket(IP)), Some(5));

            // Someone at that address signs in: the address's count starts again.
            env.sign_in(&mut phone, None).await.unwrap();
            assert_eq!(env.failures(&address_bucket(IP)), None);
            for _ in 1..=6 {
                let unknown = env.sign_in(&mut stranger, None).await;
                assert!(rejected_for(&unknown, "not registered"), "{unknown:?}");
            }
            match env.sign_in(&mut stranger, None).await {
                Err(AuthnError::Throttled { until }) => {
                    assert_eq!(until, Some(env.clock.now() + Duration::minutes(10)));
                }
                other => panic!("expected a lockout, got {other:?}"),
            }
            let same_address = env.sign_in(&mut phone, None).await;
            assert!(
                matches!(same_address, Err(AuthnError::Throttled { .. })),
                "{same_address:?}"
            );
            let second_factor = env.sign_in(&mut phone, Some(alice)).await;
            assert!(
                matches!(second_factor, Err(AuthnError::Throttled { .. })),
                "{second_factor:?}"
            );
            let elsewhere = env.sign_in_with(&mut phone, None, 1).await.unwrap();
            assert_eq!(elsewhere.user_id, alice);
            env.clock.advance(Duration::minutes(10));
            env.sign_in(&mut phone, None)
                .await
                .expect("the lockout lapsed");
        });
        let failures = env
            .actions()
            .iter()
            .filter(|action| *action == "passkey.authentication_failed")
            .count();
        assert_eq!(failures, 11, "refusals while locked are not audited");
    }

    fn passwordless_failures_get_the_generous_password_limits_by_default(backend: Backend) {
        let env = Env::new(backend);
        let bob = env.user("bob");
        let mut stranger = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            let challenge = env.begin_registration(bob).await;
            stranger.create(&json(&challenge.options)).unwrap();
            // Five locked an address for a minute, doubling up to 17 hours.
            for _ in 0..20 {
                let unknown = env.sign_in(&mut stranger, None).await;
                assert!(rejected_for(&unknown, "not registered"), "{unknown:?}");
            }
            assert_eq!(env.failures(&address_bucket(IP)), Some(20));
        });
        assert_eq!(
            env.authn.settings().passkey_ip_lockout_threshold,
            env.authn.settings().ip_lockout_threshold
        );
    }

    fn a_cloned_authenticator_racing_the_original_passes_once(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut phone, "Phone").await.unwrap();
            let id = phone.credentials[0].id.clone();
            // Two sign-ins, each with its own challenge, both signed with counter 1.
            let first = env.begin(None).await;
            let first_response = phone.get(&json(&first.options)).unwrap();
            phone.credential(&id).counter = 0;
            let second = env.begin(Some(alice)).await;
            let second_response = phone.get(&json(&second.options)).unwrap();
            let (a, b) = tokio::join!(
                env.finish(&first.challenge_id, first_response),
                env.finish(&second.challenge_id, second_response),
            );
            let results = [a, b];
            assert_eq!(
                results.iter().filter(|r| r.is_ok()).count(),
                1,
                "{results:?}"
            );
            assert!(
                results.iter().any(|r| rejected_for(r, "counter")),
                "{results:?}"
            );
        });
    }

    fn a_disabled_account_cannot_sign_in(backend: Backend) {
        let env = Env::new(backend);
        let alice = env.user("alice");
        let mut phone = SoftAuthenticator::new(ORIGIN);
        runtime().block_on(async {
            env.register(alice, &mut phone, "Phone").await.unwrap();
            let mut conn = env.pool.get().unwrap();
            let user = users::get(&mut conn, env.tenant, alice).unwrap();
            users::update(
                &mut conn,
                env.clock.now(),
                env.tenant,
                alice,
                user.version,
                UserData {
                    active: false,
                    ..user.data
                },
            )
            .unwrap();
            drop(conn);
            let disabled = env.sign_in(&mut phone, None).await;
            assert!(
                matches!(disabled, Err(AuthnError::InvalidCredentials)),
                "{disabled:?}"
            );
            assert_eq!(env.failures(&address_bucket(IP)), None, "not a guess");
        });
        assert_eq!(
            env.actions(),
            ["passkey.registered", "passkey.authentication_failed"]
        );
    }

    #[test]
    fn passkey_names_are_tidied() {
        assert_eq!(normalise_name("  My \t phone\n"), "My phone");
        assert_eq!(normalise_name(""), DEFAULT_NAME);
        assert_eq!(normalise_name(" \u{7} "), DEFAULT_NAME);
        assert_eq!(normalise_name("a\u{0}b"), "ab");
        assert_eq!(
            normalise_name(&"é".repeat(80)).chars().count(),
            NAME_MAX_CHARS
        );
    }

    #[test]
    fn the_relying_party_is_the_tenants_origin() {
        let url = |text: &str| Url::parse(text).unwrap();
        let rp = RelyingParty::for_origin(&url("https://id.example.com/t/acme/signin?x=1"), "Acme")
            .unwrap();
        assert_eq!(rp.id(), "id.example.com");
        assert_eq!(rp.origin().as_str(), "https://id.example.com/");
        let local = RelyingParty::for_origin(&url("http://localhost:8080"), "Dev").unwrap();
        assert_eq!(
            (local.id(), local.origin().as_str()),
            ("localhost", "http://localhost:8080/")
        );
        let parent = RelyingParty::new("example.com", &url("https://id.example.com"), "").unwrap();
        assert_eq!(parent.id(), "example.com");

        for (id, origin) in [
            ("127.0.0.1", "http://127.0.0.1:8080"),
            ("[::1]", "http://[::1]:8080"),
            ("other.example", "https://id.example.com"),
            ("ample.com", "https://id.example.com"),
        ] {
            assert!(
                matches!(
                    RelyingParty::new(id, &url(origin), "x"),
                    Err(AuthnError::Internal(_))
                ),
                "{id} for {origin}"
            );
        }
        assert!(RelyingParty::for_origin(&url("http://127.0.0.1:8080"), "x").is_err());
    }
}
