//! Why a caller was refused. `Display` is the message the client sees (the `/ws` 401 body,
//! and later the Socket.IO `connect_error` message), so it is short and names the problem
//! without echoing secrets.

/// A refused token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the auth object, the `Authorization` header or the `token` query.
    #[error("missing token")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("malformed Authorization header: expected \"Bearer <token>\"")]
    MalformedHeader,
    /// Not a JWT at all, or one whose header or claims cannot be read.
    #[error("invalid token")]
    Malformed,
    /// The signature does not match the configured key.
    #[error("invalid token: bad signature")]
    BadSignature,
    /// Signed with another algorithm than the configured one (including `none`).
    #[error("invalid token: algorithm not allowed")]
    WrongAlgorithm,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` differs from `JWT_ISSUER`.
    #[error("invalid token: wrong issuer")]
    WrongIssuer,
    /// `aud` differs from `JWT_AUDIENCE`.
    #[error("invalid token: wrong audience")]
    WrongAudience,
    /// The user's tokens were revoked (`POST /websocket/users/{id}/revoke`) and this one was
    /// issued before that (or has no `iat`).
    #[error("token revoked")]
    Revoked,
    /// A required claim is absent or has the wrong type.
    #[error("invalid token: {0}")]
    BadClaim(String),
}

impl AuthError {
    /// The stable snake_case code of this refusal (the `reason` of
    /// `switchboard_auth_refusals_total`); the message may be reworded, the code stays.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::MalformedHeader => "malformed_header",
            Self::Malformed => "malformed_token",
            Self::BadSignature => "bad_signature",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Revoked => "token_revoked",
            Self::BadClaim(_) => "bad_claim",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => Self::BadSignature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
                Self::WrongAlgorithm
            }
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::WrongIssuer,
            K::InvalidAudience => Self::WrongAudience,
            K::MissingRequiredClaim(c) => Self::BadClaim(format!("missing claim {c:?}")),
            K::InvalidClaimFormat(c) => Self::BadClaim(format!("claim {c:?} has the wrong type")),
            _ => Self::Malformed,
        }
    }
}
