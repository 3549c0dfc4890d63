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

pub use cache::GrantCache;
pub use claims::{Claims, Role, TokenKind, WireRule};
pub use grant::Grant;
pub use keyring::{JwksSource, KeyRing};
pub use keys::{IssuerPolicy, KeySet, SigningKey};
pub use verify::{Verifier, VerifyError};

/// Seconds since the Unix epoch (the system clock; see [`crate::clock`]).
pub use crate::clock::now_unix;
