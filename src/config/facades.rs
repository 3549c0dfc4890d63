//! The compatibility facades on the api listener: MetaApi's and Crafter
//! Profile's token APIs, and ProdManager's with the applications whose
//! secrets may create tokens and what each permission grants.

use http::HeaderName;
use serde::Deserialize;

use super::network::{CredentialSource, Listeners};
use super::{Errors, parse_sha256_hex};
use crate::policy::Manifest;

/// Which compatibility facades the api listener serves.
#[derive(Debug, Clone, Default)]
pub struct Facades {
    pub metaapi: bool,
    pub crafter: bool,
    /// ProdManager: the applications whose secrets may create tokens.
    pub prodmanager: Option<Vec<ProdManagerApp>>,
}

/// An application ProdManager clients create tokens for.
#[derive(Clone)]
pub struct ProdManagerApp {
    pub application: String,
    /// SHA-256 of the application secret.
    pub secret_sha256: [u8; 32],
    /// Permission name → the access rule it grants.
    pub permissions: std::collections::BTreeMap<String, crate::policy::AccessRule>,
}

impl std::fmt::Debug for ProdManagerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> = self.permissions.keys().collect();
        f.debug_struct("ProdManagerApp")
            .field("application", &self.application)
            .field("permissions", &names)
            .finish_non_exhaustive()
    }
}

/// The compatibility facades on the api listener, each off unless enabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FacadesFile {
    /// MetaApi's token-management API: `GET /access-rule-manifest`,
    /// `POST /users/current/narrow-down-auth-token`.
    #[serde(default)]
    pub metaapi: bool,
    /// Crafter Profile's access-token API under `/api/1/access_token`, and
    /// its default tokens at first start.
    #[serde(default)]
    pub crafter: bool,
    /// ProdManager's token API: `POST /api/token/create`, `GET /api/token/whoami`.
    #[serde(default)]
    pub prodmanager: Option<ProdManagerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProdManagerFile {
    pub applications: Vec<ProdManagerAppFile>,
}

/// One application whose secret may create ProdManager tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProdManagerAppFile {
    /// A manifest application.
    pub application: String,
    /// SHA-256 (hex) of the application secret clients send; the secret
    /// itself is never in the config (`narrowgate keys secret` makes one).
    pub secret_sha256: String,
    /// Permission name → what it grants in this application.
    pub permissions: std::collections::BTreeMap<String, PermissionFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PermissionFile {
    /// Method groups of the application (`*`: all).
    pub method_groups: Vec<String>,
    /// Roles of the application (`*`: all); default all.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

pub(super) fn build_facades(
    f: FacadesFile,
    listeners: &Option<Listeners>,
    credentials: &[CredentialSource],
    manifest: &Manifest,
    errs: &mut Errors,
) -> Facades {
    let has_api = listeners.as_ref().is_some_and(|l| l.api.is_some());
    if f.metaapi {
        if !has_api {
            errs.push("facades.metaapi", "needs listeners.api (the facade is served there)");
        }
        if !credentials.contains(&CredentialSource::Header(HeaderName::from_static("auth-token"))) {
            errs.push(
                "facades.metaapi",
                "MetaApi clients send the `auth-token` header: add `- source: header` with `name: auth-token` to credentials",
            );
        }
    }
    let prodmanager = f.prodmanager.map(|pm| {
        if !has_api {
            errs.push("facades.prodmanager", "needs listeners.api (the facade is served there)");
        }
        pm.applications
            .iter()
            .enumerate()
            .filter_map(|(i, a)| prodmanager_app(a, &format!("facades.prodmanager.applications[{i}]"), manifest, errs))
            .collect()
    });
    if f.crafter && !has_api {
        errs.push("facades.crafter", "needs listeners.api (the facade is served there)");
    }
    Facades { metaapi: f.metaapi, crafter: f.crafter, prodmanager }
}

fn prodmanager_app(
    f: &ProdManagerAppFile,
    path: &str,
    manifest: &Manifest,
    errs: &mut Errors,
) -> Option<ProdManagerApp> {
    let Some(app) = manifest.applications.iter().find(|a| a.application == f.application) else {
        errs.push(&format!("{path}.application"), format!("{:?} is not an application of the manifest", f.application));
        return None;
    };
    let hash = parse_sha256_hex(&f.secret_sha256);
    if hash.is_none() {
        errs.push(&format!("{path}.secret_sha256"), "must be 64 hex digits (the SHA-256 of the secret)");
    }
    if f.permissions.is_empty() {
        errs.push(&format!("{path}.permissions"), "declare at least one permission");
    }
    let mut permissions = std::collections::BTreeMap::new();
    for (name, p) in &f.permissions {
        let ppath = format!("{path}.permissions.{name}");
        for (j, g) in p.method_groups.iter().enumerate() {
            if g != "*" && !app.method_groups.iter().any(|m| m.group == *g) {
                errs.push(
                    &format!("{ppath}.method_groups[{j}]"),
                    format!("{g:?} is not a method group of {}", app.application),
                );
            }
        }
        let roles = p.roles.clone().unwrap_or_else(|| vec!["*".into()]);
        for (j, r) in roles.iter().enumerate() {
            if r != "*" && !app.roles.iter().any(|set| set.roles.contains(r)) {
                errs.push(&format!("{ppath}.roles[{j}]"), format!("{r:?} is not a role of {}", app.application));
            }
        }
        let wire = crate::token::claims::WireRule {
            id: format!("{}:{name}", app.application),
            application: app.application.clone(),
            service: "*".into(),
            method_groups: p
                .method_groups
                .iter()
                .map(|g| crate::token::claims::WireMethodGroup {
                    group: g.clone(),
                    methods: vec![crate::token::claims::WireMethod { method: "*".into(), scopes: None }],
                })
                .collect(),
            roles,
            resources: vec!["*:$USER_ID$:*".into()],
        };
        match wire.compile() {
            Some(rule) => {
                permissions.insert(name.clone(), rule);
            }
            None => errs.push(&ppath, "does not make an access rule (an empty method group or role?)"),
        }
    }
    Some(ProdManagerApp { application: f.application.clone(), secret_sha256: hash?, permissions })
}
