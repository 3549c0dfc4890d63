//! Why a request would be allowed or denied: the request path's own
//! decision (`proxy::decide`, under the policy in force), and beside it what
//! led there — the canonical path, the route (or the nearest ones), where
//! the credential was found, what verifying it gave, and each of the
//! token's rules against the route with the first dimension that failed.
//!
//! Served by `narrowgate explain` (offline, from a config file) and by
//! `POST /explain` on the admin listener; both call [`explain`]. It never
//! repeats the token: the request target it shows has its query
//! credentials redacted, and nothing else carries the credential.

use serde::{Deserialize, Serialize};

use crate::auth::credential;
use crate::config::CredentialSource;
use crate::policy::manifest::RouteAccess;
use crate::policy::rules::{Dimension, Miss, first_failure};
use crate::proxy::canonical;
use crate::proxy::decide::Verdict;
use crate::reason::Reason;
use crate::runtime::Snapshot;

/// What to explain: a request as the gateway would see it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// A bearer token (as `Authorization: Bearer …`).
    #[serde(default)]
    pub token: Option<String>,
    /// Request headers as sent (credentials found in them as the gateway
    /// would find them).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The client certificate the request's connection presents (PEM), as
    /// if the handshake had verified it: what a certificate-bound token
    /// is checked against.
    #[serde(default)]
    pub client_certificate: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub method: String,
    /// The request target as given, with the value of every query
    /// parameter the gateway reads as a credential redacted (`…`).
    pub target: String,
    /// The canonical path matched and forwarded…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_path: Option<String>,
    /// …or why the path is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteView>,
    /// When no route matched: the routes that came closest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nearest_routes: Vec<String>,
    /// Where the credential was found (`bearer`, `header auth-token`,
    /// `query accessTokenId`, `cookie …`), `none`, or why it is unusable.
    pub credential: String,
    /// The token as verified, or why it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Each access rule of the token against the route.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleCheck>,
    /// When the route acts on a tenant: the tenant permission that decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The gateway's decision: `allow`, `deny` or `shadow` (denied by the
    /// policy, forwarded), its reason code and the status it answers with.
    pub decision: &'static str,
    pub reason: &'static str,
    pub status: u16,
    /// The config's hash: which policy answered.
    pub config_hash: String,
    /// What this answer could not know, each in a sentence: offline, the
    /// parts of the gateway's state that live elsewhere (a store not read,
    /// a JWKS URL not reached, an issuer's revocation feed). Empty when
    /// the answer stands on everything the gateway itself would have.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_known: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RouteView {
    pub template: String,
    pub application: String,
    pub service: String,
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `entity` and the id this request touches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<(String, String)>,
    /// The tenant this request acts on, and the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<(String, String)>,
}

#[derive(Debug, Serialize)]
pub struct Verification {
    /// `ok`, or the reason code (`expired`, `unknown_key`, `revoked`, …).
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Why a token was refused, where the reason code alone would leave
    /// the reader guessing (a key this config does not have).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RuleCheck {
    pub id: String,
    /// `allows`, or the first dimension that fails and why, in words.
    pub result: String,
    /// The first dimension that fails…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<Dimension>,
    /// …and why: the rule grants other values, none at all, or the route
    /// names none (only `*` covers a route without a resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss: Option<Miss>,
}

/// Explain `q` under `snap`, at `now`.
pub fn explain(snap: &Snapshot, q: &Question, now: u64) -> Explanation {
    let request = build(q);
    let decision = match &request {
        Ok(req) => Some(crate::proxy::decide::decide(snap, req, now)),
        Err(_) => None,
    };
    let (decision_word, reason, status) = match &decision {
        // Shadow mode: forwarded, and what the policy denies it for.
        Some(d) => match &d.verdict {
            Verdict::Shadow { would, .. } => ("shadow", would.code(), 200),
            Verdict::Allow { reason, .. } => ("allow", reason.code(), reason.status()),
            Verdict::Deny { reason, status, .. } => {
                ("deny", reason.code(), status.map_or(reason.status(), |s| s.as_u16()))
            }
            Verdict::Limited(_) => ("deny", Reason::RateLimited.code(), Reason::RateLimited.status()),
        },
        None => ("deny", Reason::BadRequest.code(), 400),
    };
    let (path, query) = q.path.split_once('?').map_or((q.path.as_str(), None), |(p, q)| (p, Some(q)));
    let target = match query {
        Some(query) => format!("{path}?{}", credential::redact_query(query, &snap.query_credentials)),
        None => path.to_string(),
    };
    let canonical_path = canonical::canonicalize(path).map(|c| c.into_owned()).map_err(|e| e.to_string());
    let mut out = Explanation {
        method: q.method.clone(),
        target,
        path_refused: canonical_path.as_ref().err().cloned(),
        canonical_path: canonical_path.ok(),
        route: None,
        nearest_routes: Vec::new(),
        credential: "none".into(),
        verification: None,
        rules: Vec::new(),
        tenant: None,
        decision: decision_word,
        reason,
        status,
        config_hash: snap.hash.clone(),
        not_known: Vec::new(),
    };
    let (Ok(req), Some(canonical)) = (&request, &out.canonical_path) else { return out };
    let (source, reference_form) = credential_source(snap.auth.credentials(), req.headers(), req.uri().query());
    out.credential = source;
    let found = crate::proxy::decide::router_for(snap, req).and_then(|r| r.at(&snap.routes, req.method(), canonical));
    let Some(found) = found else {
        out.nearest_routes = nearest(snap, req.method(), canonical);
        return out;
    };
    let route = &snap.routes[found.route];
    let resource_id = found.resource_id.map(canonical::decode_segment);
    let tenant = found.tenant.map(canonical::decode_segment);
    let facts = route.facts(resource_id.as_deref(), tenant.as_deref());
    out.route = Some(view(route, facts.as_ref()));
    let Some(facts) = facts else { return out };
    let presented = req.extensions().get::<std::sync::Arc<crate::tls::PeerIdentity>>().map(|p| &p.thumbprint);
    let grant = snap
        .auth
        .authenticate(req.headers(), req.uri().query(), now)
        .and_then(|g| crate::auth::check_binding(&g, presented).map(|()| g));
    out.verification = Some(match &grant {
        Ok(g) => Verification {
            result: "ok",
            jti: Some(g.token_id.to_string()),
            subject: Some(g.subject.to_string()),
            issuer: Some(g.issuer.to_string()),
            kid: g.kid.as_deref().map(str::to_string),
            expires_at: g.expires_at,
            detail: None,
        },
        Err(reason) => Verification {
            result: reason.code(),
            jti: None,
            subject: None,
            issuer: None,
            kid: None,
            expires_at: None,
            detail: refusal_detail(snap, *reason, reference_form),
        },
    });
    let Ok(grant) = grant else { return out };
    out.rules = grant
        .rules
        .iter()
        .map(|r| {
            let failure = first_failure(r, &facts);
            RuleCheck {
                id: r.id.to_string(),
                result: failure.map_or_else(|| "allows".into(), |f| failure_words(f.dimension, f.miss)),
                dimension: failure.map(|f| f.dimension),
                miss: failure.map(|f| f.miss),
            }
        })
        .collect();
    // An identity provider's token: its issuer's mapping rules that
    // granted it nothing, and why.
    out.rules.extend(grant.unmapped.iter().map(|(id, why)| RuleCheck {
        id: id.to_string(),
        result: format!("not granted by the claim mapping: {why}"),
        dimension: None,
        miss: None,
    }));
    if let Some((name, action)) = facts.tenant {
        out.tenant = Some(match crate::policy::tenant::deciding(&grant.tenants, name) {
            Some(i) if grant.tenants[i].allowed_actions.iter().any(|a| a == "*" || a == action) => {
                format!("tenant permission {i} ({}) allows {action}", grant.tenants[i].tenant)
            }
            Some(i) => format!("tenant permission {i} ({}) does not allow {action}", grant.tenants[i].tenant),
            None if grant.tenants.is_empty() => "the token has no tenant permissions".into(),
            None => format!("no tenant permission names {name}"),
        });
    }
    out
}

/// A rule's failure in words: "fails on" only where the rule grants other
/// values than the route needs.
fn failure_words(d: Dimension, miss: Miss) -> String {
    let d = d.word();
    match miss {
        Miss::NotGranted => format!("fails on {d}"),
        Miss::RuleGrantsNone => format!("grants no {d} at all"),
        Miss::RouteNamesNone => {
            format!("the route names no single {d}, so only a rule granting every {d} (*) covers it")
        }
    }
}

/// What a refusal's code leaves unsaid: a key this config does not have
/// (named by the config's key ids, never the token's), a reference token
/// this gateway does not know.
fn refusal_detail(snap: &Snapshot, reason: Reason, reference_form: bool) -> Option<String> {
    match reason {
        Reason::UnknownKey => {
            let keys = snap.auth.keys().current();
            let kids: Vec<&str> = keys.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
            Some(format!(
                "the token was signed with a key this config does not have (its key ids: {}); a token from another \
                 gateway or another run (`narrowgate demo` makes new keys each time: explain its tokens with the \
                 config it prints as NG_CONFIG) is unknown here",
                if kids.is_empty() { "none".to_string() } else { kids.join(", ") }
            ))
        }
        Reason::InvalidToken if reference_form => Some(
            "not a JWT, and this gateway knows no reference token with this secret (reference tokens come from \
             its store; a gateway without one knows none)"
                .into(),
        ),
        _ => None,
    }
}

/// The request as the proxy would receive it.
fn build(q: &Question) -> Result<http::Request<()>, http::Error> {
    let mut b = http::Request::builder().method(q.method.as_str()).uri(q.path.as_str());
    let mut host = false;
    for (k, v) in &q.headers {
        host |= k.eq_ignore_ascii_case("host");
        b = b.header(k.as_str(), v.as_str());
    }
    if !host {
        b = b.header(http::header::HOST, "explain.local");
    }
    if let Some(t) = &q.token {
        b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(pem) = &q.client_certificate {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        // Not a certificate: no certificate presented.
        if let Some(Ok(der)) = CertificateDer::pem_slice_iter(pem.as_bytes()).next() {
            b = b.extension(std::sync::Arc::new(crate::tls::PeerIdentity::of(&der)));
        }
    }
    b.body(())
}

/// Which configured source holds the credential (`none`, or why it is
/// unusable), and whether it is looked up as a reference token.
fn credential_source(sources: &[CredentialSource], headers: &http::HeaderMap, query: Option<&str>) -> (String, bool) {
    let reference_form = match credential::extract(sources, headers, query) {
        Ok(None) => return ("none".into(), false),
        Err(credential::CredentialError::Conflict) => return ("conflicting (two different credentials)".into(), false),
        Err(_) => return ("malformed".into(), false),
        Ok(Some(token)) => crate::auth::is_reference_form(&token),
    };
    for s in sources {
        if let Ok(Some(_)) = credential::extract(std::slice::from_ref(s), headers, query) {
            let label = match s {
                CredentialSource::Bearer => "bearer".into(),
                CredentialSource::Header(h) => format!("header {h}"),
                CredentialSource::Query(q) => format!("query {q}"),
                CredentialSource::Cookie(c) => format!("cookie {c}"),
            };
            return (label, reference_form);
        }
    }
    ("none".into(), false)
}

fn view(route: &crate::policy::Route, facts: Option<&crate::policy::RouteFacts<'_>>) -> RouteView {
    let (group, method, roles, scopes) = match &route.access {
        RouteAccess::Public => (None, None, Vec::new(), Vec::new()),
        RouteAccess::Protected { group, method, roles, scopes, .. } => (
            Some(group.to_string()),
            Some(method.to_string()),
            roles.iter().map(|r| r.to_string()).collect(),
            scopes.iter().map(|s| s.to_string()).collect(),
        ),
    };
    RouteView {
        template: route.template.to_string(),
        application: route.application.to_string(),
        service: route.service.to_string(),
        public: matches!(route.access, RouteAccess::Public),
        group,
        method,
        roles,
        scopes,
        resource: facts.and_then(|f| f.resource).map(|(e, i)| (e.to_string(), i.to_string())),
        tenant: facts.and_then(|f| f.tenant).map(|(t, a)| (t.to_string(), a.to_string())),
    }
}

/// The routes closest to a request no route matched: those whose path
/// shares the longest run of leading segments with it (a route that
/// matches the path with another method first).
fn nearest(snap: &Snapshot, method: &http::Method, path: &str) -> Vec<String> {
    let wanted: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut scored: Vec<(usize, &str)> = snap
        .routes
        .iter()
        .map(|r| {
            let segs: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
            let same = wanted
                .iter()
                .zip(&segs)
                .take_while(|(w, s)| w == s || (s.starts_with('{') && s.ends_with('}')))
                .count();
            let whole = same == wanted.len() && same == segs.len();
            // A path match with another method outranks any partial match.
            let score = if whole { 1000 } else { same * 10 } + usize::from(r.method == *method);
            (score, &*r.template)
        })
        .filter(|(score, _)| *score >= 10)
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().take(3).map(|(_, t)| t.to_string()).collect()
}
