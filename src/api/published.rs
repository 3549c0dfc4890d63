//! What the token service publishes and tells a caller about itself: the
//! JWKS of its signing keys, the access-rule manifest, and the calling
//! token's own grant (`whoami`).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::ApiState;
use super::error::{ApiError, json, ok_json};
use crate::respond::ErrorBody;
use crate::token::{Grant, Role, TokenKind};

/// The public halves of this gateway's signing keys, for enforce-only
/// gateways and other verifiers. Public parameters only.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "A JWK Set (RFC 7517) of public keys, each with kid, alg and use", body = Object)))]
pub(super) async fn jwks(State(s): State<ApiState>) -> Response {
    json(StatusCode::OK, s.snapshot().jwks_json.clone())
}

/// The access-rule manifest, in MetaApi's shape: every application with its
/// services, method groups, methods, roles and entities.
#[utoipa::path(get, path = "/v1/manifest", tag = "manifest",
    responses((status = 200, description = "The manifest", body = Vec<crate::policy::manifest::Application>)))]
pub(super) async fn manifest(State(s): State<ApiState>) -> Response {
    json(StatusCode::OK, s.snapshot().manifest_json.clone())
}

/// The calling token's grant.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WhoAmI<'a> {
    id: &'a str,
    name: Option<&'a str>,
    kind: TokenKind,
    role: Role,
    /// The role in VK Cloud ML Platform's words: `User` or `Administrator`.
    #[serde(rename = "type")]
    role_type: &'static str,
    master: bool,
    subject: &'a str,
    /// Who issued it: for a token this gateway created, the creating token's
    /// name (or id), `prodmanager:<application>` for ProdManager tokens;
    /// otherwise the token's `iss`.
    issuer: String,
    /// The `iss` of the token (for reference tokens, this gateway's issuer).
    iss: &'a str,
    access_rules: Vec<RuleView>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tenant_permissions: &'a [crate::policy::tenant::TenantPermission],
    not_before: Option<u64>,
    /// `null`: never expires.
    expires_at: Option<u64>,
    lineage: Vec<&'a str>,
}

/// An access rule as the API shows it: MetaApi's detailed shape, resources
/// as `{entity, id}` objects.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuleView {
    id: String,
    application: String,
    service: String,
    method_groups: Vec<crate::token::claims::WireMethodGroup>,
    roles: Vec<String>,
    resources: Vec<ResourceView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ResourceView {
    entity: String,
    id: String,
}

impl RuleView {
    pub(crate) fn of(rule: &crate::policy::AccessRule) -> Self {
        let wire = crate::token::WireRule::from_rule(rule);
        RuleView {
            id: wire.id,
            application: wire.application,
            service: wire.service,
            method_groups: wire.method_groups,
            roles: wire.roles,
            resources: rule
                .resources
                .iter()
                .map(|r| ResourceView { entity: r.entity.as_str().to_string(), id: r.id.as_str().to_string() })
                .collect(),
        }
    }
}

fn whoami_view(g: &Grant, issuer: String) -> WhoAmI<'_> {
    WhoAmI {
        id: &g.token_id,
        name: g.name.as_deref(),
        kind: g.kind,
        role: g.role,
        role_type: match g.role {
            Role::Admin => "Administrator",
            Role::User => "User",
        },
        master: g.master,
        subject: &g.subject,
        issuer,
        iss: &g.issuer,
        access_rules: g.rules.iter().map(RuleView::of).collect(),
        tenant_permissions: &g.tenants,
        not_before: g.not_before,
        expires_at: g.expires_at,
        lineage: g.lineage.iter().map(|l| &**l).collect(),
    }
}

/// The calling token's grant.
#[utoipa::path(get, path = "/v1/whoami", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    responses(
        (status = 200, description = "The caller's grant", body = WhoAmI),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 503, description = "The keys to decide are unavailable (keys_unavailable)", body = ErrorBody),
    ))]
pub(super) async fn whoami(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let grant = s.caller(req.headers(), req.uri().query(), req.extensions()).await?;
    let issuer = s.service.issuer_of(&grant).await;
    Ok(ok_json(StatusCode::OK, &whoami_view(&grant, issuer)))
}
