//! The closed set of reasons a request is decided for.
//!
//! One code per outcome, used alike in response bodies, logs and metric
//! labels. Codes are stable snake_case strings: clients and dashboards key on
//! them, so a code is never renamed, only added.

/// Why a request was allowed or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The token's access rules allow the route.
    Allowed,
    /// The route is public: no token is checked.
    Public,
    /// Enforcement is switched off in the config (benchmarks only).
    NotEnforced,
    MissingToken,
    InvalidToken,
    Expired,
    NotYetValid,
    TokenTooLarge,
    Revoked,
    ConflictingCredentials,
    NoMatchingRoute,
    ApplicationNotAllowed,
    ServiceNotAllowed,
    MethodNotGranted,
    ResourceNotAllowed,
    InsufficientRole,
    InsufficientScope,
    AmbiguousPath,
    BadRequest,
    MethodOverride,
    /// A header that rewrites the target (`X-Original-URL`, …).
    TargetRewrite,
    UpgradeNotAllowed,
    UpstreamUnavailable,
    UpstreamTimeout,
    KeysUnavailable,
    /// The token names a `kid` no trusted issuer has (after a refetch, for
    /// keys from a JWKS URL).
    UnknownKey,
    /// A route acting on a tenant, and the token's tenant permissions do
    /// not allow the route's action there (nor do its access rules).
    TenantNotAllowed,
    /// The revocation set could not be confirmed current for longer than
    /// `revocation.max_staleness`, and the policy is to refuse.
    RevocationsUnavailable,
}

impl Reason {
    /// Every reason, in a fixed order (metric handles are indexed by it).
    pub const ALL: [Reason; 28] = [
        Reason::Allowed,
        Reason::Public,
        Reason::NotEnforced,
        Reason::MissingToken,
        Reason::InvalidToken,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::TokenTooLarge,
        Reason::Revoked,
        Reason::ConflictingCredentials,
        Reason::NoMatchingRoute,
        Reason::ApplicationNotAllowed,
        Reason::ServiceNotAllowed,
        Reason::MethodNotGranted,
        Reason::ResourceNotAllowed,
        Reason::InsufficientRole,
        Reason::InsufficientScope,
        Reason::AmbiguousPath,
        Reason::BadRequest,
        Reason::MethodOverride,
        Reason::TargetRewrite,
        Reason::UpgradeNotAllowed,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::KeysUnavailable,
        Reason::UnknownKey,
        Reason::TenantNotAllowed,
        Reason::RevocationsUnavailable,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Public => "public",
            Reason::NotEnforced => "not_enforced",
            Reason::MissingToken => "missing_token",
            Reason::InvalidToken => "invalid_token",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::TokenTooLarge => "token_too_large",
            Reason::Revoked => "revoked",
            Reason::ConflictingCredentials => "conflicting_credentials",
            Reason::NoMatchingRoute => "no_matching_route",
            Reason::ApplicationNotAllowed => "application_not_allowed",
            Reason::ServiceNotAllowed => "service_not_allowed",
            Reason::MethodNotGranted => "method_not_granted",
            Reason::ResourceNotAllowed => "resource_not_allowed",
            Reason::InsufficientRole => "insufficient_role",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::BadRequest => "bad_request",
            Reason::MethodOverride => "method_override_rejected",
            Reason::TargetRewrite => "target_rewrite_rejected",
            Reason::UpgradeNotAllowed => "upgrade_not_allowed",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::UnknownKey => "unknown_key",
            Reason::TenantNotAllowed => "tenant_not_allowed",
            Reason::RevocationsUnavailable => "revocations_unavailable",
        }
    }

    /// The HTTP status a denial for this reason gets.
    pub fn status(self) -> u16 {
        match self {
            Reason::Allowed | Reason::Public | Reason::NotEnforced => 200,
            Reason::MissingToken
            | Reason::InvalidToken
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::TokenTooLarge
            | Reason::Revoked
            | Reason::UnknownKey => 401,
            Reason::ConflictingCredentials
            | Reason::AmbiguousPath
            | Reason::BadRequest
            | Reason::MethodOverride
            | Reason::TargetRewrite
            | Reason::UpgradeNotAllowed => 400,
            Reason::NoMatchingRoute
            | Reason::ApplicationNotAllowed
            | Reason::ServiceNotAllowed
            | Reason::MethodNotGranted
            | Reason::ResourceNotAllowed
            | Reason::InsufficientRole
            | Reason::InsufficientScope
            | Reason::TenantNotAllowed => 403,
            Reason::UpstreamUnavailable => 502,
            Reason::UpstreamTimeout => 504,
            Reason::KeysUnavailable | Reason::RevocationsUnavailable => 503,
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        // ALL lists the variants in declaration order (a test checks it).
        self as usize
    }

    /// Whether a request decided for this reason reaches the upstream.
    pub fn is_allow(self) -> bool {
        matches!(self, Reason::Allowed | Reason::Public | Reason::NotEnforced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(Reason::ALL[r.index()], r);
        }
    }
}
