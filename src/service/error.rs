//! The token service's errors: what went wrong, in the service's own
//! terms. Front ends map an [`ErrorKind`] to their wire shape (the api's
//! codes and statuses, a facade's), never by reading a message.
//!
//! Messages are built from fixed text and the *name* of the field at fault
//! (`accessRules[0].roles[1]`), never from what the client sent.

use std::borrow::Cow;
use std::fmt::Display;

use crate::policy::issuance::IssuanceError;
use crate::policy::narrow::NarrowError;
use crate::store::StoreError;
use crate::token::sign::MintError;

/// What kind of failure: one per outcome a caller treats differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed input; the message names the field.
    BadRequest,
    /// The token would not fit `server.max_token_bytes`.
    TokenTooLarge,
    /// The caller has no management authority.
    AdminRequired,
    /// Acting on a master token needs a master.
    MasterRequired,
    /// More than the caller may give; the message names the field.
    WouldWiden,
    /// A token its issuer does not let be exchanged (RFC 8693).
    NotExchangeable,
    NotFound,
    /// Taken: a live token has this name or id already.
    Conflict,
    AlreadyRedeemed,
    /// A registration token past its TTL.
    RegistrationExpired,
    /// A registration token revoked, or its creator.
    RegistrationRevoked,
    /// The token to act on is revoked (itself or an ancestor) or expired.
    NotLive,
    Internal,
    StoreUnavailable,
    SigningUnavailable,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::BadRequest,
        ErrorKind::TokenTooLarge,
        ErrorKind::AdminRequired,
        ErrorKind::MasterRequired,
        ErrorKind::WouldWiden,
        ErrorKind::NotExchangeable,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::AlreadyRedeemed,
        ErrorKind::RegistrationExpired,
        ErrorKind::RegistrationRevoked,
        ErrorKind::NotLive,
        ErrorKind::Internal,
        ErrorKind::StoreUnavailable,
        ErrorKind::SigningUnavailable,
    ];

    /// The stable snake_case code (the audit log's result, the api's
    /// `error`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TokenTooLarge => "token_too_large",
            ErrorKind::AdminRequired => "admin_required",
            ErrorKind::MasterRequired => "master_required",
            ErrorKind::WouldWiden => "would_widen",
            ErrorKind::NotExchangeable => "not_exchangeable",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AlreadyRedeemed => "already_redeemed",
            ErrorKind::RegistrationExpired => "registration_expired",
            ErrorKind::RegistrationRevoked => "registration_revoked",
            ErrorKind::NotLive => "not_live",
            ErrorKind::Internal => "internal",
            ErrorKind::StoreUnavailable => "store_unavailable",
            ErrorKind::SigningUnavailable => "signing_unavailable",
        }
    }
}

/// An error of the token service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    kind: ErrorKind,
    message: Cow<'static, str>,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for ServiceError {}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        ServiceError { kind, message: message.into() }
    }

    /// Malformed input at `field` (a place in the request, never its value).
    pub fn bad(field: impl Display, what: &'static str) -> Self {
        Self::new(ErrorKind::BadRequest, format!("{field}: {what}"))
    }

    /// More than the caller may give, at `field`.
    pub fn widen(field: impl Display, what: &'static str) -> Self {
        Self::new(ErrorKind::WouldWiden, format!("{field}: {what}"))
    }

    pub fn admin_required() -> Self {
        Self::new(ErrorKind::AdminRequired, "only admin or master tokens manage tokens")
    }

    pub fn not_found(what: &'static str) -> Self {
        Self::new(ErrorKind::NotFound, what)
    }

    /// Taken: a live token has this `field` (name, id) already.
    pub fn conflict(field: &'static str) -> Self {
        Self::new(ErrorKind::Conflict, format!("{field}: a live token has it already"))
    }

    pub fn already_redeemed() -> Self {
        Self::new(ErrorKind::AlreadyRedeemed, "this registration token has been used")
    }

    pub fn registration_expired() -> Self {
        Self::new(ErrorKind::RegistrationExpired, "this registration token has expired")
    }

    pub fn not_live() -> Self {
        Self::new(ErrorKind::NotLive, "the token is revoked (itself or an ancestor) or expired")
    }

    pub fn registration_revoked() -> Self {
        Self::new(ErrorKind::RegistrationRevoked, "this registration token, or the token that created it, was revoked")
    }

    pub fn signing_unavailable() -> Self {
        Self::new(ErrorKind::SigningUnavailable, "this gateway cannot sign tokens now")
    }

    /// Something that should not happen; `what` is logged, not returned.
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "token service failure");
        Self::new(ErrorKind::Internal, "the request could not be completed")
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, for a front end that renders it.
    pub fn into_message(self) -> Cow<'static, str> {
        self.message
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ServiceError::conflict("name"),
            e => {
                tracing::warn!(error = %e, "token store failed");
                Self::new(ErrorKind::StoreUnavailable, "the token store is unavailable")
            }
        }
    }
}

impl From<IssuanceError> for ServiceError {
    fn from(e: IssuanceError) -> Self {
        match e {
            IssuanceError::AdminRequired => ServiceError::admin_required(),
            IssuanceError::MasterRequired => Self::new(ErrorKind::MasterRequired, e.to_string()),
            IssuanceError::OutOfReach => ServiceError::not_found("no such token within this token's lineage"),
            IssuanceError::WouldWiden { field, what } => ServiceError::widen(field, what),
            IssuanceError::OutOfBounds { field, what } => ServiceError::bad(field, what),
            IssuanceError::TooLarge { .. } => Self::new(ErrorKind::TokenTooLarge, e.to_string()),
            IssuanceError::NotExchangeable => Self::new(ErrorKind::NotExchangeable, e.to_string()),
        }
    }
}

impl From<NarrowError> for ServiceError {
    fn from(e: NarrowError) -> Self {
        match e {
            NarrowError::WouldWiden { path, what } => ServiceError::widen(path, what),
            NarrowError::Unknown { path, what } => ServiceError::bad(path, what),
            NarrowError::Empty => ServiceError::bad("accessRules", "the narrowed token would grant nothing"),
            NarrowError::BadValidity => {
                ServiceError::bad("validityInHours", "not a positive number of hours (at most ten years)")
            }
        }
    }
}

impl From<MintError> for ServiceError {
    fn from(e: MintError) -> Self {
        match e {
            MintError::TooLong { .. } => Self::new(ErrorKind::BadRequest, format!("expiresAt: {e}")),
            MintError::Sign => ServiceError::signing_unavailable(),
        }
    }
}

impl crate::trace::ErrorCode for ServiceError {
    fn code(&self) -> &'static str {
        ServiceError::code(self)
    }
}

impl crate::trace::ErrorCode for crate::store::StoreError {
    fn code(&self) -> &'static str {
        crate::store::StoreError::code(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "{k:?}");
            assert!(k.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
