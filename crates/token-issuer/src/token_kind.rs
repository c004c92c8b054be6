//! Which kind of token a JWT is, by its JOSE `typ`: what signers write into the
//! header and what verification demands, so that one kind cannot pass as another.

/// Which JOSE `typ` a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `at+jwt` (RFC 9068 §2.1), so an access token cannot pass as an ID token.
    Access = 0,
    /// `JWT` (OIDC Core).
    Id = 1,
    /// `logout+jwt` (OIDC Back-Channel Logout 1.0 §2.4), so a logout token cannot
    /// pass as either of the others.
    Logout = 2,
}

impl TokenKind {
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Access => "at+jwt",
            TokenKind::Id => "JWT",
            TokenKind::Logout => "logout+jwt",
        }
    }
}
