//! Phases 1–6 of a request, decided: pure, under one snapshot at one time,
//! with nothing sent anywhere. The proxy acts on the [`Decision`] and
//! `narrowgate explain` shows it, so both give the same verdict.

use std::sync::Arc;

use http::header;
use http::{Request, StatusCode};

use super::canonical;
use crate::config::{Scan, Unmatched};
use crate::http_names::{UpgradeRefusal, upgrade};
use crate::policy::{Allowed, Denial, evaluate};
use crate::reason::Reason;
use crate::runtime::Snapshot;
use crate::token::Grant;

/// A request decided: what phases 1–6 found, and the one [`Verdict`].
/// `enforce` acts on it and `record` reports it; the audit log and shadow
/// mode plug in there.
#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    /// The matched route (index into the snapshot's routes).
    pub route: Option<usize>,
    /// Its application (index into the snapshot's applications).
    pub app: Option<usize>,
    /// The verified grant, when a token was checked and held.
    pub grant: Option<Arc<Grant>>,
    /// The canonical path when it differs from the request's.
    pub rewritten_path: Option<String>,
    /// A WebSocket handshake the route accepts.
    pub upgrade: bool,
    /// The headers the client-header policy classified.
    pub headers: Scan,
    /// The resource id the request touches, decoded (kept only when the
    /// audit log is on).
    pub resource_id: Option<Box<str>>,
    /// When its token was verified on a cache miss (a trace's span).
    pub verified: Option<crate::auth::Verification>,
}

/// What happens to the request, and why: one value, so no combination of
/// reason, verdict, shadow and limit can disagree with another.
#[derive(Debug)]
pub enum Verdict {
    /// Forwarded: `allowed` (`by` the rule or tenant permission that
    /// allowed it) or `public` (`by` none).
    Allow { reason: Reason, by: Option<Allowed> },
    /// Forwarded in shadow mode though the access rules deny it, for
    /// `would` (with what was missing).
    Shadow { would: Reason, denial: Option<Denial> },
    /// Refused for `reason`; `status` overrides the reason's (404 for
    /// unmatched routes if so configured).
    Deny { reason: Reason, denial: Option<Denial>, status: Option<StatusCode> },
    /// Over a rate limit: 429, in every mode.
    Limited(crate::ratelimit::Limited),
}

impl Verdict {
    fn deny(reason: Reason) -> Self {
        Verdict::Deny { reason, denial: None, status: None }
    }
}

impl Decision {
    pub(super) fn deny(reason: Reason) -> Self {
        Decision::facts(Verdict::deny(reason))
    }

    /// `verdict`, with no facts found yet.
    fn facts(verdict: Verdict) -> Self {
        Decision {
            verdict,
            route: None,
            app: None,
            grant: None,
            rewritten_path: None,
            upgrade: false,
            headers: Scan::default(),
            resource_id: None,
            verified: None,
        }
    }

    /// Refused for the client's rate, before anything else was looked at.
    pub(super) fn limited(l: crate::ratelimit::Limited) -> Self {
        Decision::facts(Verdict::Limited(l))
    }

    /// Over a rate limit: refused with 429, whatever it was decided
    /// before, in every mode.
    pub(super) fn over_limit(mut self, l: crate::ratelimit::Limited) -> Self {
        self.verdict = Verdict::Limited(l);
        self
    }

    /// The reason it ends with (`shadow` for a shadowed request).
    pub fn reason(&self) -> Reason {
        match &self.verdict {
            Verdict::Allow { reason, .. } | Verdict::Deny { reason, .. } => *reason,
            Verdict::Shadow { .. } => Reason::Shadow,
            Verdict::Limited(_) => Reason::RateLimited,
        }
    }

    /// Whether it is forwarded (allowed or shadowed).
    pub fn is_allow(&self) -> bool {
        matches!(self.verdict, Verdict::Allow { .. } | Verdict::Shadow { .. })
    }

    /// What a shadowed request would have been denied for.
    pub fn would_deny(&self) -> Option<Reason> {
        match &self.verdict {
            Verdict::Shadow { would, .. } => Some(*would),
            _ => None,
        }
    }

    /// The id of the access rule that allowed the request, if one did.
    pub fn rule_id(&self) -> Option<&str> {
        match (&self.verdict, &self.grant) {
            (Verdict::Allow { by: Some(Allowed::Rule(i)), .. }, Some(g)) => g.rules.get(*i).map(|r| &*r.id),
            _ => None,
        }
    }
}

/// Phases 1–6 of a request under `snap`. The client certificate its
/// connection presented, if any, is the request's `Arc<PeerIdentity>`
/// extension (what a certificate-bound token is checked against). In shadow mode a denial by the
/// access rules of a verified token on a matched route becomes a forward
/// that remembers it; nothing else is relaxed — no route, no or a bad
/// credential, revocation and hygiene are refused in every mode, and a
/// request asking for an upgrade is never shadowed (no unenforced tunnel).
pub fn decide<B>(snap: &Snapshot, req: &Request<B>, now: u64) -> Decision {
    let mut d = judge(snap, req, now);
    let shadowed_app = d.app.filter(|a| d.route.is_some() && snap.shadows(*a));
    if d.reason().is_rule_denial() && d.grant.is_some() && !d.upgrade && shadowed_app.is_some() {
        let placeholder = Verdict::Allow { reason: Reason::Shadow, by: None };
        if let Verdict::Deny { reason, denial, .. } = std::mem::replace(&mut d.verdict, placeholder) {
            d.verdict = Verdict::Shadow { would: reason, denial };
        }
    }
    d
}

/// The policy's decision, shadow mode aside.
fn judge<B>(snap: &Snapshot, req: &Request<B>, now: u64) -> Decision {
    // The request line and Host must be unambiguous before anything else.
    if req.method() == http::Method::CONNECT || req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return Decision::deny(Reason::BadRequest);
    }
    if req.headers().get_all(header::HOST).iter().count() != 1 {
        return Decision::deny(Reason::BadRequest);
    }
    let scan = snap.headers.scan(req.headers());
    if let Some(reason) = scan.refusal {
        return Decision::deny(reason);
    }
    // Phase 1: canonicalize.
    let Ok(canonical) = canonical::canonicalize(req.uri().path()) else {
        return Decision::deny(Reason::AmbiguousPath);
    };
    let rewritten_path = match &canonical {
        std::borrow::Cow::Owned(s) => Some(s.clone()),
        std::borrow::Cow::Borrowed(_) => None,
    };
    // Only a well-formed WebSocket handshake may ask for an upgrade, and
    // only on a `ws` route (checked once the route is known).
    let upgrade = match scan.upgrade_related.then(|| upgrade(req.method(), req.version(), req.headers())) {
        None | Some(Ok(false)) => false,
        Some(Ok(true)) => true,
        Some(Err(UpgradeRefusal::Protocol)) => return Decision::deny(Reason::UpgradeNotAllowed),
        Some(Err(UpgradeRefusal::Handshake)) => return Decision::deny(Reason::BadRequest),
    };
    let mut decision = Decision {
        rewritten_path,
        upgrade,
        headers: scan,
        ..Decision::facts(Verdict::Allow { reason: Reason::Allowed, by: None })
    };
    let deny = |mut d: Decision, reason: Reason, denial: Option<Denial>| {
        d.verdict = Verdict::Deny { reason, denial, status: None };
        d
    };

    // Phase 2: route, among the routes of the applications serving the
    // request's host when applications declare hosts.
    let Some(router) = router_for(snap, req) else {
        return deny(decision, Reason::UnknownHost, None);
    };
    let Some(found) = router.at(&snap.routes, req.method(), &canonical) else {
        let status = (snap.unmatched == Unmatched::NotFound).then_some(StatusCode::NOT_FOUND);
        decision.verdict = Verdict::Deny { reason: Reason::NoMatchingRoute, denial: None, status };
        return decision;
    };
    let route = &snap.routes[found.route];
    decision.route = Some(found.route);
    decision.app = Some(route.app_index);
    if upgrade && &*route.service != "ws" {
        return deny(decision, Reason::UpgradeNotAllowed, None);
    }
    let resource_id = found.resource_id.map(canonical::decode_segment);
    if snap.audit {
        decision.resource_id = resource_id.as_deref().map(Into::into);
    }
    let tenant = found.tenant.map(canonical::decode_segment);
    let Some(facts) = route.facts(resource_id.as_deref(), tenant.as_deref()) else {
        // A public route: no token is checked.
        decision.verdict = Verdict::Allow { reason: Reason::Public, by: None };
        return decision;
    };

    // Phases 3–5: credential, verification, revocation.
    let grant = match snap.auth.authenticate_noting(req.headers(), req.uri().query(), now, &mut decision.verified) {
        Ok(g) => g,
        Err(reason) => return deny(decision, reason, None),
    };
    // A certificate-bound token only on a connection that presented that
    // certificate: a stolen bound token is useless without its key.
    let presented = req.extensions().get::<Arc<crate::tls::PeerIdentity>>().map(|p| &p.thumbprint);
    if let Err(reason) = crate::auth::check_binding(&grant, presented) {
        decision.grant = Some(grant);
        return deny(decision, reason, None);
    }

    // Phase 6: evaluate the access rules (and tenant permissions).
    let verdict = evaluate(&grant.rules, &grant.tenants, &facts);
    decision.grant = Some(grant);
    match verdict {
        crate::policy::Decision::Allow(by) => {
            decision.verdict = Verdict::Allow { reason: Reason::Allowed, by: Some(by) };
            decision
        }
        crate::policy::Decision::Deny(denial) => {
            let reason = denial.reason;
            deny(decision, reason, Some(denial))
        }
    }
}

/// The router of the request's host: the one router when no application
/// declares hosts; `None` when applications do and none serves this one.
/// No allocation: the host is lowercased on the stack.
pub fn router_for<'s, B>(snap: &'s Snapshot, req: &Request<B>) -> Option<&'s crate::policy::Router> {
    if !snap.router.by_host() {
        return Some(&snap.router);
    }
    let host = req.headers().get(header::HOST).and_then(|v| host_name(v.as_bytes()))?;
    let mut buf = [0u8; 255];
    let lower = buf.get_mut(..host.len())?;
    lower.copy_from_slice(host);
    lower.make_ascii_lowercase();
    snap.router.for_host(std::str::from_utf8(lower).ok()?)
}

/// A `Host` header's host without its port (`[::1]` keeps its brackets);
/// `None` unless it is a DNS name, an IPv4 address or a bracketed IPv6
/// address, with at most a numeric port.
fn host_name(v: &[u8]) -> Option<&[u8]> {
    let (host, port) = match v.first() {
        Some(b'[') => {
            let end = v.iter().position(|b| *b == b']')?;
            let (host, rest) = v.split_at(end + 1);
            (host, rest)
        }
        _ => match v.iter().position(|b| *b == b':') {
            Some(colon) => (&v[..colon], &v[colon..]),
            None => (v, &[][..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty() && inner.iter().all(|b| b.is_ascii_hexdigit() || b".:".contains(b))
        }
        _ => !host.is_empty() && host.iter().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b)),
    };
    (port_ok && host_ok).then_some(host)
}

#[cfg(test)]
mod host_tests {
    use super::host_name;

    #[test]
    fn a_host_header_is_its_host_without_the_port_or_nothing() {
        for (header, host) in [
            ("api.example.com", Some("api.example.com")),
            ("API.Example.com:8443", Some("API.Example.com")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("[::1]:8443", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("user@api.example.com", None),
            ("api.example.com:", None),
            ("api.example.com:80:80", None),
            ("api.example.com:http", None),
            ("[::1", None),
            ("[]", None),
            ("", None),
            ("a b", None),
            ("a/b", None),
        ] {
            assert_eq!(host_name(header.as_bytes()), host.map(str::as_bytes), "{header:?}");
        }
    }
}
