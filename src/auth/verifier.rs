//! Token verification. The accepted algorithm comes from configuration only: the token's own
//! header can never switch it (so `alg: none` and HS/RS confusion are refused), `exp` is
//! required, `nbf` is checked, and the leeway is the configured one. A token of a revoked user
//! issued before the revocation is refused here too ([`Revocations`]), so every door that
//! verifies a token (connect, `refresh-token`, REST) applies it.

use std::sync::Arc;

use jsonwebtoken::{DecodingKey, Validation};

use super::claims::{Claims, Identity};
use super::keys::{KeyError, decoding_key};
use super::{AuthError, Revocations, find_token};
use crate::config::JwtSettings;

/// Verifies tokens; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<(DecodingKey, Validation)>,
    revocations: Revocations,
}

impl Verifier {
    /// Builds the verifier from the JWT settings (loading or generating the key).
    pub fn from_settings(jwt: &JwtSettings) -> Result<Self, KeyError> {
        let key = decoding_key(jwt)?;
        let mut validation = Validation::new(jwt.algorithm);
        validation.leeway = jwt.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured issuer or audience is also required to be present: a token without
        // `iss` must not slip past an issuer check.
        let mut required = vec!["exp", "sub"];
        match &jwt.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &jwt.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience, a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            inner: Arc::new((key, validation)),
            revocations: Revocations::default(),
        })
    }

    /// Verifies a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let (key, validation) = &*self.inner;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)?;
        let identity = Identity::try_from(data.claims)?;
        self.revocations.check(&identity)?;
        Ok(identity)
    }

    /// The revoked users whose older tokens this verifier refuses (shared by its clones).
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The leeway on `exp`, in seconds: a live connection ends this long after its `exp`.
    pub fn leeway_secs(&self) -> u64 {
        self.inner.1.leeway
    }

    /// Finds the token in a request (see [`find_token`]) and verifies it.
    pub fn authenticate(
        &self,
        auth_object: Option<&str>,
        headers: &axum::http::HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Identity, AuthError> {
        self.verify(&find_token(auth_object, headers, query_token)?)
    }
}
