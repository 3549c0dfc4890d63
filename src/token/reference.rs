//! Reference tokens: opaque secrets with a recognisable prefix, at least 256
//! bits of randomness; the store keeps only their SHA-256 and the grant.
//! The proxy finds them in the store's in-memory mirror by hash
//! ([`crate::store::ReferenceTokens`]) — no store call on the request path
//! — and then treats them exactly like a verified JWT.

/// Every reference token starts with this.
pub const PREFIX: &str = "ngr_";

/// Registration secrets start with this (distinct from access tokens, so
/// one can never be presented as the other).
pub const REGISTRATION_PREFIX: &str = "ngreg_";

/// A new reference secret: the prefix and 32 random bytes, base64url.
pub fn new_secret() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(format!("{PREFIX}{}", crate::token::encoding::b64(&bytes)))
}

pub fn is_reference(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// SHA-256 of a secret in hex, as a config names a secret it must not hold
/// (`feed_readers_sha256`, ProdManager's `secret_sha256`,
/// `bootstrap_token_sha256`).
pub fn hash_hex(secret: &str) -> String {
    hash(secret).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a secret, as the store and the mirror key it.
pub fn hash(secret: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
