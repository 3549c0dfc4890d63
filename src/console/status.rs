//! The manifest in force and the gateway's status.

use super::*;

/// A route as the manifest page shows it.
pub(super) struct RouteRow {
    template: String,
    application: String,
    service: String,
    needs: String,
}

#[derive(Template)]
#[template(path = "console/manifest.html")]
pub(super) struct ManifestPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    hash: String,
    apps: Vec<crate::policy::manifest::Application>,
    routes: Vec<RouteRow>,
}

pub(super) async fn manifest(State(s): State<Console>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    let routes = signed
        .snap
        .routes
        .iter()
        .map(|r| RouteRow {
            template: r.template.to_string(),
            application: r.application.to_string(),
            service: r.service.to_string(),
            needs: match &r.access {
                crate::policy::manifest::RouteAccess::Public => "public: no token".into(),
                crate::policy::manifest::RouteAccess::Protected { group, method, scopes, roles, resource, tenant } => {
                    let mut needs = format!("{group} / {method}");
                    if !roles.is_empty() {
                        needs.push_str(&format!("; a role of {}", roles.join(", ")));
                    }
                    if !scopes.is_empty() {
                        needs.push_str(&format!("; scopes {}", scopes.join(", ")));
                    }
                    if let Some(res) = resource {
                        needs.push_str(&format!("; the {} in the path", res.entity));
                    }
                    if tenant.is_some() {
                        needs.push_str("; or a tenant permission");
                    }
                    needs
                }
            },
        })
        .collect();
    page(
        StatusCode::OK,
        &ManifestPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            hash: signed.snap.hash.clone(),
            apps: signed.snap.service.manifest.applications.clone(),
            routes,
        },
    )
}

#[derive(Template)]
#[template(path = "console/status.html")]
pub(super) struct StatusPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    hash: String,
    applications: usize,
    routes: usize,
    mode: &'static str,
    signing: String,
    revocations: String,
    references: usize,
    store: String,
    keys: Vec<(String, String, String, String)>,
    key_sources: String,
    sessions_open: usize,
    sessions_max: usize,
    sessions_per_token: usize,
    throttled: usize,
}

pub(super) async fn status(State(s): State<Console>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    let snap = &signed.snap;
    let shared = s.runtime.shared();
    let ring = snap.auth.keys();
    let set = ring.current();
    let keys = set
        .keys
        .iter()
        .map(|k| {
            let issuer = set.issuers.get(k.issuer);
            (
                issuer.map(|i| i.name.clone()).unwrap_or_default(),
                issuer.map(|i| i.issuer.clone()).unwrap_or_default(),
                k.kid.clone().unwrap_or_else(|| "(none)".into()),
                format!("{:?}", k.algorithm),
            )
        })
        .collect();
    let key_sources = match (ring.is_remote(), ring.degraded()) {
        (false, _) => "configured files".to_string(),
        (true, false) => "configured files and JWKS URLs, fetched".to_string(),
        (true, true) => {
            "configured files and JWKS URLs; a fetch is failing (the last good keys are in use)".to_string()
        }
    };
    let revocations = match shared.revocations.last_confirmed_secs() {
        None => format!("{} revoked ids (from this gateway's store)", shared.revocations.len()),
        Some(_) => format!(
            "{} revoked ids, followed from an issuer's feed; confirmed {} s ago",
            shared.revocations.len(),
            shared.revocations.staleness().as_secs()
        ),
    };
    let store = match s.service.list(&signed.grant, &TokenFilter { limit: 1, ..TokenFilter::default() }).await {
        Ok(_) => "reachable".to_string(),
        Err(e) => format!("failing ({})", e.code()),
    };
    page(
        StatusCode::OK,
        &StatusPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            hash: snap.hash.clone(),
            applications: snap.service.manifest.applications.len(),
            routes: snap.routes.len(),
            mode: if snap.mode == crate::policy::Mode::Shadow {
                "shadow (authorization denials forwarded and recorded)"
            } else {
                "enforce"
            },
            signing: snap
                .service
                .signing
                .as_ref()
                .and_then(|sg| sg.keys.get(sg.active).map(|k| format!("{} with key {}", sg.issuer, k.kid)))
                .unwrap_or_else(|| "nothing (no signing key)".into()),
            revocations,
            references: shared.references.len(),
            store,
            keys,
            key_sources,
            sessions_open: s.console.sessions.open_count(s.service.now().secs(), &snap.console).await,
            sessions_max: snap.console.max_sessions,
            sessions_per_token: snap.console.max_sessions_per_token,
            throttled: s.console.failures.waiting(s.service.now().secs(), &snap.console.failed_sign_ins),
        },
    )
}
