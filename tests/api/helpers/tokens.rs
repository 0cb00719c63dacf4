//! Tokens for tests: signed with the test secret or the fixture RSA key, unsigned, or signed
//! with a key of the test's choosing (for the algorithm-confusion attack).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use super::SECRET;

/// `exp` one hour from now.
pub fn in_an_hour() -> u64 {
    now_secs() + 3600
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Signs claims with the test secret (HS*) or the fixture RSA key (RS*).
pub fn sign(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            EncodingKey::from_rsa_pem(include_bytes!("../../fixtures/rsa_private.pem"))
                .expect("fixture key")
        }
        _ => EncodingKey::from_secret(SECRET.as_bytes()),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("token signs")
}

/// A token with `alg: none` and no signature.
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// A token signed with HMAC under an arbitrary key (for the RS256/HS256 confusion attack).
pub fn sign_hmac_with(key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .expect("token signs")
}
