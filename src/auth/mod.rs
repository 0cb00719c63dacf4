//! Authentication: where a token is found ([`source`]), which key checks it ([`keys`]), how it
//! is verified with the configured algorithm only ([`verifier`]) and how its claims become an
//! [`Identity`] ([`claims`]), the rooms it grants included ([`grants`]); [`revocations`] refuses the tokens an operator revoked. Every transport and the REST API go through [`Verifier`], so
//! there is one place that decides who a caller is.

pub mod claims;
pub mod error;
pub mod grants;
pub mod keys;
pub mod revocations;
pub mod source;
pub mod verifier;

pub use claims::Identity;
pub use error::AuthError;
pub use grants::Access;
pub use revocations::Revocations;
pub use source::find_token;
pub use verifier::Verifier;
