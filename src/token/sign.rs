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
