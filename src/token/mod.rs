//! Tokens: the claims narrowgate issues, keys, signing, and verification of
//! a presented token into a [`Grant`].
//!
//! No I/O on the request path: keys are loaded at config time (or fetched
//! beside the request path, [`KeyRing`]), verification
//! is pure CPU, and successful verifications are cached in [`GrantCache`].
//! Nothing here logs or returns a token or a key.

pub mod cache;
pub mod claims;
pub mod encoding;
pub mod grant;
pub mod jwks;
pub mod keyring;
pub mod keys;
pub mod mapping;
pub mod reference;
pub mod sign;
#[doc(hidden)]
#[cfg(any(test, feature = "test-support"))]
pub mod testkit;
pub mod verify;

/// The longest `jti` a token may carry: what a revocation may name (the
/// token service and the revocation feed refuse longer ids, so a longer
/// jti could never be revoked, and a token carrying one is refused).
pub const MAX_JTI: usize = 256;

/// The longest `iss` an issuer may be configured with (its tokens' ids are
/// revoked as `iss#jti`, which must fit the feed's [`MAX_REVOCATION_ID`]).
pub const MAX_ISSUER: usize = 512;

/// The longest id the revocation set holds: a jti qualified by its issuer.
pub const MAX_REVOCATION_ID: usize = MAX_ISSUER + 1 + MAX_JTI;

/// The id a token is revoked by as its issuer's token: `iss#jti`. Jtis are
/// unique only within their issuer, so revoking one issuer's jti (POST
/// /v1/revocations) names that issuer's token alone, and a token exchanged
/// from another issuer's carries its parent so in its lineage. This
/// gateway's own tokens are revoked by their bare id, too.
pub fn revocation_id(issuer: &str, jti: &str) -> String {
    format!("{issuer}#{jti}")
}

pub use cache::GrantCache;
pub use claims::{Claims, Role, TokenKind, WireRule};
pub use grant::Grant;
pub use keyring::{JwksSource, KeyRing};
pub use keys::{IssuerPolicy, KeySet, SigningKey};
pub use verify::{Verifier, VerifyError};

/// Seconds since the Unix epoch (the system clock; see [`crate::clock`]).
pub use crate::clock::now_unix;
