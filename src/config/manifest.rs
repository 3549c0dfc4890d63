//! The manifest as written: applications (deserialized straight into the
//! manifest's types) and their routes, each checked against its
//! application — method group, method, scopes, roles, the resource's
//! entity and path parameter, the tenant — and compiled into the router.

use serde::Deserialize;
use serde_json::Value;

use super::{Errors, section};
use crate::policy::manifest::{Application, ResourceSpec, Route, RouteAccess, TenantSpec};
use crate::policy::router::PathPattern;
use crate::policy::{Manifest, Router};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    /// `METHOD /path/{param}`.
    pub route: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub resource: Option<ResourceFile>,
    /// A Crafter-style tenant the route acts on: tokens with tenant
    /// permissions may call it when they allow `action` on that tenant.
    #[serde(default)]
    pub tenant: Option<TenantFile>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The upstream this route's requests go to; default: its
    /// application's.
    #[serde(default)]
    pub upstream: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantFile {
    /// `"{param}"`: the path parameter holding the tenant's name.
    pub id: String,
    /// One of Crafter's actions (`READ_TENANT`, `MANAGE_PROFILES`, …).
    pub action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceFile {
    pub entity: String,
    /// `"{param}"`: the path parameter holding the id.
    pub id: String,
}

/// `applications[i].routes[j] (TEMPLATE)` for the compiled route at `index`.
fn route_path(manifest: &Manifest, paths: &[String], index: usize) -> String {
    match (paths.get(index), manifest.routes.get(index)) {
        (Some(p), Some(r)) => format!("{p} ({})", r.template),
        _ => format!("routes[{index}]"),
    }
}

/// The manifest, and for each compiled route the path it came from. An
/// application deserializes straight into the manifest's type; its routes
/// are taken one by one, so every route's problems are reported.
pub(super) fn build_manifest(items: &[Value], errs: &mut Errors) -> (Manifest, Vec<String>) {
    let mut manifest = Manifest::default();
    let mut paths = Vec::new();
    let mut seen_apps = std::collections::HashSet::new();
    for (ai, item) in items.iter().enumerate() {
        let apath = format!("applications[{ai}]");
        let mut item = item.clone();
        let routes = match item.as_object_mut().and_then(|o| o.remove("routes")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list,
            Some(_) => {
                errs.push(&format!("{apath}.routes"), "must be a list");
                Vec::new()
            }
        };
        let Some(mut app) = section::<Application>(&item, &apath, errs) else { continue };
        if app.id.is_empty() {
            app.id = app.application.clone();
        }
        if !seen_apps.insert(app.application.clone()) {
            errs.push(&format!("{apath}.application"), format!("{:?} is declared twice", app.application));
        }
        if app.application.is_empty() || app.application.contains([':', '*']) {
            errs.push(&format!("{apath}.application"), "must be a non-empty name without ':' or '*'");
        }
        if app.application == "none" {
            errs.push(
                &format!("{apath}.application"),
                "\"none\" is reserved: the metrics count requests that match no route as application=\"none\"",
            );
        }
        if app.services.is_empty() {
            errs.push(&format!("{apath}.services"), "at least one service is required");
        }
        for (hi, host) in app.hosts.iter_mut().enumerate() {
            // As a Host header names it, without the port: a DNS name or an
            // IP address, compared in lowercase.
            let valid = host
                .parse::<http::uri::Authority>()
                .is_ok_and(|a| a.port().is_none() && !host.contains('@') && !host.is_empty());
            if !valid {
                errs.push(&format!("{apath}.hosts[{hi}]"), format!("{host:?} is not a host name (no port, no scheme)"));
            }
            host.make_ascii_lowercase();
        }
        let app_index = manifest.applications.len();
        for (ri, rv) in routes.iter().enumerate() {
            let rpath = format!("{apath}.routes[{ri}]");
            if let Some(rf) = section::<RouteFile>(rv, &rpath, errs)
                && let Some(route) = build_route(&app, app_index, rf, &rpath, errs)
            {
                manifest.routes.push(route);
                paths.push(rpath.clone());
            }
        }
        manifest.applications.push(app);
    }
    (manifest, paths)
}

/// The router over the manifest's routes; overlapping routes are reported
/// at both places they are written.
pub(super) fn build_router(manifest: &Manifest, paths: &[String], errs: &mut Errors) -> Option<Router> {
    let hosts: Vec<Vec<String>> = manifest.applications.iter().map(|a| a.hosts.clone()).collect();
    match Router::build_hosted(&manifest.routes, &hosts) {
        Ok(r) => Some(r),
        Err(list) => {
            for (a, b, msg) in list {
                let (pa, pb) = (route_path(manifest, paths, a), route_path(manifest, paths, b));
                if a == b {
                    errs.push(&pa, msg);
                } else {
                    errs.push(&pb, format!("{msg} at {pa}: one request could match both"));
                }
            }
            None
        }
    }
}

fn build_route(app: &Application, app_index: usize, mut f: RouteFile, path: &str, errs: &mut Errors) -> Option<Route> {
    let before = errs.errors.len();
    let Some((method_str, route_path)) = f.route.split_once(' ') else {
        errs.push(&format!("{path}.route"), format!("{:?} must be `METHOD /path`", f.route));
        return None;
    };
    // `GRPC /package.Service/Method`: a gRPC method (a POST), whose
    // service and method the rules name as they name a REST route's.
    let grpc = (method_str == "GRPC").then(|| grpc_method(route_path.trim()));
    let grpc = match grpc {
        None => false,
        Some(Some((service, method))) => {
            for (field, given, from_path) in [("service", &f.service, service), ("method", &f.method, method)] {
                if given.as_deref().is_some_and(|g| g != from_path) {
                    errs.push(
                        &format!("{path}.{field}"),
                        format!("a gRPC route's {field} is its path's ({from_path:?}); drop it or make it so"),
                    );
                }
            }
            f.service = Some(service.to_string());
            // A public route names no method (it checks no token).
            if !f.public {
                f.method = Some(method.to_string());
            }
            true
        }
        Some(None) => {
            errs.push(&format!("{path}.route"), "a gRPC route is `GRPC /package.Service/Method`");
            return None;
        }
    };
    let method = match http::Method::from_bytes(method_str.as_bytes()) {
        _ if grpc => Some(http::Method::POST),
        Ok(m) if method_str.bytes().all(|b| b.is_ascii_uppercase()) => Some(m),
        _ => {
            errs.push(&format!("{path}.route"), format!("{method_str:?} is not an HTTP method (nor GRPC)"));
            None
        }
    };
    let pattern = match PathPattern::parse(route_path.trim()) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(&format!("{path}.route"), e);
            None
        }
    };
    let service = match (&f.service, app.services.as_slice()) {
        (Some(s), _) => {
            if !app.services.iter().any(|d| d.service == *s) {
                errs.push(&format!("{path}.service"), format!("unknown service {s:?} of {:?}", app.application));
            }
            s.clone()
        }
        (None, [only]) => only.service.clone(),
        (None, _) => {
            errs.push(&format!("{path}.service"), "required: the application has several services");
            String::new()
        }
    };
    let access = if f.public {
        for (field, set) in [
            ("group", f.group.is_some()),
            ("method", f.method.is_some()),
            ("resource", f.resource.is_some()),
            ("roles", !f.roles.is_empty()),
            ("scopes", !f.scopes.is_empty()),
        ] {
            if set {
                errs.push(&format!("{path}.{field}"), "a public route checks no token; remove it or drop `public`");
            }
        }
        RouteAccess::Public
    } else {
        let group = f.group.clone().unwrap_or_default();
        let method_name = f.method.clone().unwrap_or_default();
        let group_def = app.method_groups.iter().find(|g| g.group == group);
        let method_def = group_def.and_then(|g| g.methods.iter().find(|m| m.method == method_name));
        match (&f.group, group_def) {
            (None, _) => errs.push(&format!("{path}.group"), "required (or mark the route public)"),
            (Some(g), None) => errs.push(&format!("{path}.group"), format!("unknown method group {g:?}")),
            _ => {}
        }
        match (&f.method, method_def) {
            (None, _) => errs.push(&format!("{path}.method"), "required (or mark the route public)"),
            (Some(m), None) if group_def.is_some() => {
                errs.push(&format!("{path}.method"), format!("unknown method {m:?} in group {group:?}"))
            }
            _ => {}
        }
        if let Some(def) = method_def {
            for (i, s) in f.scopes.iter().enumerate() {
                if !def.scopes.contains(s) {
                    errs.push(
                        &format!("{path}.scopes[{i}]"),
                        format!("{s:?} is not a scope of method {method_name:?}"),
                    );
                }
            }
        }
        if f.roles.is_empty() {
            errs.push(&format!("{path}.roles"), "list the roles that may call this route");
        }
        for (i, r) in f.roles.iter().enumerate() {
            if !app.roles.iter().any(|set| set.roles.contains(r)) {
                errs.push(&format!("{path}.roles[{i}]"), format!("unknown role {r:?} of {:?}", app.application));
            }
        }
        let resource = f.resource.as_ref().and_then(|res| {
            if !app.entities.iter().any(|e| e.entity == res.entity) {
                errs.push(&format!("{path}.resource.entity"), format!("unknown entity {:?}", res.entity));
            }
            let param = res.id.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            let index = match (param, &pattern) {
                (Some(p), Some(pat)) => {
                    let idx = pat.params.iter().position(|n| n == p);
                    if idx.is_none() {
                        errs.push(&format!("{path}.resource.id"), format!("unknown path parameter {p:?}"));
                    }
                    idx
                }
                (None, _) => {
                    errs.push(
                        &format!("{path}.resource.id"),
                        format!("{:?} must name a path parameter as \"{{name}}\"", res.id),
                    );
                    None
                }
                _ => None,
            };
            index.map(|param_index| ResourceSpec {
                entity: res.entity.as_str().into(),
                param: param.unwrap_or_default().into(),
                param_index,
            })
        });
        let tenant = f.tenant.as_ref().and_then(|t| {
            if !crate::policy::tenant::ACTIONS.contains(&t.action.as_str()) {
                errs.push(
                    &format!("{path}.tenant.action"),
                    format!("{:?} is not one of {}", t.action, crate::policy::tenant::ACTIONS.join(", ")),
                );
            }
            let param = t.id.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            let index = param.and_then(|p| pattern.as_ref().and_then(|pat| pat.params.iter().position(|n| n == p)));
            if index.is_none() {
                errs.push(
                    &format!("{path}.tenant.id"),
                    format!("{:?} must name a path parameter as \"{{name}}\"", t.id),
                );
            }
            index.map(|param_index| TenantSpec { param_index, action: t.action.as_str().into() })
        });
        RouteAccess::Protected {
            group: group.into(),
            method: method_name.into(),
            scopes: f.scopes.iter().map(|s| s.as_str().into()).collect(),
            roles: f.roles.iter().map(|s| s.as_str().into()).collect(),
            resource,
            tenant,
        }
    };
    if errs.errors.len() != before {
        return None;
    }
    Some(Route {
        template: format!("{} {}", method_str, route_path.trim()).into(),
        method: method?,
        path: route_path.trim().into(),
        app_index,
        application: app.application.as_str().into(),
        service: service.into(),
        access,
        upstream: f.upstream.as_deref().map(Into::into),
    })
}

/// A gRPC route's path split into its service (`package.Service`) and
/// method: `/package.Service/Method`, nothing else.
fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let name = |s: &str, dots: bool| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
    };
    (name(service, true) && name(method, false)).then_some((service, method))
}

/// Every upstream an application or route names exists.
pub(super) fn check_upstreams(
    manifest: &Manifest,
    paths: &[String],
    upstreams: &[super::UpstreamConfig],
    errs: &mut Errors,
) {
    let known = |name: &str| name == super::DEFAULT_UPSTREAM || upstreams.iter().any(|u| &*u.name == name);
    let names = || {
        let mut all: Vec<&str> = upstreams.iter().map(|u| &*u.name).collect();
        all.insert(0, super::DEFAULT_UPSTREAM);
        all.join(", ")
    };
    for (ai, app) in manifest.applications.iter().enumerate() {
        if let Some(name) = app.upstream.as_deref().filter(|n| !known(n)) {
            errs.push(
                &format!("applications[{ai}].upstream"),
                format!("no upstream {name:?} (upstreams: {})", names()),
            );
        }
    }
    for (ri, route) in manifest.routes.iter().enumerate() {
        if let Some(name) = route.upstream.as_deref().filter(|n| !known(n)) {
            let at = paths.get(ri).map_or_else(|| format!("routes[{ri}]"), Clone::clone);
            errs.push(&format!("{at}.upstream"), format!("no upstream {name:?} (upstreams: {})", names()));
        }
    }
}
