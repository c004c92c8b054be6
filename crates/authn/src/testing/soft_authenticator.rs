//! [`SoftAuthenticator`]: a software passkey authenticator, for driving the passkey
//! ceremonies in tests without a browser or a device.
//!
//! It speaks the JSON the server's options serialise to and the JSON a browser posts
//! back (`PublicKeyCredential.toJSON()`): it takes `{"publicKey": {…}}` creation or
//! request options and answers with a registration or an assertion. Credentials are
//! P-256 keys (ES256), attestation is `none`, and each response is made as an
//! authenticator would make it: `authenticatorData` = SHA-256(rpId) ‖ flags ‖
//! signCount ‖ (at registration) the attested credential data with a COSE key, and
//! the signature covers `authenticatorData ‖ SHA-256(clientDataJSON)`.
//!
//! Its knobs make the refusals testable: no user verification, another origin,
//! backup flags, a counter that is wound back or never moves.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// authenticatorData flags (WebAuthn §6.1).
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const BACKUP_ELIGIBLE: u8 = 0x08;
const BACKED_UP: u8 = 0x10;
const ATTESTED_CREDENTIAL_DATA: u8 = 0x40;
/// COSE algorithm ES256.
const ES256: i64 = -7;

/// Why the authenticator (or the browser in front of it) refused, as the DOM
/// exception a page would see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Registration: the authenticator already holds an excluded credential.
    InvalidState,
    /// No usable credential, or no supported algorithm.
    NotAllowed,
}

/// One credential the authenticator holds.
pub struct SoftCredential {
    pub id: Vec<u8>,
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    /// The signature counter as last used.
    pub counter: u32,
    key: SigningKey,
}

impl fmt::Debug for SoftCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftCredential")
            .field("id", &URL_SAFE_NO_PAD.encode(&self.id))
            .field("rp_id", &self.rp_id)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// A platform authenticator in software; see the module documentation.
#[derive(Debug)]
pub struct SoftAuthenticator {
    /// The origin the "browser" puts in clientDataJSON.
    pub origin: String,
    /// Whether the user is verified (PIN, biometrics): the UV flag.
    pub user_verification: bool,
    /// The BE flag: the credential may be synced or backed up.
    pub backup_eligible: bool,
    /// The BS flag: the credential is backed up now.
    pub backed_up: bool,
    /// Added to a credential's counter at each assertion; 0 for an authenticator
    /// without a counter (as synced passkeys are).
    pub counter_step: u32,
    pub credentials: Vec<SoftCredential>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(value: &Value, what: &str) -> Vec<u8> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("{what} is not base64url: {e}"))
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} missing: {value}"))
}

/// The `publicKey` member of creation or request options.
fn public_key(options: &Value) -> &Value {
    options
        .get("publicKey")
        .unwrap_or_else(|| panic!("no publicKey in the options: {options}"))
}

fn credential_ids(list: &Value) -> Vec<Vec<u8>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| unb64(&item["id"], "a credential descriptor's id"))
                .collect()
        })
        .unwrap_or_default()
}

impl SoftAuthenticator {
    /// A user-verifying authenticator, counter starting at 0 and moving by one,
    /// not backed up, used from `origin` (e.g. `https://id.example.com`).
    pub fn new(origin: &str) -> SoftAuthenticator {
        SoftAuthenticator {
            origin: origin.to_owned(),
            user_verification: true,
            backup_eligible: false,
            backed_up: false,
            counter_step: 1,
            credentials: Vec::new(),
        }
    }

    fn flags(&self) -> u8 {
        let mut flags = USER_PRESENT;
        if self.user_verification {
            flags |= USER_VERIFIED;
        }
        if self.backup_eligible {
            flags |= BACKUP_ELIGIBLE;
        }
        if self.backed_up {
            flags |= BACKED_UP;
        }
        flags
    }

    fn client_data(&self, kind: &str, challenge: &Value) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": text(challenge, "challenge"),
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    /// `navigator.credentials.create()`: a new discoverable credential, answered as
    /// a `RegisterPublicKeyCredential` in JSON.
    pub fn create(&mut self, options: &Value) -> Result<Value, Refusal> {
        let options = public_key(options);
        let rp_id = text(&options["rp"]["id"], "rp.id").to_owned();
        let excluded = credential_ids(&options["excludeCredentials"]);
        if self
            .credentials
            .iter()
            .any(|c| c.rp_id == rp_id && excluded.contains(&c.id))
        {
            return Err(Refusal::InvalidState);
        }
        let supports_es256 = options["pubKeyCredParams"]
            .as_array()
            .is_some_and(|params| params.iter().any(|p| p["alg"].as_i64() == Some(ES256)));
        if !supports_es256 {
            return Err(Refusal::NotAllowed);
        }
        let mut id = vec![0_u8; 32];
        rand::rng().fill_bytes(&mut id);
        let credential = SoftCredential {
            id,
            rp_id,
            user_handle: unb64(&options["user"]["id"], "user.id"),
            counter: 0,
            key: new_key(),
        };
        let response = self.attest(&credential, &options["challenge"]);
        self.credentials.push(credential);
        Ok(response)
    }

    /// Registers an existing credential again (an authenticator that ignores
    /// `excludeCredentials`, or a clone): the server must refuse a credential id
    /// it already knows.
    pub fn create_again(&mut self, options: &Value, credential: &[u8]) -> Value {
        let options = public_key(options);
        let existing = self
            .credentials
            .iter()
            .find(|c| c.id == credential)
            .expect("a credential of this authenticator");
        self.attest(existing, &options["challenge"])
    }

    fn attest(&self, credential: &SoftCredential, challenge: &Value) -> Value {
        let point = credential.key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            panic!("an uncompressed point has coordinates");
        };
        let mut cose_key = Vec::new();
        Cbor::Map(vec![
            (Cbor::Int(1), Cbor::Int(2)),               // kty: EC2
            (Cbor::Int(3), Cbor::Int(ES256)),           // alg
            (Cbor::Int(-1), Cbor::Int(1)),              // crv: P-256
            (Cbor::Int(-2), Cbor::Bytes(x.as_slice())), // x
            (Cbor::Int(-3), Cbor::Bytes(y.as_slice())), // y
        ])
        .encode(&mut cose_key);

        let mut auth_data = authenticator_data(credential, self.flags() | ATTESTED_CREDENTIAL_DATA);
        auth_data.extend_from_slice(&[0_u8; 16]); // AAGUID: none
        let id_length = u16::try_from(credential.id.len()).expect("a short credential id");
        auth_data.extend_from_slice(&id_length.to_be_bytes());
        auth_data.extend_from_slice(&credential.id);
        auth_data.extend_from_slice(&cose_key);

        let mut attestation = Vec::new();
        Cbor::Map(vec![
            (Cbor::Text("fmt"), Cbor::Text("none")),
            (Cbor::Text("attStmt"), Cbor::Map(Vec::new())),
            (Cbor::Text("authData"), Cbor::Bytes(&auth_data)),
        ])
        .encode(&mut attestation);

        public_key_credential(
            credential,
            json!({
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&self.client_data("webauthn.create", challenge)),
                "transports": ["internal"],
            }),
        )
    }

    /// `navigator.credentials.get()`: an assertion from the first credential for
    /// the relying party that `allowCredentials` allows (any, when it is empty: a
    /// discoverable sign-in), as a `PublicKeyCredential` in JSON.
    pub fn get(&mut self, options: &Value) -> Result<Value, Refusal> {
        let request = public_key(options);
        let rp_id = text(&request["rpId"], "rpId");
        let allowed = credential_ids(&request["allowCredentials"]);
        let id = self
            .credentials
            .iter()
            .find(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)))
            .map(|c| c.id.clone())
            .ok_or(Refusal::NotAllowed)?;
        Ok(self.assert_with(options, &id))
    }

    /// An assertion from credential `id`, whatever the options allow (what a
    /// tampered client could send).
    pub fn assert_with(&mut self, options: &Value, id: &[u8]) -> Value {
        let request = public_key(options);
        let flags = self.flags();
        let step = self.counter_step;
        let client_data = self.client_data("webauthn.get", &request["challenge"]);
        let credential = self
            .credentials
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a credential of this authenticator");
        credential.counter = credential.counter.wrapping_add(step);

        let auth_data = authenticator_data(credential, flags);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: Signature = credential.key.sign(&signed);

        public_key_credential(
            credential,
            json!({
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": b64(&credential.user_handle),
            }),
        )
    }

    /// The credential with this id. Panics if there is none.
    pub fn credential(&mut self, id: &[u8]) -> &mut SoftCredential {
        self.credentials
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a credential of this authenticator")
    }
}

/// The start of the authenticator data (WebAuthn §6.1): the relying party's id hash,
/// the flags and the signature counter.
fn authenticator_data(credential: &SoftCredential, flags: u8) -> Vec<u8> {
    let mut data = Sha256::digest(credential.rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&credential.counter.to_be_bytes());
    data
}

/// A `PublicKeyCredential` in JSON, as the browser hands it to the page.
fn public_key_credential(credential: &SoftCredential, response: Value) -> Value {
    json!({
        "id": b64(&credential.id),
        "rawId": b64(&credential.id),
        "type": "public-key",
        "response": response,
        "clientExtensionResults": {},
    })
}

fn new_key() -> SigningKey {
    loop {
        let mut bytes = [0_u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        // Out of range with probability ~2⁻³²: draw again.
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// The little CBOR (RFC 8949) an authenticator writes: integers, byte and text
/// strings, maps.
enum Cbor<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Map(Vec<(Cbor<'a>, Cbor<'a>)>),
}

impl Cbor<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Cbor::Int(n) if *n >= 0 => head(0, n.unsigned_abs(), out),
            Cbor::Int(n) => head(1, (-1 - n).unsigned_abs(), out),
            Cbor::Bytes(bytes) => {
                head(2, bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
            Cbor::Text(text) => {
                head(3, text.len() as u64, out);
                out.extend_from_slice(text.as_bytes());
            }
            Cbor::Map(entries) => {
                head(5, entries.len() as u64, out);
                for (key, value) in entries {
                    key.encode(out);
                    value.encode(out);
                }
            }
        }
    }
}

/// A data item's initial byte(s): major type and argument.
fn head(major: u8, argument: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    match argument {
        0..=23 => out.push(major | argument as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, argument as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(item: Cbor<'_>) -> String {
        let mut out = Vec::new();
        item.encode(&mut out);
        hex::encode(out)
    }

    #[test]
    fn encodes_cbor_as_rfc_8949_appendix_a() {
        assert_eq!(hex(Cbor::Int(0)), "00");
        assert_eq!(hex(Cbor::Int(23)), "17");
        assert_eq!(hex(Cbor::Int(24)), "1818");
        assert_eq!(hex(Cbor::Int(1000)), "1903e8");
        assert_eq!(hex(Cbor::Int(1_000_000)), "1a000f4240");
        assert_eq!(hex(Cbor::Int(-1)), "20");
        assert_eq!(hex(Cbor::Int(-7)), "26");
        assert_eq!(hex(Cbor::Int(-100)), "3863");
        assert_eq!(hex(Cbor::Bytes(&[1, 2, 3, 4])), "4401020304");
        assert_eq!(hex(Cbor::Text("IETF")), "6449455446");
        assert_eq!(hex(Cbor::Map(vec![(Cbor::Int(1), Cbor::Int(2))])), "a10102");
    }
}
