//! Token management for admin and master tokens: create, list, view and
//! revoke. Each handler reads the request into the token service's terms
//! and renders its answer; what a caller may do is the service's to decide.
//! The secret is in the create response only; listing and viewing never
//! show one.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{ApiError, parse};
use super::{ApiState, ok_json};
use crate::policy::tenant::TenantPermission;
use crate::respond::ErrorBody;
use crate::service::input::CreateRequest;
use crate::service::{RevokeTarget, Shown, TokenState};
use crate::store::{TokenFilter, TokenRecord, kind_str, parse_kind, role_str};
use crate::time::UnixTime;
use crate::token::claims::{WireRule, decode_grants};

/// A token as listed and viewed: metadata, never a secret.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenView<'a> {
    id: &'a str,
    name: Option<&'a str>,
    description: &'a str,
    kind: &'static str,
    role: &'static str,
    master: bool,
    application: Option<&'a str>,
    subject: &'a str,
    form: &'static str,
    #[schema(value_type = Option<u64>)]
    not_before: Option<UnixTime>,
    #[schema(value_type = Option<u64>)]
    expires_at: Option<UnixTime>,
    parent_id: Option<&'a str>,
    created_by: Option<&'a str>,
    #[schema(value_type = u64)]
    created_at: UnixTime,
    /// `live`, `expired` or `revoked` — as the proxy enforces it: a token
    /// whose ancestor was revoked is revoked.
    state: &'static str,
    /// When it was revoked, itself or through `revokedBy`.
    #[schema(value_type = Option<u64>)]
    revoked_at: Option<UnixTime>,
    /// The ancestor whose revocation revokes it (absent when it was
    /// revoked itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_by: Option<&'a str>,
    /// As `whoami` shows them.
    access_rules: Vec<super::RuleView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tenant_permissions: Vec<TenantPermission>,
}

fn view(shown: &Shown) -> TokenView<'_> {
    let t = &shown.record;
    let (revoked_at, revoked_by) = match &shown.state {
        TokenState::Revoked { at, by } => (*at, by.as_deref()),
        _ => (None, None),
    };
    let (access_rules, tenant_permissions) = decode_grants(&t.grants).unwrap_or_default();
    TokenView {
        id: &t.id,
        name: t.name.as_deref(),
        description: &t.description,
        kind: kind_str(t.kind),
        role: role_str(t.role),
        master: t.master,
        application: t.application.as_deref(),
        subject: &t.subject,
        form: t.form.as_str(),
        not_before: t.not_before,
        expires_at: t.expires_at,
        parent_id: t.parent_id.as_deref(),
        created_by: t.created_by.as_deref(),
        created_at: t.created_at,
        state: shown.state.as_str(),
        revoked_at,
        revoked_by,
        access_rules: access_rules.iter().filter_map(WireRule::compile).map(|r| super::RuleView::of(&r)).collect(),
        tenant_permissions,
    }
}

/// Create a token (admin or master caller). Its rules must lie within the
/// caller's; only master callers create admin or master tokens; a
/// non-master's tokens never outlive it.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateRequest,
    security(("bearer" = []), ("auth-token" = [])),
    responses(
        (status = 201, description = "Created; the secret is in this response only", body = Created),
        (status = 400, description = "Malformed input, the field named (bad_request), or too large (token_too_large)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or more than the caller may give (admin_required, would_widen)", body = ErrorBody),
        (status = 409, description = "A live token with this name exists (conflict)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let presented = super::presented_certificate(req.extensions());
    let (snap, caller, body) = s.authorized_body(req).await?;
    s.service.manager(&caller)?;
    let input: CreateRequest = parse(&body)?;
    if input.binds() && presented.is_none() {
        return Err(super::narrow::no_certificate());
    }
    let (secret, record) = create_token(&s, &snap, caller, input, presented).await?;
    let shown = Shown { record, state: TokenState::Live };
    Ok(ok_json(StatusCode::CREATED, &Created { token: &secret, meta: view(&shown) }))
}

/// Mint the token `input` asks for on `caller`'s behalf: the API's and the
/// console's one way to create a token. Its secret (shown once) and record.
pub(crate) async fn create_token(
    s: &ApiState,
    snap: &crate::runtime::Snapshot,
    caller: std::sync::Arc<crate::token::Grant>,
    input: CreateRequest,
    // The client certificate the caller's connection presented.
    presented: Option<[u8; 32]>,
) -> Result<(String, TokenRecord), ApiError> {
    let binds = input.binds();
    let mut token = input.into_new_token(&caller, s.service.now())?;
    token.bound_to = presented.filter(|_| binds);
    let minted = s.service.create(&snap.service, caller, token).await?;
    Ok((minted.secret, minted.record))
}

/// A new token: the secret (shown this once) and its record.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Created<'a> {
    /// The JWT or `ngr_…` reference token. Not retrievable later.
    token: &'a str,
    #[serde(flatten)]
    meta: TokenView<'a>,
}

/// A page of tokens.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenList<'a> {
    tokens: Vec<TokenView<'a>>,
    limit: u32,
    offset: u32,
}

fn query_map(req: &Request) -> HashMap<String, String> {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// List the tokens the caller may see — a master every token, a non-master
/// admin itself and its lineage — oldest first; never their secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(
        ("name" = Option<String>, Query, description = "Only the token with this name"),
        ("application" = Option<String>, Query, description = "Only tokens for this application"),
        ("kind" = Option<String>, Query, description = "access, narrowed or registration"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100, at most 1000)"),
        ("offset" = Option<u32>, Query, description = "Skip this many"),
    ),
    responses(
        (status = 200, description = "A page of tokens", body = TokenList),
        (status = 400, description = "A malformed filter (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "The caller is not an admin or master token (admin_required)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn list(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let caller = s.caller(req.headers(), req.uri().query(), req.extensions()).await?;
    let q = query_map(&req);
    let number = |k: &'static str| -> Result<Option<u32>, ApiError> {
        q.get(k).map(|v| v.parse::<u32>().map_err(|_| ApiError::bad(k, "not a whole number"))).transpose()
    };
    let (limit, offset) = (number("limit")?.unwrap_or(100), number("offset")?.unwrap_or(0));
    let kind = q
        .get("kind")
        .map(|k| parse_kind(k).ok_or_else(|| ApiError::bad("kind", "not access, narrowed or registration")))
        .transpose()?;
    let filter = TokenFilter {
        name: q.get("name").cloned(),
        application: q.get("application").cloned(),
        kind,
        within_lineage_of: None,
        limit,
        offset,
    };
    let tokens = s.service.list(&caller, &filter).await?;
    let views: Vec<TokenView<'_>> = tokens.iter().map(view).collect();
    Ok(ok_json(StatusCode::OK, &TokenList { tokens: views, limit, offset }))
}

/// One token by id; never its secret.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(("id" = String, Path, description = "The token id (its jti)")),
    responses(
        (status = 200, description = "The token", body = TokenView),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "The caller is not an admin or master token (admin_required)", body = ErrorBody),
        (status = 404, description = "No token with this id within the caller's reach (not_found)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn show(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let caller = s.caller(req.headers(), req.uri().query(), req.extensions()).await?;
    let shown = s.service.show(&caller, &id).await?;
    Ok(ok_json(StatusCode::OK, &view(&shown)))
}

/// Revoke a token by id; every token narrowed from it or minted under it
/// (by a non-master admin) is rejected too, on every replica.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(("id" = String, Path, description = "The token id (its jti)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a master token and the caller is not a master (admin_required, master_required)", body = ErrorBody),
        (status = 404, description = "No token with this id (not_found)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (snap, caller) = s.authorized(req.headers(), req.uri().query(), req.extensions()).await?;
    s.service.revoke(&snap.service, &caller, RevokeTarget::Id(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke the live token of a name, with everything narrowed from it.
#[utoipa::path(delete, path = "/v1/tokens", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(("name" = String, Query, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "No name given (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a master token and the caller is not a master (admin_required, master_required)", body = ErrorBody),
        (status = 404, description = "No token with this name (not_found)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn revoke_by_name(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (snap, caller) = s.authorized(req.headers(), req.uri().query(), req.extensions()).await?;
    let name = query_map(&req).remove("name").ok_or_else(|| ApiError::bad("name", "DELETE /v1/tokens needs ?name="))?;
    s.service.revoke(&snap.service, &caller, RevokeTarget::Name(name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
