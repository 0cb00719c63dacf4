//! Key material: the verification key the server uses and the signing key `switchboard token`
//! uses. With an HS* algorithm and no `JWT_SECRET`, a random 256-bit secret is generated once
//! into the data directory and reused by both, so a fresh install never accepts forged tokens
//! and `switchboard token` works without any configuration.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, EncodingKey, Header};

use super::claims::Claims;
use crate::config::{JwtKeySource, JwtSettings};

/// A key that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but is not a usable key.
    #[error("{path} is not a valid key for {algorithm:?}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The configured algorithm.
        algorithm: jsonwebtoken::Algorithm,
        /// Why.
        reason: String,
    },
    /// `switchboard token` with an asymmetric algorithm but no private key.
    #[error("minting {0:?} tokens needs JWT_PRIVATE_KEY_FILE (a PEM private key)")]
    NoPrivateKey(jsonwebtoken::Algorithm),
    /// The operating system has no randomness to offer.
    #[error("could not generate a secret: {0}")]
    Random(String),
}

/// The HMAC secret: configured, or read from (and if needed generated into) its file.
fn hmac_secret(source: &JwtKeySource) -> Result<Option<Vec<u8>>, KeyError> {
    match source {
        JwtKeySource::Secret(s) => Ok(Some(s.as_bytes().to_vec())),
        JwtKeySource::GeneratedSecretFile(path) => load_or_generate_secret(path).map(Some),
        JwtKeySource::PublicKeyFile(_) => Ok(None),
    }
}

fn load_or_generate_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |what, source| KeyError::Io {
        what,
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(KeyError::Invalid {
                path: path.display().to_string(),
                algorithm: jsonwebtoken::Algorithm::HS256,
                reason: "the generated secret file is truncated; delete it to generate a new one"
                    .into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("could not read the JWT secret file", e)),
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| KeyError::Random(e.to_string()))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| io("could not create the JWT secret file", e))?;
    file.write_all(hex.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("could not write the JWT secret file", e))?;
    tracing::warn!(
        path = %path.display(),
        "no JWT_SECRET configured: generated a random secret; mint a token with \
         `switchboard token --sub alice` or set JWT_SECRET"
    );
    Ok(hex.into_bytes())
}

/// The key the server verifies tokens with.
pub fn decoding_key(jwt: &JwtSettings) -> Result<DecodingKey, KeyError> {
    if let Some(secret) = hmac_secret(&jwt.key)? {
        return Ok(DecodingKey::from_secret(&secret));
    }
    let JwtKeySource::PublicKeyFile(path) = &jwt.key else {
        unreachable!("hmac_secret returns None only for a public key file")
    };
    let pem = std::fs::read(path).map_err(|source| KeyError::Io {
        what: "could not read JWT_PUBLIC_KEY_FILE",
        path: path.display().to_string(),
        source,
    })?;
    use jsonwebtoken::Algorithm as A;
    let key = match jwt.algorithm {
        A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => {
            DecodingKey::from_rsa_pem(&pem)
        }
        A::ES256 | A::ES384 => DecodingKey::from_ec_pem(&pem),
        A::EdDSA => DecodingKey::from_ed_pem(&pem),
        A::HS256 | A::HS384 | A::HS512 => unreachable!("HMAC keys are handled above"),
    };
    key.map_err(|e| KeyError::Invalid {
        path: path.display().to_string(),
        algorithm: jwt.algorithm,
        reason: e.to_string(),
    })
}

/// Signs tokens with the configured key; used by `switchboard token` and by tests.
pub struct Minter {
    key: EncodingKey,
    header: Header,
}

impl Minter {
    /// Loads the signing key for the configured algorithm.
    pub fn from_settings(jwt: &JwtSettings) -> Result<Self, KeyError> {
        let key = match hmac_secret(&jwt.key)? {
            Some(secret) => EncodingKey::from_secret(&secret),
            None => {
                let path = jwt
                    .private_key_file
                    .as_ref()
                    .ok_or(KeyError::NoPrivateKey(jwt.algorithm))?;
                let pem = std::fs::read(path).map_err(|source| KeyError::Io {
                    what: "could not read JWT_PRIVATE_KEY_FILE",
                    path: path.display().to_string(),
                    source,
                })?;
                use jsonwebtoken::Algorithm as A;
                match jwt.algorithm {
                    A::ES256 | A::ES384 => EncodingKey::from_ec_pem(&pem),
                    A::EdDSA => EncodingKey::from_ed_pem(&pem),
                    _ => EncodingKey::from_rsa_pem(&pem),
                }
                .map_err(|e| KeyError::Invalid {
                    path: path.display().to_string(),
                    algorithm: jwt.algorithm,
                    reason: e.to_string(),
                })?
            }
        };
        Ok(Self {
            key,
            header: Header::new(jwt.algorithm),
        })
    }

    /// Signs a token for `claims`, filling in `iat` and `exp = now + ttl`.
    pub fn mint(&self, mut claims: Claims, ttl: Duration) -> Result<String, KeyError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        claims.iat = Some(now);
        claims.exp = Some(now + ttl.as_secs());
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|e| KeyError::Invalid {
            path: "(signing key)".into(),
            algorithm: self.header.alg,
            reason: e.to_string(),
        })
    }
}
