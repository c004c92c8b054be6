/// The one error type of the JOSE crate. Messages name the JWK member at fault, so
/// that an operator registering a key set can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// The JOSE name is not one Gatehouse signs with.
    #[error("unsupported signing algorithm `{0}` (use ES256, RS256 or EdDSA)")]
    UnsupportedAlgorithm(String),

    #[error("the JWK Set is not JSON: {0}")]
    JwkSetNotJson(String),

    #[error("not a JWK Set: no `keys` array")]
    NotAJwkSet,

    /// A JWK that cannot be read, or cannot be the key it claims to be.
    #[error("{0}")]
    Jwk(String),

    /// Not a compact JWS (three base64url segments, a JSON header), or longer than
    /// [`crate::MAX_JWS_LEN`].
    #[error("malformed JWS")]
    MalformedJws,

    /// The payload is base64url, but not the JSON the caller asked for.
    #[error("JWS payload: {0}")]
    Payload(String),
}
