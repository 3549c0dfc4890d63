//! Signing JWTs with the MetaApi-safe segment encoding.

use serde::Serialize;

use super::encoding::{b64, to_safe_json};
use super::keys::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("claims cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("signing failed")]
    Sign,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'static str,
    kid: &'a str,
}

/// Sign any serializable payload with `key`; the header carries the key's
/// `alg` and `kid`.
pub fn sign<P: Serialize>(payload: &P, key: &SigningKey) -> Result<String, SignError> {
    let alg = match key.algorithm {
        jsonwebtoken::Algorithm::ES256 => "ES256",
        jsonwebtoken::Algorithm::ES384 => "ES384",
        jsonwebtoken::Algorithm::EdDSA => "EdDSA",
        _ => return Err(SignError::Sign),
    };
    let header = Header { alg, typ: "JWT", kid: &key.kid };
    sign_with_header(&header, payload, key)
}

/// Sign with an explicit header (tests use it to craft hostile headers; the
/// signature is still made with `key`'s own algorithm).
pub fn sign_with_header<H: Serialize, P: Serialize>(
    header: &H,
    payload: &P,
    key: &SigningKey,
) -> Result<String, SignError> {
    let mut input = b64(to_safe_json(header)?.as_bytes());
    input.push('.');
    input.push_str(&b64(to_safe_json(payload)?.as_bytes()));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), key.encoding_key(), key.algorithm).map_err(|_| SignError::Sign)?;
    input.push('.');
    input.push_str(&signature);
    Ok(input)
}

/// The keys this gateway signs with, as one of its issuers. What it mints
/// passes that issuer's own checks: the `aud` its verifier expects is
/// stamped in, and a lifetime beyond its `max_lifetime` is refused.
#[derive(Debug, Clone)]
pub struct Signing {
    /// The `iss` tokens get.
    pub issuer: String,
    pub keys: Vec<std::sync::Arc<SigningKey>>,
    /// Index of the key new tokens are signed with.
    pub active: usize,
    /// The `aud` minted tokens get: the issuer's first audience, if any.
    pub audience: Option<String>,
    /// The issuer's `max_lifetime`, in seconds.
    pub max_lifetime_secs: Option<u64>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the lifetime exceeds this issuer's max_lifetime of {max_secs} s")]
    TooLong { max_secs: u64 },
    #[error("the token could not be signed")]
    Sign,
}

impl Signing {
    pub fn active_key(&self) -> &SigningKey {
        &self.keys[self.active.min(self.keys.len() - 1)]
    }

    /// Sign `claims` as this issuer with the active key, after stamping its
    /// `iss` and `aud`.
    pub fn sign(&self, claims: &mut super::Claims) -> Result<String, MintError> {
        claims.iss = self.issuer.clone();
        claims.aud = self.audience.clone();
        if let Some(max) = self.max_lifetime_secs {
            // The verifier refuses exp − iat beyond max, or no exp at all.
            match claims.exp {
                Some(exp) if exp.saturating_sub(claims.iat) <= max => {}
                _ => return Err(MintError::TooLong { max_secs: max }),
            }
        }
        sign(claims, self.active_key()).map_err(|_| MintError::Sign)
    }
}
