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

/// A request decided: what phases 1–6 found, as one value. `enforce`
/// acts on it and `record` reports it; the audit log and shadow mode plug
/// in there.
#[derive(Debug)]
pub struct Decision {
    /// Why: `allowed`, `public`, `not_enforced`, or the denial's reason.
    pub reason: Reason,
    /// The matched route (index into the snapshot's routes).
    pub route: Option<usize>,
    /// Its application (index into the snapshot's applications).
    pub app: Option<usize>,
    /// The verified grant, when a token was checked and held.
    pub grant: Option<Arc<Grant>>,
    pub verdict: Verdict,
    /// The canonical path when it differs from the request's.
    pub rewritten_path: Option<String>,
    /// A WebSocket handshake the route accepts.
    pub upgrade: bool,
    /// The headers the client-header policy classified.
    pub headers: Scan,
    /// The resource id the request touches, decoded (kept only when the
    /// audit log is on).
    pub resource_id: Option<Box<str>>,
    /// Shadow mode: what the policy denied it for, and what was missing;
    /// the request is forwarded (`reason` is `shadow`).
    pub would_deny: Option<(Reason, Option<Denial>)>,
    /// The rate limit it went over (refused with 429, or shadowed).
    pub limited: Option<crate::ratelimit::Limited>,
}

/// Allow, and by what; or deny, with what was missing.
#[derive(Debug)]
pub enum Verdict {
    /// `None` for public routes and enforcement off.
    Allow(Option<Allowed>),
    /// `status` overrides the reason's (404 for unmatched routes if so
    /// configured).
    Deny { denial: Option<Denial>, status: Option<StatusCode> },
}

impl Decision {
    pub(super) fn deny(reason: Reason) -> Self {
        Decision {
            reason,
            route: None,
            app: None,
            grant: None,
            verdict: Verdict::Deny { denial: None, status: None },
            rewritten_path: None,
            upgrade: false,
            headers: Scan::default(),
            resource_id: None,
            would_deny: None,
            limited: None,
        }
    }

    /// Refused for the client's rate, before anything else was looked at.
    pub(super) fn limited(l: crate::ratelimit::Limited) -> Self {
        let mut d = Decision::deny(Reason::RateLimited);
        d.limited = Some(l);
        d
    }

    /// Over a rate limit: refused with 429, whatever it was decided
    /// before, in every mode.
    pub(super) fn over_limit(mut self, l: crate::ratelimit::Limited) -> Self {
        self.limited = Some(l);
        self.reason = Reason::RateLimited;
        self.verdict = Verdict::Deny { denial: None, status: None };
        self.would_deny = None;
        self
    }

    pub fn is_allow(&self) -> bool {
        matches!(self.verdict, Verdict::Allow(_))
    }

    /// The id of the access rule that allowed the request, if one did.
    pub fn rule_id(&self) -> Option<&str> {
        match (&self.verdict, &self.grant) {
            (Verdict::Allow(Some(Allowed::Rule(i))), Some(g)) => g.rules.get(*i).map(|r| &*r.id),
            _ => None,
        }
    }
}

/// Phases 1–6 of a request under `snap`. In shadow mode a denial by the
/// access rules of a verified token on a matched route becomes a forward
/// that remembers it; nothing else is relaxed — no route, no or a bad
/// credential, revocation and hygiene are refused in every mode, and a
/// request asking for an upgrade is never shadowed (no unenforced tunnel).
pub fn decide<B>(snap: &Snapshot, req: &Request<B>, now: u64) -> Decision {
    let mut d = judge(snap, req, now);
    let shadowed_app = d.app.filter(|a| d.route.is_some() && snap.shadows(*a));
    if d.reason.is_rule_denial() && d.grant.is_some() && !d.upgrade && shadowed_app.is_some() {
        if let Verdict::Deny { denial, .. } = std::mem::replace(&mut d.verdict, Verdict::Allow(None)) {
            d.would_deny = Some((d.reason, denial));
        }
        d.reason = Reason::Shadow;
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
        reason: Reason::Allowed,
        route: None,
        app: None,
        grant: None,
        verdict: Verdict::Allow(None),
        rewritten_path,
        upgrade,
        headers: scan,
        resource_id: None,
        would_deny: None,
        limited: None,
    };
    let deny = |mut d: Decision, reason: Reason, denial: Option<Denial>| {
        d.reason = reason;
        d.verdict = Verdict::Deny { denial, status: None };
        d
    };

    // Phase 2: route.
    let Some(found) = snap.router.at(&snap.routes, req.method(), &canonical) else {
        let mut d = deny(decision, Reason::NoMatchingRoute, None);
        if snap.unmatched == Unmatched::NotFound {
            d.verdict = Verdict::Deny { denial: None, status: Some(StatusCode::NOT_FOUND) };
        }
        return d;
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
        decision.reason = Reason::Public;
        return decision;
    };

    // Phases 3–5: credential, verification, revocation.
    let grant = match snap.auth.authenticate(req.headers(), req.uri().query(), now) {
        Ok(g) => g,
        Err(reason) => return deny(decision, reason, None),
    };

    // Phase 6: evaluate the access rules (and tenant permissions).
    let verdict = evaluate(&grant.rules, &grant.tenants, &facts);
    decision.grant = Some(grant);
    match verdict {
        crate::policy::Decision::Allow(by) => {
            decision.reason = Reason::Allowed;
            decision.verdict = Verdict::Allow(Some(by));
            decision
        }
        crate::policy::Decision::Deny(denial) => {
            let reason = denial.reason;
            deny(decision, reason, Some(denial))
        }
    }
}
