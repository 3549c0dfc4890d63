//! The closed set of reasons a request is decided for.
//!
//! One code per outcome, used alike in response bodies, logs and metric
//! labels. Codes are stable snake_case strings: clients and dashboards key on
//! them, so a code is never renamed, only added.

/// Why a request was allowed or denied. The closed set is derived
/// ([`Reason::iter`]), so metrics and tests cannot forget a new reason;
/// the code is the variant's snake_case name unless given.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, strum::EnumIter, strum::EnumCount, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    /// The token's access rules allow the route.
    Allowed,
    /// The route is public: no token is checked.
    Public,
    /// Denied by the token's access rules, forwarded anyway: the
    /// application (or the gateway) is in shadow mode. What it would have
    /// been denied for is in the audit event, `narrowgate_would_deny_total`
    /// and the header the upstream gets instead of the identity headers.
    Shadow,
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
    #[strum(serialize = "method_override_rejected")]
    MethodOverride,
    /// A header that rewrites the target (`X-Original-URL`, …).
    #[strum(serialize = "target_rewrite_rejected")]
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
    /// Over a rate limit (per client, token, subject or application).
    RateLimited,
    /// The token is bound to a client certificate (RFC 8705 `cnf`) and the
    /// connection did not present that certificate (or none).
    CertificateMismatch,
    /// Applications declare the hosts they serve, and none serves the
    /// request's `Host`: never sent to another application's upstream.
    UnknownHost,
    /// No connection to the upstream could be made (refused, unreachable,
    /// its name not resolved, no connection within the connect timeout).
    UpstreamConnect,
    /// The TLS handshake with the upstream failed: its certificate is not
    /// trusted or not for its name, or the protocol failed.
    UpstreamTls,
    /// The decision listener was asked about a request by an address that
    /// is not one of `decision.peers`: its description is not believed.
    UntrustedPeer,
    /// The request carries something the gateway would remove before the
    /// upstream sees it — a credential in the query or among other
    /// cookies, an identity or credential header in another spelling —
    /// and the front proxy asking the decision listener cannot remove it.
    #[strum(serialize = "cannot_remove")]
    CannotRemove,
}

impl Reason {
    /// Every reason, in declaration order.
    pub fn iter() -> ReasonIter {
        <Reason as strum::IntoEnumIterator>::iter()
    }

    /// How many reasons there are.
    pub const COUNT: usize = <Reason as strum::EnumCount>::COUNT;

    /// The stable code.
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// The HTTP status a denial for this reason gets.
    pub fn status(self) -> u16 {
        match self {
            Reason::Allowed | Reason::Public | Reason::Shadow => 200,
            Reason::MissingToken
            | Reason::InvalidToken
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::TokenTooLarge
            | Reason::Revoked
            | Reason::UnknownKey
            | Reason::CertificateMismatch => 401,
            Reason::ConflictingCredentials
            | Reason::AmbiguousPath
            | Reason::BadRequest
            | Reason::MethodOverride
            | Reason::TargetRewrite
            | Reason::UpgradeNotAllowed
            | Reason::CannotRemove => 400,
            Reason::NoMatchingRoute
            | Reason::ApplicationNotAllowed
            | Reason::ServiceNotAllowed
            | Reason::MethodNotGranted
            | Reason::ResourceNotAllowed
            | Reason::InsufficientRole
            | Reason::InsufficientScope
            | Reason::TenantNotAllowed
            | Reason::UntrustedPeer => 403,
            Reason::UpstreamUnavailable | Reason::UpstreamConnect | Reason::UpstreamTls => 502,
            Reason::UpstreamTimeout => 504,
            Reason::KeysUnavailable | Reason::RevocationsUnavailable => 503,
            Reason::RateLimited => 429,
            // RFC 9110 §15.5.20: this server does not answer for that host.
            Reason::UnknownHost => 421,
        }
    }

    /// Position in declaration order (metric handles are indexed by it).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether a request decided for this reason reaches the upstream.
    pub fn is_allow(self) -> bool {
        matches!(self, Reason::Allowed | Reason::Public | Reason::Shadow)
    }

    /// Whether this is a denial by the token's access rules (or tenant
    /// permissions) — the only kind shadow mode may forward, and only for
    /// a verified token on a matched route. Every other denial (no route,
    /// credential, signature, expiry, revocation, request hygiene, rate
    /// limits) is enforced in every mode.
    pub fn is_rule_denial(self) -> bool {
        matches!(
            self,
            Reason::ApplicationNotAllowed
                | Reason::ServiceNotAllowed
                | Reason::MethodNotGranted
                | Reason::ResourceNotAllowed
                | Reason::InsufficientRole
                | Reason::InsufficientScope
                | Reason::TenantNotAllowed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in Reason::iter().enumerate() {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(r.index(), i);
            assert_eq!(r.code().parse::<Reason>().ok(), Some(r));
        }
        assert_eq!(seen.len(), Reason::COUNT);
        assert_eq!(Reason::MethodOverride.code(), "method_override_rejected");
        assert_eq!(Reason::InsufficientScope.code(), "insufficient_scope");
    }
}
