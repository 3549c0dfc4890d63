//! The manifest: applications with their services, method groups, methods,
//! scopes, entities and roles, and the routes that map HTTP requests onto
//! them. Built and validated by `config`; read-only afterwards.
//!
//! The application types are read from the config (snake_case keys,
//! unknown keys refused) and shown in MetaApi's manifest shape (camelCase).

use serde::{Deserialize, Serialize};

use super::rules::RouteFacts;

/// The validated manifest.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub applications: Vec<Application>,
    pub routes: Vec<Route>,
}

/// One application, in MetaApi's access-rule-manifest shape.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all(serialize = "camelCase"), deny_unknown_fields)]
#[schema(rename_all = "camelCase")]
pub struct Application {
    // In the config, default: the application's name.
    #[serde(default)]
    #[schema(required)]
    pub id: String,
    pub application: String,
    #[serde(default)]
    #[schema(required)]
    pub description: String,
    pub services: Vec<ServiceDef>,
    #[serde(default)]
    #[schema(required)]
    pub method_groups: Vec<MethodGroupDef>,
    #[serde(default)]
    #[schema(required)]
    pub roles: Vec<RoleSetDef>,
    #[serde(default)]
    #[schema(required)]
    pub entities: Vec<EntityDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_composition_description: Option<String>,
    /// `enforce` or `shadow` for this application; default: the gateway's
    /// `mode`. Not part of MetaApi's manifest.
    #[serde(default, skip_serializing)]
    pub mode: Option<Mode>,
    /// A rate limit for the whole application (per replica). Not part of
    /// MetaApi's manifest.
    #[serde(default, skip_serializing)]
    pub rate_limit: Option<crate::ratelimit::Limit>,
    /// The upstream its requests go to (a name under `upstreams`); default:
    /// the `upstream` section. Not part of MetaApi's manifest.
    #[serde(default, skip_serializing)]
    pub upstream: Option<String>,
    /// The hosts it serves (`Host` without its port). When any application
    /// declares hosts, a request is routed among the routes of the
    /// applications serving its host (and of those declaring none), and a
    /// host no application declares is refused. Not part of MetaApi's
    /// manifest.
    #[serde(default, skip_serializing)]
    pub hosts: Vec<String>,
}

/// Whether access-rule denials are enforced or only recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Denied requests are refused.
    #[default]
    Enforce,
    /// A verified token's request on a matched route that its access rules
    /// deny (application, service, method, resource, role, scope, tenant)
    /// is forwarded without identity headers, recorded as `shadow`; no
    /// route, a missing or bad credential, expiry, revocation, rate limits
    /// and hygiene are still refused.
    Shadow,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub service: String,
    #[serde(default)]
    #[schema(required)]
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodGroupDef {
    pub group: String,
    #[serde(default)]
    #[schema(required)]
    pub description: String,
    pub methods: Vec<MethodDef>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodDef {
    pub method: String,
    #[serde(default)]
    #[schema(required)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSetDef {
    pub roles: Vec<String>,
    #[serde(default)]
    #[schema(required)]
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all(serialize = "camelCase"), deny_unknown_fields)]
#[schema(rename_all = "camelCase")]
pub struct EntityDef {
    pub entity: String,
    #[serde(default)]
    #[schema(required)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_description: Option<String>,
}

/// The resource a route touches: an entity and the path parameter that holds
/// its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    pub entity: Box<str>,
    /// Name of the path parameter, as written in the route.
    pub param: Box<str>,
    /// Position of that parameter among the route's parameters.
    pub param_index: usize,
}

/// The tenant a route acts on, and the action it takes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSpec {
    /// Position of the tenant's path parameter among the route's parameters.
    pub param_index: usize,
    pub action: Box<str>,
}

/// What calling a route requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAccess {
    /// No token is checked.
    Public,
    Protected {
        group: Box<str>,
        method: Box<str>,
        scopes: Vec<Box<str>>,
        roles: Vec<Box<str>>,
        resource: Option<ResourceSpec>,
        /// Tokens with tenant permissions may call it on a tenant they
        /// allow this action on.
        tenant: Option<TenantSpec>,
    },
}

/// One compiled route.
#[derive(Clone, Debug)]
pub struct Route {
    /// `METHOD /path/{param}` as written; a closed-set metric label.
    pub template: Box<str>,
    pub method: http::Method,
    pub path: Box<str>,
    /// Index of the owning application in [`Manifest::applications`].
    pub app_index: usize,
    pub application: Box<str>,
    pub service: Box<str>,
    pub access: RouteAccess,
    /// The upstream this route's requests go to, when it is not its
    /// application's.
    pub upstream: Option<Box<str>>,
}

impl Route {
    /// The facts rules are evaluated against; `None` for a public route.
    /// What the route is, for evaluation: `None` for a public route. The
    /// resource id and the tenant come from the matched path.
    pub fn facts<'a>(&'a self, resource_id: Option<&'a str>, tenant: Option<&'a str>) -> Option<RouteFacts<'a>> {
        match &self.access {
            RouteAccess::Public => None,
            RouteAccess::Protected { group, method, scopes, roles, resource, .. } => Some(RouteFacts {
                application: &self.application,
                service: &self.service,
                group,
                method,
                scopes,
                roles,
                resource: match (resource, resource_id) {
                    (Some(spec), Some(id)) => Some((&spec.entity, id)),
                    // A resource route always has its parameter when matched;
                    // if it somehow did not, evaluate as touching an unknown
                    // resource, which only a full wildcard covers.
                    (Some(spec), None) => Some((&spec.entity, "")),
                    (None, _) => None,
                },
                tenant: match (self.tenant(), tenant) {
                    (Some(spec), Some(t)) => Some((t, &spec.action)),
                    _ => None,
                },
            }),
        }
    }

    pub fn resource(&self) -> Option<&ResourceSpec> {
        match &self.access {
            RouteAccess::Protected { resource, .. } => resource.as_ref(),
            RouteAccess::Public => None,
        }
    }

    pub fn tenant(&self) -> Option<&TenantSpec> {
        match &self.access {
            RouteAccess::Protected { tenant, .. } => tenant.as_ref(),
            RouteAccess::Public => None,
        }
    }
}
