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
//! A password reset's proof is a ceremony of its own ([`Authn::begin_reset_passkey`]):
//! for the reset link's user, bound to that link as well as the browser, and
//! finished only by [`Authn::complete_password_reset`]; each kind of ceremony is
//! refused by the others' finish.
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

/// A ceremony begun: the options for the browser and the id that finishes it.
pub struct Challenge<Options> {
    pub challenge_id: String,
    /// Serialise as JSON for the page (`PublicKeyCredential.parseCreationOptionsFromJSON`,
    /// `PublicKeyCredential.parseRequestOptionsFromJSON`).
    pub options: Options,
    pub expires_at: DateTime<Utc>,
}

impl<Options> fmt::Debug for Challenge<Options> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A registration begun: the options for `navigator.credentials.create()` and the
/// id that finishes it.
pub type RegistrationChallenge = Challenge<CreationChallengeResponse>;

/// A sign-in begun: the options for `navigator.credentials.get()` (with
/// `mediation: "conditional"` for autofill) and the id that finishes it.
pub type AuthenticationChallenge = Challenge<RequestChallengeResponse>;

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
    /// A password reset's proof: only for the user of the reset link whose digest
    /// it names, so it answers neither a sign-in nor another link.
    Reset {
        link: String,
        state: PasskeyAuthentication,
    },
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
    /// The proof of a password reset: only this user's passkeys.
    Reset(UserId),
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::SecondFactor(_) => "second_factor",
            Flow::Passwordless => "passwordless",
            Flow::Reset(_) => "password_reset",
        }
    }

    /// The user the ceremony was begun for, when it was.
    fn known_user(self) -> Option<UserId> {
        match self {
            Flow::SecondFactor(user) | Flow::Reset(user) => Some(user),
            Flow::Passwordless => None,
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
            Ceremony::SecondFactor(_) | Ceremony::Passwordless(_) | Ceremony::Reset { .. } => {
                Purpose::Authentication
            }
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

    /// Finishes a sign-in ceremony, or with `reset_link` (the reset token's digest)
    /// a password reset's: a ceremony is accepted only by the kind of finish it was
    /// begun for.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_authentication(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        binding: &str,
        challenge_id: &str,
        response: &PublicKeyCredential,
        rp: &RelyingParty,
        client: &ClientInfo,
        reset_link: Option<&str>,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        let webauthn = rp.webauthn()?;
        let now = self.now();
        let (expected, ceremony) =
            self.take(conn, tenant, challenge_id, Purpose::Authentication, binding)?;
        let (flow, state) = match (ceremony, expected, reset_link) {
            (Ceremony::SecondFactor(state), Some(user), None) => {
                (Flow::SecondFactor(user), as_single_credential(state)?)
            }
            (Ceremony::Passwordless(state), None, None) => (Flow::Passwordless, state),
            (Ceremony::Reset { link, state }, Some(user), Some(wanted)) if link == wanted => {
                (Flow::Reset(user), as_single_credential(state)?)
            }
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
            (Some(credential), Flow::SecondFactor(user) | Flow::Reset(user))
                if credential.user_id != user =>
            {
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
        let user = flow
            .known_user()
            .or_else(|| owner.ok().map(|(user, _)| user));
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
            inner.begin_for_user(conn, tenant, user, &binding, &rp, Ceremony::SecondFactor)
        })
        .await
    }

    /// Starts a passkey ceremony that proves a password reset: for the user of the
    /// reset link `token` (not spent), limited to their passkeys that are not
    /// locked, and bound to that link and this browser, so the assertion answers
    /// this reset and nothing else. Finished by [`Authn::complete_password_reset`]
    /// with [`crate::recovery::ResetProof::Passkey`].
    /// [`AuthnError::InvalidLink`] for a link that does not open;
    /// [`AuthnError::NotEnrolled`], [`AuthnError::Throttled`] as for a second factor.
    pub async fn begin_reset_passkey(
        &self,
        tenant: TenantId,
        token: String,
        binding: String,
        rp: RelyingParty,
        client: ClientInfo,
    ) -> Result<AuthenticationChallenge, AuthnError> {
        self.blocking(move |inner, conn| {
            let user = inner.reset_link_user(conn, tenant, &token, &client)?;
            let link = secrets::digest(&token);
            inner.begin_for_user(conn, tenant, user.id, &binding, &rp, |state| {
                Ceremony::Reset { link, state }
            })
        })
        .await
    }
}

impl Inner {
    /// A ceremony for a known user, limited to their passkeys that are not locked.
    fn begin_for_user(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
        binding: &str,
        rp: &RelyingParty,
        ceremony: impl FnOnce(PasskeyAuthentication) -> Ceremony,
    ) -> Result<AuthenticationChallenge, AuthnError> {
        let now = self.now();
        let mut passkeys: Vec<Passkey> = Vec::new();
        let mut unlocks: Option<DateTime<Utc>> = None;
        for (credential, stored) in self.passkeys_of(conn, tenant, user)? {
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
        let (challenge_id, expires_at) =
            self.remember(conn, tenant, Some(user), binding, &ceremony(state))?;
        Ok(AuthenticationChallenge {
            challenge_id,
            options,
            expires_at,
        })
    }
}

impl Authn {
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
                None,
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

/// What needs the private name rule; the ceremonies are in `tests/authn/passkeys.rs`.
#[cfg(test)]
mod tests {
    use super::*;

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
}
