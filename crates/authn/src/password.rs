//! Passwords: Argon2id hashing and the password policy.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), so each
//! one names the parameters it was made with: changing the configuration never breaks
//! existing hashes, and [`Verification::Match`] says when a hash should be upgraded.
//!
//! Passwords are normalized to Unicode NFKC before hashing (NIST SP 800-63B), so the
//! same password typed on systems that compose accents differently still matches.
//!
//! Hashing is deliberately slow (tens of milliseconds with the defaults): call it from
//! a blocking context (`tokio::task::spawn_blocking`, `actix_web::web::block`, or the
//! sign-in's hashing pool), not directly on an async executor thread. A thread that
//! verifies again and again keeps Argon2's working memory in a [`HashMemory`] and
//! calls [`PasswordHasher::verify_in`] instead of allocating it for every hash.
//!
//! Nothing here logs or `Debug`-prints a password or a hash.

use std::fmt;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::Error as PhcError;
use argon2::password_hash::phc::Output;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _,
    Version,
};
use gatehouse_core::config::PasswordConfig;
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::AuthnError;

/// Longest password (in bytes, after normalization) the hasher accepts at all. The
/// policy's `max_length` (at most 1024 characters) is far below this; the bound is
/// here so that no caller can make one hash arbitrarily expensive.
const MAX_PASSWORD_BYTES: usize = 4 * PasswordConfig::MAX_LENGTH_CEILING as usize;

/// Hashed once per hasher to give [`PasswordHasher::verify_dummy`] something to chew on.
const DUMMY_PASSWORD: &str = "gatehouse-timing-equalizer-not-a-real-password";

/// Hashes and verifies passwords with Argon2id and the configured parameters.
///
/// Cheap to clone; clones share the dummy hash used by [`PasswordHasher::verify_dummy`].
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// `None` inside if hashing the dummy password failed (then a fresh hash is timed
    /// instead, which costs the same).
    dummy_hash: Arc<OnceLock<Option<String>>>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("algorithm", &"argon2id")
            .field("memory_kib", &self.params.m_cost())
            .field("iterations", &self.params.t_cost())
            .field("parallelism", &self.params.p_cost())
            .finish_non_exhaustive()
    }
}

/// Argon2's working memory (`m` KiB of blocks), kept between hashes by a thread that
/// does little else, such as the hashing pool's: it is then allocated once instead
/// of being allocated, zeroed, freed (and often faulted in again, page by page) for
/// every hash. Grows to the largest `m` it has served; holds password-derived state
/// between hashes, like any freed heap memory would.
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashMemory")
            .field("kib", &self.blocks.len())
            .finish()
    }
}

impl HashMemory {
    pub fn new() -> Self {
        HashMemory::default()
    }

    /// The first `count` blocks, growing the buffer if needed. Argon2 writes every
    /// block before it reads it, so what a previous hash left there does not matter.
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::new());
        }
        &mut self.blocks[..count]
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is right. `needs_rehash` is true when the stored hash was made
    /// with another algorithm, version or parameters than configured now: the caller
    /// should hash the password again and store the new hash.
    Match { needs_rehash: bool },
    /// The password is wrong, or the stored hash is unusable.
    Mismatch,
}

impl Verification {
    pub fn is_match(self) -> bool {
        matches!(self, Verification::Match { .. })
    }
}

impl PasswordHasher {
    /// Fails only for parameters Argon2 rejects, which configuration validation
    /// already refuses.
    pub fn new(config: &PasswordConfig) -> Result<Self, AuthnError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|err| AuthnError::Hash(format!("invalid Argon2id parameters: {err}")))?;
        Ok(PasswordHasher {
            params,
            dummy_hash: Arc::new(OnceLock::new()),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes `password` with a fresh random salt; returns the PHC string to store.
    pub fn hash(&self, password: &str) -> Result<String, AuthnError> {
        let password = normalize(password);
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthnError::Hash(format!(
                "password longer than {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let hash = self
            .argon2()
            .hash_password(password.as_bytes())
            .map_err(|err| AuthnError::Hash(err.to_string()))?;
        Ok(hash.to_string())
    }

    /// Checks `password` against `stored_phc`, a hash made by [`PasswordHasher::hash`]
    /// with these or earlier parameters. A malformed hash is a mismatch (and a warning
    /// in the log, without the hash).
    pub fn verify(&self, stored_phc: &str, password: &str) -> Verification {
        self.check(stored_phc, password, None)
    }

    /// [`PasswordHasher::verify`] in `memory` instead of freshly allocated memory; the
    /// same answer.
    pub fn verify_in(
        &self,
        memory: &mut HashMemory,
        stored_phc: &str,
        password: &str,
    ) -> Verification {
        self.check(stored_phc, password, Some(memory))
    }

    fn check(
        &self,
        stored_phc: &str,
        password: &str,
        memory: Option<&mut HashMemory>,
    ) -> Verification {
        let password = normalize(password);
        if password.len() > MAX_PASSWORD_BYTES {
            return Verification::Mismatch;
        }
        let stored = match PasswordHash::new(stored_phc) {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(error = %err, "stored password hash is malformed; treating it as a mismatch");
                return Verification::Mismatch;
            }
        };
        // The stored hash names its own algorithm and parameters; the configured ones
        // only matter for `needs_rehash`.
        let checked = match memory {
            None => self.argon2().verify_password(password.as_bytes(), &stored),
            Some(memory) => verify_with_memory(&stored, password.as_bytes(), memory),
        };
        match checked {
            Ok(()) => Verification::Match {
                needs_rehash: self.needs_rehash(&stored),
            },
            Err(PhcError::PasswordInvalid) => Verification::Mismatch,
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    algorithm = %stored.algorithm,
                    "stored password hash cannot be verified; treating it as a mismatch"
                );
                Verification::Mismatch
            }
        }
    }

    /// Runs one verification against a fixed hash made with the current parameters
    /// and throws the result away, so that signing in as an unknown user takes as long
    /// as signing in with a wrong password. The dummy hash is made on first use.
    pub fn verify_dummy(&self, password: &str) {
        self.dummy(password, None);
    }

    /// [`PasswordHasher::verify_dummy`] in `memory`, as [`PasswordHasher::verify_in`].
    pub fn verify_dummy_in(&self, memory: &mut HashMemory, password: &str) {
        self.dummy(password, Some(memory));
    }

    fn dummy(&self, password: &str, memory: Option<&mut HashMemory>) {
        let dummy = self
            .dummy_hash
            .get_or_init(|| self.hash(DUMMY_PASSWORD).ok());
        match dummy {
            Some(hash) => {
                let _ = self.check(hash, password, memory);
            }
            None => {
                let _ = self.hash(password);
            }
        }
    }

    fn needs_rehash(&self, stored: &PasswordHash) -> bool {
        if stored.algorithm != Algorithm::Argon2id.ident()
            || stored.version != Some(Version::V0x13.into())
        {
            return true;
        }
        let Ok(params) = Params::try_from(stored) else {
            return true;
        };
        params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
            || params.output_len() != Some(Params::DEFAULT_OUTPUT_LEN)
            || stored
                .salt
                .is_none_or(|salt| salt.len() < argon2::RECOMMENDED_SALT_LEN)
    }
}

/// What `argon2`'s `verify_password` does (the algorithm, version and parameters
/// named by the stored hash; a constant-time comparison of the output), with the
/// caller's memory.
fn verify_with_memory(
    stored: &PasswordHash,
    password: &[u8],
    memory: &mut HashMemory,
) -> Result<(), PhcError> {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Err(PhcError::PasswordInvalid);
    };
    let algorithm = Algorithm::try_from(stored.algorithm.as_str())?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(stored)?;
    let mut buffer = [0_u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
        .ok_or(PhcError::OutputSize)?;
    let blocks = params.block_count();
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut *out,
        memory.blocks(blocks),
    )?;
    if bool::from(expected.as_bytes().ct_eq(out)) {
        Ok(())
    } else {
        Err(PhcError::PasswordInvalid)
    }
}

/// NFKC, in a buffer that is wiped when dropped.
fn normalize(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfkc().collect())
}

/// Checks new passwords against NIST SP 800-63B: long enough, not absurdly long, not
/// guessable (zxcvbn: common passwords, keyboard patterns, the user's own name or
/// address), and no composition rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_length: usize,
    max_length: usize,
    min_strength: u8,
}

/// Why a password was rejected. `code` is for the UI to translate; `suggestions` are
/// English hints (zxcvbn's warning first, then its suggestions) it may show as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyViolation {
    pub code: PolicyCode,
    pub suggestions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyCode {
    /// Fewer than `min` characters.
    TooShort { min: usize },
    /// More than `max` characters.
    TooLong { max: usize },
    /// Easy to guess: common, a pattern, or built from the user's own details.
    TooWeak,
}

impl PolicyCode {
    /// A stable identifier, e.g. for translation keys and API error details.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyCode::TooShort { .. } => "password_too_short",
            PolicyCode::TooLong { .. } => "password_too_long",
            PolicyCode::TooWeak => "password_too_weak",
        }
    }
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            PolicyCode::TooShort { min } => write!(f, "shorter than {min} characters")?,
            PolicyCode::TooLong { max } => write!(f, "longer than {max} characters")?,
            PolicyCode::TooWeak => f.write_str("too easy to guess")?,
        }
        for suggestion in &self.suggestions {
            write!(f, " {suggestion}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyViolation {}

impl PasswordPolicy {
    pub fn new(config: &PasswordConfig) -> Self {
        PasswordPolicy {
            min_length: config.min_length as usize,
            max_length: config.max_length as usize,
            min_strength: config.min_strength,
        }
    }

    pub fn min_length(&self) -> usize {
        self.min_length
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Checks a new password. `user_inputs` are the user's own details (email address,
    /// user name, names): a password equal to one of them is rejected outright, and
    /// one built from them counts as weak.
    pub fn check(&self, password: &str, user_inputs: &[&str]) -> Result<(), PolicyViolation> {
        let length = password.chars().count();
        if length < self.min_length {
            return Err(PolicyViolation {
                code: PolicyCode::TooShort {
                    min: self.min_length,
                },
                suggestions: vec![format!(
                    "Use at least {} characters. A few unrelated words make a long password \
                     that is easy to remember.",
                    self.min_length
                )],
            });
        }
        if length > self.max_length {
            return Err(PolicyViolation {
                code: PolicyCode::TooLong {
                    max: self.max_length,
                },
                suggestions: vec![format!("Use at most {} characters.", self.max_length)],
            });
        }
        if user_inputs
            .iter()
            .any(|input| eq_ignore_case(password.trim(), input.trim()))
        {
            return Err(PolicyViolation {
                code: PolicyCode::TooWeak,
                suggestions: vec![
                    "Don't use your email address or user name as your password.".to_owned(),
                ],
            });
        }

        // zxcvbn matches user inputs as whole dictionary words; add their parts too, so
        // `alice.example!2024` is recognised as built from `alice@example.com`.
        let mut inputs: Vec<&str> = Vec::new();
        for input in user_inputs {
            inputs.push(input);
            inputs.extend(
                input
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|part| part.chars().count() >= 3),
            );
        }
        let entropy = zxcvbn::zxcvbn(password, &inputs);
        if u8::from(entropy.score()) < self.min_strength {
            let mut suggestions = Vec::new();
            if let Some(feedback) = entropy.feedback() {
                suggestions.extend(feedback.warning().map(|w| w.to_string()));
                suggestions.extend(feedback.suggestions().iter().map(ToString::to_string));
            }
            if suggestions.is_empty() {
                suggestions.push(ADD_WORDS.to_owned());
            }
            return Err(PolicyViolation {
                code: PolicyCode::TooWeak,
                suggestions,
            });
        }

        // zxcvbn prices a user input like any dictionary word, so `liddell-alice-2024`
        // passes for Alice Liddell. What is left without the user's own details must be
        // strong enough on its own.
        let remainder = without_user_details(password, &inputs);
        if remainder.len() < password.len()
            && u8::from(zxcvbn::zxcvbn(&remainder, &inputs).score()) < self.min_strength
        {
            return Err(PolicyViolation {
                code: PolicyCode::TooWeak,
                suggestions: vec![
                    "Don't build your password from your name, user name or email address."
                        .to_owned(),
                    ADD_WORDS.to_owned(),
                ],
            });
        }
        Ok(())
    }
}

const ADD_WORDS: &str = "Add another word or two. Uncommon words are better.";

/// `password` in lower case with every occurrence of the (lower-cased) `inputs`
/// removed, longest first.
fn without_user_details(password: &str, inputs: &[&str]) -> Zeroizing<String> {
    let mut tokens: Vec<String> = inputs
        .iter()
        .map(|input| input.trim().to_lowercase())
        .filter(|token| token.chars().count() >= 3)
        .collect();
    tokens.sort_by_key(|token| std::cmp::Reverse(token.len()));
    let mut remainder = Zeroizing::new(password.to_lowercase());
    for token in &tokens {
        if remainder.contains(token.as_str()) {
            let replaced = Zeroizing::new(remainder.replace(token.as_str(), ""));
            remainder = replaced;
        }
    }
    remainder
}

/// Unicode case-insensitive equality without copying either string.
fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Argon2's minimum cost: the tests are about behaviour, not strength.
    fn cheap() -> PasswordConfig {
        PasswordConfig {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            ..PasswordConfig::default()
        }
    }

    fn hasher(config: &PasswordConfig) -> PasswordHasher {
        PasswordHasher::new(config).unwrap()
    }

    /// A hash by `hasher`, checked to start with `prefix` (algorithm, version and
    /// parameters) and to verify without a rehash.
    fn hash_as_configured(hasher: &PasswordHasher, prefix: &str) -> String {
        let phc = hasher.hash("violet-harbor-quilt-97-lantern").unwrap();
        assert!(phc.starts_with(prefix), "{phc}");
        assert_eq!(
            hasher.verify(&phc, "violet-harbor-quilt-97-lantern"),
            Verification::Match {
                needs_rehash: false
            }
        );
        phc
    }

    #[test]
    fn hash_verify_round_trip() {
        let hasher = hasher(&cheap());
        let phc = hash_as_configured(&hasher, "$argon2id$v=19$m=8,t=1,p=1$");
        // Random salt: the same password never hashes the same twice.
        assert_ne!(phc, hasher.hash("violet-harbor-quilt-97-lantern").unwrap());
    }

    #[test]
    fn wrong_password_is_a_mismatch() {
        let hasher = hasher(&cheap());
        let phc = hasher.hash("violet-harbor-quilt-97-lantern").unwrap();
        for wrong in [
            "violet-harbor-quilt-97-lanterN",
            "violet-harbor-quilt-97-lantern ",
            "",
        ] {
            assert_eq!(
                hasher.verify(&phc, wrong),
                Verification::Mismatch,
                "{wrong}"
            );
        }
        assert!(!hasher.verify(&phc, "nope").is_match());
    }

    #[test]
    fn default_parameters_are_owasps_and_need_no_rehash() {
        let config = PasswordConfig::default();
        assert_eq!(
            (config.memory_kib, config.iterations, config.parallelism),
            (19456, 2, 1)
        );
        hash_as_configured(&hasher(&config), "$argon2id$v=19$m=19456,t=2,p=1$");
    }

    #[test]
    fn changed_parameters_need_a_rehash() {
        let old = hasher(&PasswordConfig {
            memory_kib: 8192,
            iterations: 1,
            ..PasswordConfig::default()
        });
        let phc = old.hash("violet-harbor-quilt-97-lantern").unwrap();
        let current = hasher(&PasswordConfig::default());
        assert_eq!(
            current.verify(&phc, "violet-harbor-quilt-97-lantern"),
            Verification::Match { needs_rehash: true }
        );
        assert_eq!(
            current.verify(&phc, "wrong-harbor-quilt-97-lantern"),
            Verification::Mismatch
        );

        // Another Argon2 variant verifies too, and is upgraded.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"violet-harbor-quilt-97-lantern")
        .unwrap()
        .to_string();
        assert_eq!(
            hasher(&cheap()).verify(&argon2i, "violet-harbor-quilt-97-lantern"),
            Verification::Match { needs_rehash: true }
        );
    }

    #[test]
    fn verifying_in_kept_memory_answers_as_verifying_in_fresh_memory() {
        let hasher = hasher(&cheap());
        let password = "violet-harbor-quilt-97-lantern";
        // A hash made by another Argon2 configuration: memory (KiB), iterations, lanes
        // and output length.
        let with = |algorithm, version, memory, iterations, lanes, output| {
            let params = Params::new(memory, iterations, lanes, output).unwrap();
            Argon2::new(algorithm, version, params)
                .hash_password(password.as_bytes())
                .unwrap()
                .to_string()
        };
        let stored = [
            hasher.hash(password).unwrap(),
            // Larger, then smaller memory than before: the buffer grows, then is cut.
            with(Algorithm::Argon2id, Version::V0x13, 64, 2, 1, None),
            with(Algorithm::Argon2id, Version::V0x13, 16, 1, 2, Some(16)),
            with(Algorithm::Argon2i, Version::V0x13, 8, 1, 1, None),
            with(Algorithm::Argon2d, Version::V0x10, 32, 3, 1, Some(64)),
            hasher.hash(password).unwrap(),
        ];
        let mut memory = HashMemory::new();
        for phc in &stored {
            for attempt in [password, "violet-harbor-quilt-97-lanterN", ""] {
                let fresh = hasher.verify(phc, attempt);
                assert_eq!(hasher.verify_in(&mut memory, phc, attempt), fresh, "{phc}");
                assert_eq!(fresh.is_match(), attempt == password, "{phc}");
            }
            // A stored hash with a flipped output byte is a mismatch either way.
            let (head, output) = phc.rsplit_once('$').unwrap();
            let flipped = if output.starts_with('A') { "B" } else { "A" };
            let tampered = format!("{head}${flipped}{}", &output[1..]);
            assert_eq!(
                hasher.verify_in(&mut memory, &tampered, password),
                Verification::Mismatch
            );
        }
        for malformed in ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$"] {
            assert_eq!(
                hasher.verify_in(&mut memory, malformed, password),
                Verification::Mismatch
            );
        }
        hasher.verify_dummy_in(&mut memory, password);
    }

    #[test]
    fn malformed_hashes_are_mismatches() {
        let hasher = hasher(&cheap());
        let phc = hasher.hash("violet-harbor-quilt-97-lantern").unwrap();
        let truncated = &phc[..phc.len() - 10];
        for stored in [
            "",
            "not a hash",
            "$argon2id$v=19$m=8,t=1,p=1$",
            "$bcrypt$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            truncated,
        ] {
            assert_eq!(
                hasher.verify(stored, "violet-harbor-quilt-97-lantern"),
                Verification::Mismatch,
                "{stored}"
            );
        }
    }

    #[test]
    fn passwords_are_normalized() {
        let hasher = hasher(&cheap());
        // "é" precomposed (NFC) and as e + combining acute (NFD).
        let phc = hasher.hash("caf\u{e9}-harbor-quilt-97").unwrap();
        assert!(
            hasher
                .verify(&phc, "cafe\u{301}-harbor-quilt-97")
                .is_match()
        );
    }

    #[test]
    fn absurdly_long_passwords_are_refused() {
        let hasher = hasher(&cheap());
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hasher.hash(&long), Err(AuthnError::Hash(_))));
        let phc = hasher.hash("violet-harbor-quilt-97-lantern").unwrap();
        assert_eq!(hasher.verify(&phc, &long), Verification::Mismatch);
    }

    #[test]
    fn dummy_verification_uses_the_current_parameters() {
        let hasher = hasher(&cheap());
        hasher.verify_dummy("anything");
        let clone = hasher.clone();
        clone.verify_dummy("anything else");
        let dummy = hasher.dummy_hash.get().unwrap().as_deref().unwrap();
        assert!(dummy.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{dummy}");
        // Shared between clones: made once.
        assert_eq!(clone.dummy_hash.get().unwrap().as_deref(), Some(dummy));
    }

    #[test]
    fn debug_shows_parameters_only() {
        let debug = format!("{:?}", hasher(&PasswordConfig::default()));
        assert!(debug.contains("memory_kib: 19456"), "{debug}");
        // Not even the dummy hash shows.
        let hasher = hasher(&cheap());
        hasher.verify_dummy("violet-harbor-quilt-97-lantern");
        let debug = format!("{hasher:?}");
        assert!(debug.contains("memory_kib: 8"), "{debug}");
        assert!(!debug.contains('$'), "{debug}");
    }

    #[test]
    fn invalid_parameters_are_an_error() {
        let config = PasswordConfig {
            memory_kib: 7,
            ..cheap()
        };
        assert!(matches!(
            PasswordHasher::new(&config),
            Err(AuthnError::Hash(_))
        ));
    }

    fn policy() -> PasswordPolicy {
        PasswordPolicy::new(&PasswordConfig::default())
    }

    fn code(result: Result<(), PolicyViolation>) -> PolicyCode {
        result.unwrap_err().code
    }

    #[test]
    fn policy_accepts_a_strong_passphrase() {
        let policy = policy();
        policy
            .check(
                "violet-harbor-quilt-97-lantern",
                &["alice@example.com", "alice"],
            )
            .unwrap();
        policy.check("zebra kettle nimbus oratory", &[]).unwrap();
        // No composition rules: all lowercase letters and spaces are fine.
        policy.check("plankton sinewy gravel", &[]).unwrap();
    }

    #[test]
    fn policy_rejects_short_passwords() {
        let policy = policy();
        assert_eq!(
            code(policy.check("Xq7#vB2!", &[])),
            PolicyCode::TooShort { min: 12 }
        );
        // Characters, not bytes: 11 two-byte characters are still too short.
        assert_eq!(
            code(policy.check(&"é".repeat(11), &[])),
            PolicyCode::TooShort { min: 12 }
        );
        let violation = policy.check("", &[]).unwrap_err();
        assert!(violation.suggestions[0].contains("12"), "{violation:?}");
    }

    #[test]
    fn policy_rejects_long_passwords() {
        let long: String = "violet-harbor-quilt-97-lantern ".repeat(10);
        assert_eq!(long.chars().count(), 310);
        assert_eq!(
            code(policy().check(&long, &[])),
            PolicyCode::TooLong { max: 256 }
        );
        assert_eq!(
            code(policy().check(&"x".repeat(300), &[])),
            PolicyCode::TooLong { max: 256 }
        );
    }

    #[test]
    fn policy_rejects_common_passwords_with_advice() {
        let policy = policy();
        for common in [
            "password1234",
            "qwertyuiop12",
            "123456789012",
            "iloveyou2024",
        ] {
            let violation = policy.check(common, &[]).unwrap_err();
            assert_eq!(violation.code, PolicyCode::TooWeak, "{common}");
            assert!(!violation.suggestions.is_empty(), "{common}: {violation:?}");
        }
        let violation = policy.check("password1234", &[]).unwrap_err();
        assert!(
            violation
                .suggestions
                .iter()
                .any(|s| s.contains("common password")),
            "{violation:?}"
        );
        assert!(
            violation.to_string().starts_with("too easy to guess"),
            "{violation}"
        );
    }

    #[test]
    fn policy_rejects_passwords_built_from_the_users_details() {
        let policy = policy();
        let inputs = ["alice.liddell@example.com", "aliceliddell"];
        let violation = policy
            .check("ALICE.LIDDELL@example.com", &inputs)
            .unwrap_err();
        assert_eq!(violation.code, PolicyCode::TooWeak);
        assert!(
            violation.suggestions[0].contains("email address"),
            "{violation:?}"
        );
        assert_eq!(
            code(policy.check("AliceLiddell", &inputs)),
            PolicyCode::TooWeak
        );
        for built in [
            "alice.liddell@example.com1",
            "liddell-alice-2024",
            "Example.Alice!1",
            "AliceLiddell1234",
            "2024.alice.liddell.EXAMPLE.com",
        ] {
            assert_eq!(
                code(policy.check(built, &inputs)),
                PolicyCode::TooWeak,
                "{built}"
            );
        }
    }

    #[test]
    fn policy_accepts_strong_passphrases_that_mention_the_user() {
        let policy = policy();
        let inputs = ["alice@example.com", "alice"];
        policy
            .check("alice-violet-harbor-quilt-97-lantern", &inputs)
            .unwrap();
        let violation = policy.check("alice@example.com2024", &inputs).unwrap_err();
        assert_eq!(violation.code, PolicyCode::TooWeak);
        assert!(!violation.suggestions.is_empty());
    }

    #[test]
    fn min_strength_zero_only_checks_length() {
        let policy = PasswordPolicy::new(&PasswordConfig {
            min_strength: 0,
            ..PasswordConfig::default()
        });
        policy.check("password1234", &[]).unwrap();
        assert_eq!(
            code(policy.check("alice@example.com", &["alice@example.com"])),
            PolicyCode::TooWeak
        );
    }
}
