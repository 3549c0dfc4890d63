//! Token management for admin and master tokens: create, list, view and
//! revoke. Each handler reads the request into the token service's terms
//! and renders its answer; what a caller may do is the service's to decide.
//! The secret is in the create response only; listing and viewing never
//! show one.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, parse};
use super::narrow::RuleInput;
use super::{ApiState, ok_json};
use crate::config::parse_duration;
use crate::policy::tenant::{self, TenantPermission};
use crate::respond::ErrorBody;
use crate::service::{NewForm, NewToken, RevokeTarget, Shown, TokenState};
use crate::store::{TokenFilter, TokenRecord, kind_str, parse_kind, role_str};
use crate::time::UnixTime;
use crate::token::Role;
use crate::token::claims::{WireRule, decode_grants};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateRequest {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    application: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    master: bool,
    /// Default: the caller's own rules (none when tenant permissions are given).
    #[serde(default)]
    access_rules: Option<Vec<RuleInput>>,
    /// Crafter-style: per tenant, the actions allowed.
    #[serde(default)]
    tenant_permissions: Vec<TenantPermission>,
    /// Unix seconds or RFC 3339 (`2026-12-31T23:59:59Z`).
    #[serde(default)]
    not_before: Option<TimeInput>,
    /// Unix seconds or RFC 3339; or `lifetime`.
    #[serde(default)]
    expires_at: Option<TimeInput>,
    /// `2h45m30s` style.
    #[serde(default)]
    lifetime: Option<String>,
    /// `jwt` (the default).
    #[serde(default)]
    form: Option<String>,
}

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

/// Parse a role as the native API and VK's clients write it.
pub(crate) fn parse_role(v: Option<&str>) -> Result<Role, ApiError> {
    match v {
        None | Some("user") | Some("User") => Ok(Role::User),
        Some("admin") | Some("Administrator") => Ok(Role::Admin),
        Some(_) => Err(ApiError::bad("role", "not user (User) or admin (Administrator)")),
    }
}

/// A `2h45m30s`-style duration field, in seconds (positive).
pub(crate) fn duration_field(v: &str, name: &'static str) -> Result<u64, ApiError> {
    match parse_duration(v) {
        Ok(d) if d.as_secs() > 0 => Ok(d.as_secs()),
        _ => Err(ApiError::bad(name, "not a duration like 2h45m30s")),
    }
}

impl CreateRequest {
    /// The token this asks for, on `caller`'s behalf (whose rules are the
    /// default).
    fn into_new_token(self, caller: &crate::token::Grant, now: UnixTime) -> Result<NewToken, ApiError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(ApiError::bad("name", "1 to 200 characters"));
        }
        let form = match self.form.as_deref() {
            None | Some("jwt") => NewForm::Jwt,
            Some("reference") => NewForm::Reference,
            Some(_) => return Err(ApiError::bad("form", "not jwt or reference")),
        };
        let role = parse_role(self.role.as_deref())?;
        let not_before = time_field(&self.not_before, "notBefore")?;
        let expires_at = time_field(&self.expires_at, "expiresAt")?;
        let expires_at = match (&self.lifetime, expires_at) {
            (Some(_), Some(_)) => return Err(ApiError::bad("lifetime", "give lifetime or expiresAt, not both")),
            (Some(l), None) if l == "none" => None,
            (Some(l), None) => Some(
                now.checked_add(duration_field(l, "lifetime")?)
                    .ok_or_else(|| ApiError::bad("lifetime", "would end after 9999-12-30T22:00:00Z"))?,
            ),
            (None, Some(e)) if e > now => Some(e),
            (None, Some(_)) => return Err(ApiError::bad("expiresAt", "must be in the future")),
            (None, None) => None,
        };
        if expires_at.is_none() && form == NewForm::Jwt {
            return Err(ApiError::bad(
                "lifetime",
                "a JWT needs lifetime or expiresAt; a token that never expires uses \"form\": \"reference\"",
            ));
        }
        tenant::validate(&self.tenant_permissions).map_err(|e| ApiError::bad(e.path, e.what))?;
        let rules = match &self.access_rules {
            None if !self.tenant_permissions.is_empty() => Vec::new(),
            None => caller.rules.to_vec(),
            Some(list) if list.is_empty() && self.tenant_permissions.is_empty() => {
                return Err(ApiError::bad("accessRules", "the token would grant nothing"));
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    super::narrow::compile(r).ok_or_else(|| {
                        ApiError::bad(format!("accessRules[{i}]"), "empty application, service, entity or id")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let mut t = NewToken::user(self.name.clone(), form, now);
        t.name = Some(self.name);
        t.description = self.description;
        t.application = self.application;
        t.role = role;
        t.master = self.master;
        t.rules = rules;
        t.tenants = self.tenant_permissions;
        t.not_before = not_before.unwrap_or(now);
        t.expires_at = expires_at;
        Ok(t)
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
    let (snap, caller, body) = s.authorized_body(req).await?;
    s.service.manager(&caller)?;
    let input: CreateRequest = parse(&body)?;
    let (secret, record) = create_token(&s, &snap, caller, input).await?;
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
) -> Result<(String, TokenRecord), ApiError> {
    let token = input.into_new_token(&caller, s.service.now())?;
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
    let caller = s.caller(req.headers(), req.uri().query()).await?;
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
    let caller = s.caller(req.headers(), req.uri().query()).await?;
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
    let (snap, caller) = s.authorized(req.headers(), req.uri().query()).await?;
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
    let (snap, caller) = s.authorized(req.headers(), req.uri().query()).await?;
    let name = query_map(&req).remove("name").ok_or_else(|| ApiError::bad("name", "DELETE /v1/tokens needs ?name="))?;
    s.service.revoke(&snap.service, &caller, RevokeTarget::Name(name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A point in time as a client may send it: Unix seconds, or RFC 3339 /
/// ISO 8601 with an offset (`2026-12-31T23:59:59Z`, `…+02:00`). Any JSON
/// number is read (a negative one, a fraction, one past 2^64), so that
/// [`time_field`] refuses it naming the field, never a generic parse error.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum TimeInput {
    /// Unix seconds, 0 to 253402207200 (9999-12-30T22:00:00Z).
    Unix(u64),
    /// Refused: before 1970 (read only to be refused by name).
    Negative(#[allow(dead_code)] i64),
    /// Refused: not whole seconds, or beyond any integer.
    Fraction(#[allow(dead_code)] f64),
    Text(String),
}

/// The time of a field, within [`UnixTime`]'s range, or 400 naming it.
pub(crate) fn time_field(v: &Option<TimeInput>, name: &'static str) -> Result<Option<UnixTime>, ApiError> {
    let bad = || {
        ApiError::bad(
            name,
            "not Unix seconds from 0 to 253402207200 or an RFC 3339 time from 1970 to 9999 like 2026-12-31T23:59:59Z",
        )
    };
    match v {
        None => Ok(None),
        Some(TimeInput::Unix(n)) => UnixTime::from_secs(*n).map(Some).map_err(|_| bad()),
        Some(TimeInput::Negative(_) | TimeInput::Fraction(_)) => Err(bad()),
        Some(TimeInput::Text(t)) => {
            t.parse::<jiff::Timestamp>().ok().and_then(|ts| UnixTime::from_timestamp(ts).ok()).map(Some).ok_or_else(bad)
        }
    }
}
