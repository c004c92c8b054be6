//! Secrets at rest: XChaCha20-Poly1305 under master keys that carry ids, so keys can
//! rotate. The first key encrypts; every configured key decrypts, which lets values
//! sealed under an old key keep working until they are re-wrapped.
//!
//! Sealed format: `v1.<kid>.<base64url-nopad(nonce || ciphertext)>`. The kid travels in
//! clear so the right key is found without trial decryption.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::Error;
use crate::config::{Config, Mode};

const VERSION: &str = "v1";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_KEY_ID_LEN: usize = 32;
const ENV_VAR: &str = "GATEHOUSE_SECRETS__MASTER_KEYS";

/// Operators paste keys from various tools; accept them with or without `=` padding.
const KEY_ENCODING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A 256-bit master key and its id. The key bytes are wiped on drop and never printed.
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl MasterKey {
    /// `id` must match `[A-Za-z0-9_-]{1,32}`: it is embedded in every sealed value.
    pub fn new(id: impl Into<String>, key: Zeroizing<[u8; KEY_LEN]>) -> Result<Self, Error> {
        let id = id.into();
        check_key_id(&id)?;
        Ok(MasterKey { id, key })
    }

    /// A fresh random key with an id like `mk-20260101-3fa9` (date for humans, random
    /// suffix so two keys made on the same day differ).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(key.as_mut_slice());
        let mut suffix = [0u8; 2];
        rng.fill_bytes(&mut suffix);
        let id = format!(
            "mk-{}-{}",
            chrono::Utc::now().format("%Y%m%d"),
            hex::encode(suffix)
        );
        MasterKey { id, key }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as unpadded base64url, the form used in key files and
    /// `GATEHOUSE_SECRETS__MASTER_KEYS`.
    pub fn encoded_key(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.key.as_slice()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Where [`Cipher::load`] found its keys, for the startup log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `secrets.master_keys`, normally from `GATEHOUSE_SECRETS__MASTER_KEYS`.
    Env,
    File(PathBuf),
    /// A dev-mode key file created by this call.
    Generated(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => f.write_str("secrets.master_keys"),
            KeySource::File(path) => write!(f, "key file {}", path.display()),
            KeySource::Generated(path) => write!(f, "newly generated key file {}", path.display()),
        }
    }
}

/// Seals and opens secrets. Cheap to clone; clones share the keys.
#[derive(Clone)]
pub struct Cipher {
    inner: Arc<CipherKeys>,
}

struct CipherKeys {
    /// Never empty; the first entry is the active key.
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl Cipher {
    /// `keys[0]` becomes the active key. Ids must be unique.
    pub fn new(keys: Vec<MasterKey>) -> Result<Self, Error> {
        if keys.is_empty() {
            return Err(Error::MasterKey("no master keys given".to_owned()));
        }
        let mut slots: Vec<(String, XChaCha20Poly1305)> = Vec::with_capacity(keys.len());
        for key in keys {
            check_key_id(&key.id)?;
            // Ids that differ only in case count as the same: SQLite's LIKE (which
            // the re-wrap uses to find values under other keys) ignores ASCII case.
            if slots.iter().any(|(id, _)| id.eq_ignore_ascii_case(&key.id)) {
                return Err(Error::MasterKey(format!(
                    "key id `{}` is used more than once (ids are compared ignoring case)",
                    key.id
                )));
            }
            let aead = XChaCha20Poly1305::new_from_slice(key.key.as_slice())
                .map_err(|_| Error::MasterKey(format!("key `{}` has the wrong length", key.id)))?;
            slots.push((key.id.clone(), aead));
        }
        Ok(Cipher {
            inner: Arc::new(CipherKeys { keys: slots }),
        })
    }

    /// Builds the cipher from configuration:
    /// 1. `secrets.master_keys` if set;
    /// 2. else the key file (`secrets.master_key_file`, or in dev mode
    ///    `<data_dir>/master.key`, generated on first use);
    /// 3. production mode with neither is an error.
    pub fn load(config: &Config) -> Result<(Cipher, KeySource), Error> {
        if let Some(keys) = &config.secrets.master_keys {
            return Ok((Cipher::new(parse_key_list(keys.expose())?)?, KeySource::Env));
        }
        if let Some(path) = &config.secrets.master_key_file {
            let keys = read_key_file(path)?;
            return Ok((Cipher::new(keys)?, KeySource::File(path.clone())));
        }
        match config.mode {
            Mode::Dev => {
                let path = config.data_dir.join("master.key");
                load_or_generate(&path)
            }
            Mode::Production => Err(Error::MasterKey(format!(
                "production mode does not generate keys; set {ENV_VAR} to \
                 `<kid>:<base64url 32-byte key>[,<older kid>:<key>...]` or point \
                 secrets.master_key_file at a chmod-600 file of `<kid> <base64url key>` lines"
            ))),
        }
    }

    /// Encrypts `plaintext` under the active key. `aad` binds the result to its context
    /// (e.g. `credential:<tenant>:<id>`): opening it with any other `aad` fails, so a
    /// sealed value copied into another row is useless there.
    ///
    /// # Panics
    /// Only if `plaintext` exceeds the AEAD's limit of about 256 GiB.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let (kid, aead) = self.active();
        let mut nonce = [0u8; NONCE_LEN];
        // 192-bit random nonces make collisions negligible without any nonce state.
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: &associated_data(kid, aad),
        };
        let ciphertext = match aead.encrypt(XNonce::from_slice(&nonce), payload) {
            Ok(ciphertext) => ciphertext,
            Err(_) => panic!("plaintext too large for XChaCha20-Poly1305"),
        };
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        format!("{VERSION}.{kid}.{}", URL_SAFE_NO_PAD.encode(body))
    }

    /// Decrypts a value produced by [`Cipher::seal`] with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (kid, body) = split_sealed(sealed).ok_or(Error::Unseal("malformed"))?;
        let (_, aead) = self
            .inner
            .keys
            .iter()
            .find(|(id, _)| id == kid)
            .ok_or(Error::Unseal("unknown key id"))?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Error::Unseal("malformed"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Unseal("malformed"));
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: &associated_data(kid, aad),
        };
        aead.decrypt(XNonce::from_slice(nonce), payload)
            .map(Zeroizing::new)
            .map_err(|_| Error::Unseal("authentication failed"))
    }

    pub fn active_key_id(&self) -> &str {
        &self.active().0
    }

    /// All key ids, active first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.inner.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// False for values sealed under an older key (or not sealed at all), so a re-wrap
    /// job can find the rows that still depend on a retiring key.
    pub fn is_sealed_with_active_key(&self, sealed: &str) -> bool {
        split_sealed(sealed).is_some_and(|(kid, _)| kid == self.active_key_id())
    }

    fn active(&self) -> &(String, XChaCha20Poly1305) {
        // `Cipher::new` refuses an empty key list, so index 0 always exists.
        &self.inner.keys[0]
    }
}

/// Authenticates the version and key id along with the caller's context, so the header
/// cannot be rewritten (e.g. to a future format version) without detection.
fn associated_data(kid: &str, aad: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(VERSION.len() + kid.len() + 2 + aad.len());
    data.extend_from_slice(VERSION.as_bytes());
    data.push(b'.');
    data.extend_from_slice(kid.as_bytes());
    // Key ids cannot contain '.', so this separator keeps the encoding unambiguous.
    data.push(b'.');
    data.extend_from_slice(aad);
    data
}

/// The id of the master key a sealed value was sealed under, from its envelope.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    split_sealed(sealed).map(|(kid, _)| kid)
}

fn split_sealed(sealed: &str) -> Option<(&str, &str)> {
    let rest = sealed.strip_prefix(VERSION)?.strip_prefix('.')?;
    let (kid, body) = rest.split_once('.')?;
    let body_ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (is_valid_key_id(kid) && body_ok).then_some((kid, body))
}

fn is_valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_key_id(id: &str) -> Result<(), Error> {
    if is_valid_key_id(id) {
        return Ok(());
    }
    // A long "id" is most likely a key pasted in the wrong place: do not echo it.
    let shown = if id.len() <= MAX_KEY_ID_LEN {
        format!("`{id}`")
    } else {
        format!("of {} characters", id.len())
    };
    Err(Error::MasterKey(format!(
        "key id {shown} is invalid; ids are 1-{MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 - _"
    )))
}

fn decode_key(id: &str, encoded: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let bytes = Zeroizing::new(KEY_ENCODING.decode(encoded).map_err(|_| {
        Error::MasterKey(format!(
            "key `{id}` is not valid base64url (the URL-safe alphabet uses - and _ instead of + and /)"
        ))
    })?);
    if bytes.len() != KEY_LEN {
        return Err(Error::MasterKey(format!(
            "key `{id}` is {} bytes long; master keys are {KEY_LEN} bytes",
            bytes.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Parses `kid:base64url-key[,kid:base64url-key...]`. Errors never include key material.
fn parse_key_list(list: &str) -> Result<Vec<MasterKey>, Error> {
    let mut keys = Vec::new();
    for (index, entry) in list.split(',').enumerate() {
        let number = index + 1;
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(Error::MasterKey(format!(
                "{ENV_VAR}: entry {number} is empty"
            )));
        }
        let (id, encoded) = entry.split_once(':').ok_or_else(|| {
            Error::MasterKey(format!(
                "{ENV_VAR}: entry {number} is not of the form `<kid>:<base64url key>`"
            ))
        })?;
        let id = id.trim();
        check_key_id(id)
            .map_err(|err| Error::MasterKey(format!("{ENV_VAR}: entry {number}: {}", bare(err))))?;
        let key = decode_key(id, encoded.trim())
            .map_err(|err| Error::MasterKey(format!("{ENV_VAR}: {}", bare(err))))?;
        keys.push(MasterKey::new(id, key)?);
    }
    Ok(keys)
}

/// The message of a `MasterKey` error, for re-wrapping it with more context.
fn bare(err: Error) -> String {
    match err {
        Error::MasterKey(message) => message,
        other => other.to_string(),
    }
}

fn read_key_file(path: &Path) -> Result<Vec<MasterKey>, Error> {
    let mut file =
        File::open(path).map_err(|err| Error::io("cannot open master key file", path, err))?;
    let metadata = file
        .metadata()
        .map_err(|err| Error::io("cannot inspect master key file", path, err))?;
    // Checked on the open handle, so the file cannot be swapped between check and read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::MasterKey(format!(
                "{} is accessible by group or others (mode {:03o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    // Sized up front so reading never reallocates and leaves key copies behind.
    let capacity = usize::try_from(metadata.len())
        .unwrap_or(0)
        .saturating_add(1);
    let mut text = Zeroizing::new(String::with_capacity(capacity));
    file.read_to_string(&mut text)
        .map_err(|err| Error::io("cannot read master key file", path, err))?;
    parse_key_file(&text, path)
}

/// One `kid base64url-key` per line; `#` comments and blank lines are skipped.
fn parse_key_file(text: &str, path: &Path) -> Result<Vec<MasterKey>, Error> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let context = |message: String| {
            Error::MasterKey(format!("{} line {}: {message}", path.display(), index + 1))
        };
        let mut fields = line.split_whitespace();
        let (Some(id), Some(encoded), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(context("expected `<kid> <base64url key>`".to_owned()));
        };
        let key = decode_key(id, encoded).map_err(|err| context(bare(err)))?;
        keys.push(MasterKey::new(id, key).map_err(|err| context(bare(err)))?);
    }
    if keys.is_empty() {
        return Err(Error::MasterKey(format!(
            "{} contains no keys",
            path.display()
        )));
    }
    Ok(keys)
}

/// A dev key is generated only for a database that does not exist yet: a new key
/// beside existing data would open none of its secrets, and silently replacing a
/// deleted key would hide the loss until the first sign-in fails.
fn load_or_generate(path: &Path) -> Result<(Cipher, KeySource), Error> {
    match read_key_file(path) {
        Ok(keys) => return Ok((Cipher::new(keys)?, KeySource::File(path.to_owned()))),
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let key = MasterKey::generate();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another process generated it first; use its key so both agree.
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            let keys = read_key_file(path)?;
            return Ok((Cipher::new(keys)?, KeySource::File(path.to_owned())));
        }
        Err(err) => return Err(Error::io("cannot create master key file", path, err)),
    };
    let contents = Zeroizing::new(format!(
        "# Gatehouse master key file, generated for development on {}.\n\
         # One `<key id> <base64url 32-byte key>` per line; the first key encrypts new\n\
         # secrets, every listed key can decrypt (add a new key on top to rotate).\n\
         # Keep this file private (chmod 600) and backed up: secrets sealed with it cannot\n\
         # be recovered without it. In production use GATEHOUSE_SECRETS__MASTER_KEYS or\n\
         # secrets.master_key_file instead of a generated key.\n\
         {} {}\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        key.id(),
        key.encoded_key().as_str()
    ));
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(err) = written {
        // A half-written file would make every later start fail; remove it so the next
        // start generates again.
        let _ = std::fs::remove_file(path);
        return Err(Error::io("cannot write master key file", path, err));
    }
    Ok((
        Cipher::new(vec![key])?,
        KeySource::Generated(path.to_owned()),
    ))
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|err| Error::io("cannot create data directory", dir, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretString, SecretsConfig};

    fn key_file_secrets(path: &Path) -> SecretsConfig {
        SecretsConfig {
            master_key_file: Some(path.to_owned()),
            master_keys: None,
        }
    }

    fn key(id: &str, byte: u8) -> MasterKey {
        MasterKey::new(id, Zeroizing::new([byte; KEY_LEN])).unwrap()
    }

    fn cipher(ids: &[(&str, u8)]) -> Cipher {
        Cipher::new(ids.iter().map(|(id, b)| key(id, *b)).collect()).unwrap()
    }

    fn unseal_reason(err: Error) -> &'static str {
        match err {
            Error::Unseal(reason) => reason,
            other => panic!("expected an unseal error, got {other:?}"),
        }
    }

    fn master_key_message(err: Error) -> String {
        match err {
            Error::MasterKey(message) => message,
            other => panic!("expected a master key error, got {other:?}"),
        }
    }

    const AAD: &[u8] = b"credential:default:0190c9e8";

    #[test]
    fn seal_open_round_trip() {
        let c = cipher(&[("k1", 1)]);
        let sealed = c.seal(b"hunter2", AAD);
        assert!(sealed.starts_with("v1.k1."), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(c.open(&sealed, AAD).unwrap().as_slice(), b"hunter2");
        assert_ne!(c.seal(b"hunter2", AAD), sealed, "nonces must be random");
        assert_eq!(c.open(&c.seal(b"", AAD), AAD).unwrap().as_slice(), b"");
        assert!(c.is_sealed_with_active_key(&sealed));
        assert_eq!(c.active_key_id(), "k1");
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let c = cipher(&[("k1", 1), ("k2", 2)]);
        let sealed = c.seal(b"secret", AAD);
        let body = sealed.strip_prefix("v1.k1.").unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        let tampered = format!("v1.k1.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(
            unseal_reason(c.open(&tampered, AAD).unwrap_err()),
            "authentication failed"
        );

        // Relabelling with another configured key id is caught as well.
        let relabelled = format!("v1.k2.{body}");
        assert_eq!(
            unseal_reason(c.open(&relabelled, AAD).unwrap_err()),
            "authentication failed"
        );
    }

    #[test]
    fn value_copied_to_another_row_fails() {
        let c = cipher(&[("k1", 1)]);
        let sealed = c.seal(b"secret", b"credential:default:a");
        assert_eq!(
            unseal_reason(c.open(&sealed, b"credential:default:b").unwrap_err()),
            "authentication failed"
        );
        assert_eq!(
            unseal_reason(c.open(&sealed, b"credential:other:a").unwrap_err()),
            "authentication failed"
        );
    }

    #[test]
    fn unknown_key_id_and_malformed_values_fail() {
        let sealed = cipher(&[("old", 1)]).seal(b"secret", AAD);
        let c = cipher(&[("new", 2)]);
        assert_eq!(
            unseal_reason(c.open(&sealed, AAD).unwrap_err()),
            "unknown key id"
        );
        assert!(!c.is_sealed_with_active_key(&sealed));

        for bad in [
            "",
            "v1",
            "v1.new",
            "v1.new.",
            "v2.new.AAAA",
            "v1.n.e.w.AAAA",
            "v1.new.!!!!",
            "v1.new.AAAA",
            "plain text",
        ] {
            assert_eq!(
                unseal_reason(c.open(bad, AAD).unwrap_err()),
                "malformed",
                "{bad}"
            );
        }
        assert!(!c.is_sealed_with_active_key("v2.new.AAAA"));
        assert!(!c.is_sealed_with_active_key("plain text"));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = cipher(&[("k-old", 1)]);
        let sealed_old = old.seal(b"legacy", AAD);

        let rotated = cipher(&[("k-new", 2), ("k-old", 1)]);
        assert_eq!(
            rotated.open(&sealed_old, AAD).unwrap().as_slice(),
            b"legacy"
        );
        assert!(!rotated.is_sealed_with_active_key(&sealed_old));

        let sealed_new = rotated.seal(b"fresh", AAD);
        assert!(sealed_new.starts_with("v1.k-new."));
        assert!(rotated.is_sealed_with_active_key(&sealed_new));
        assert_eq!(
            unseal_reason(old.open(&sealed_new, AAD).unwrap_err()),
            "unknown key id"
        );
        assert_eq!(rotated.key_ids(), ["k-new", "k-old"]);
    }

    #[test]
    fn cipher_new_checks_keys() {
        assert!(Cipher::new(Vec::new()).is_err());
        let message = master_key_message(Cipher::new(vec![key("a", 1), key("a", 2)]).unwrap_err());
        assert!(message.contains("`a`"), "{message}");
        for bad in ["", "has.dot", "has space", &"x".repeat(33)] {
            assert!(
                MasterKey::new(bad, Zeroizing::new([0; KEY_LEN])).is_err(),
                "{bad}"
            );
        }
        MasterKey::new("A-z_09", Zeroizing::new([0; KEY_LEN])).unwrap();
        MasterKey::new("x".repeat(32), Zeroizing::new([0; KEY_LEN])).unwrap();
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let k = key("k1", 0xAB);
        let encoded = k.encoded_key();
        let c = cipher(&[("k1", 0xAB)]);
        for rendered in [format!("{k:?}"), format!("{c:?}")] {
            assert!(rendered.contains("k1"), "{rendered}");
            assert!(!rendered.contains(encoded.as_str()), "{rendered}");
            assert!(!rendered.to_lowercase().contains("abab"), "{rendered}");
            assert!(!rendered.contains("171"), "{rendered}");
        }
    }

    fn env_config(keys: &str) -> Config {
        Config {
            mode: Mode::Production,
            secrets: SecretsConfig {
                master_keys: Some(SecretString::new(keys)),
                master_key_file: None,
            },
            ..Config::default()
        }
    }

    #[test]
    fn env_keys_are_parsed_first_active() {
        let new = key("mk-new", 2);
        let old = key("mk-old", 1);
        let list = format!(
            "{}:{}, {}:{}=",
            new.id(),
            new.encoded_key().as_str(),
            old.id(),
            old.encoded_key().as_str()
        );
        let (c, source) = Cipher::load(&env_config(&list)).unwrap();
        assert_eq!(source, KeySource::Env);
        assert_eq!(c.key_ids(), ["mk-new", "mk-old"]);
        let sealed = cipher(&[("mk-old", 1)]).seal(b"x", AAD);
        assert_eq!(c.open(&sealed, AAD).unwrap().as_slice(), b"x");
    }

    #[test]
    fn bad_env_keys_are_rejected_without_echoing_them() {
        let good = key("k", 9).encoded_key();
        let short = URL_SAFE_NO_PAD.encode([7u8; 16]);
        let cases = [
            (format!("k1:{}", "*".repeat(43)), "base64url"),
            (format!("k1:{short}"), "16 bytes"),
            (
                format!("k1:{},k1:{}", good.as_str(), good.as_str()),
                "more than once",
            ),
            (format!("k1:{},", good.as_str()), "entry 2 is empty"),
            (good.to_string(), "entry 1 is not of the form"),
            (format!("{}:k1", good.as_str()), "43 characters"),
            (format!("bad id:{}", good.as_str()), "`bad id`"),
        ];
        for (list, expected) in cases {
            let message = master_key_message(Cipher::load(&env_config(&list)).unwrap_err());
            assert!(message.contains(expected), "{list}: {message}");
            assert!(!message.contains(good.as_str()), "{message}");
            assert!(!message.contains(&short), "{message}");
        }
    }

    #[test]
    fn production_without_keys_fails() {
        let config = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        let message = master_key_message(Cipher::load(&config).unwrap_err());
        assert!(message.contains(ENV_VAR), "{message}");
        assert!(message.contains("master_key_file"), "{message}");
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn write_private(path: &Path, contents: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn dev_mode_generates_a_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("nested").join("data"),
            ..Config::default()
        };
        let path = config.data_dir.join("master.key");

        let (first, source) = Cipher::load(&config).unwrap();
        assert_eq!(source, KeySource::Generated(path.clone()));
        let id = first.active_key_id().to_owned();
        assert!(
            id.starts_with("mk-") && id.len() == "mk-20260101-abcd".len(),
            "{id}"
        );
        #[cfg(unix)]
        assert_eq!(mode_of(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with('#'));

        let sealed = first.seal(b"kept", AAD);
        let (second, source) = Cipher::load(&config).unwrap();
        assert_eq!(source, KeySource::File(path));
        assert_eq!(second.active_key_id(), id);
        assert_eq!(second.open(&sealed, AAD).unwrap().as_slice(), b"kept");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_with_loose_permissions_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = key("k1", 3);
        write_private(&path, &format!("k1 {}\n", k.encoded_key().as_str()), 0o644);
        let mut config = Config {
            secrets: key_file_secrets(&path),
            ..Config::default()
        };
        let message = master_key_message(Cipher::load(&config).unwrap_err());
        assert!(message.contains("chmod 600"), "{message}");

        // The dev default path is checked just the same, and not regenerated over.
        config.secrets.master_key_file = None;
        config.data_dir = dir.path().to_owned();
        assert!(Cipher::load(&config).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let new = key("new", 5);
        let old = key("old", 6);
        write_private(
            &path,
            &format!(
                "# rotated 2026-02-01\n\n  new {}  \n# retired soon\nold\t{}\n",
                new.encoded_key().as_str(),
                old.encoded_key().as_str()
            ),
            0o600,
        );
        let config = Config {
            mode: Mode::Production,
            secrets: key_file_secrets(&path),
            ..Config::default()
        };
        let (c, source) = Cipher::load(&config).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!(c.key_ids(), ["new", "old"]);

        write_private(&path, "# nothing here\n", 0o600);
        assert!(master_key_message(Cipher::load(&config).unwrap_err()).contains("no keys"));
        write_private(&path, "new\n", 0o600);
        assert!(master_key_message(Cipher::load(&config).unwrap_err()).contains("line 1"));
    }

    #[test]
    fn explicit_missing_key_file_is_not_generated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.key");
        let config = Config {
            secrets: key_file_secrets(&path),
            ..Config::default()
        };
        assert!(matches!(Cipher::load(&config), Err(Error::Io { .. })));
        assert!(!path.exists());
    }
}
