//! Token management for admin and master tokens: create (JWT form),
//! list, view and revoke. The secret is in the create response only;
//! listing and viewing never show one. Revocation takes effect in this
//! process at once and on other replicas through the store.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::narrow::RuleInput;
use super::{ApiState, error_json, json};
use crate::auth::reference;
use crate::config::{MintError, parse_duration};
use crate::policy::AccessRule;
use crate::policy::narrow::narrow_detailed;
use crate::policy::tenant::{self, TenantPermission};
use crate::proxy::respond::{ErrorBody, error_response};
use crate::store::{Store, StoreError, TokenFilter, TokenForm, TokenRecord, kind_str, parse_kind, role_str};
use crate::token::claims::{Claims, WireRule, decode_grants, encode_grants};
use crate::token::encoding::from_object;
use crate::token::keys::random_id;
use crate::token::{Grant, Role, TokenKind, now_unix};

/// The caller, if it may manage tokens; else the response to send.
// A handler's early return is a Response; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(crate) async fn admin(s: &ApiState, req: &RequestParts<'_>) -> Result<std::sync::Arc<Grant>, Response> {
    let grant =
        s.auth.authenticate_fetching(req.0, req.1).await.map_err(|r| error_response(r, None, None).into_response())?;
    if grant.role != Role::Admin && !grant.master {
        return Err(error_json(StatusCode::FORBIDDEN, "admin_required", "only admin or master tokens manage tokens"));
    }
    Ok(grant)
}

/// What authentication reads of a request: its headers and query.
pub(crate) struct RequestParts<'a>(&'a axum::http::HeaderMap, Option<&'a str>);

impl<'a> RequestParts<'a> {
    pub(crate) fn of(req: &'a Request) -> Self {
        RequestParts(req.headers(), req.uri().query())
    }
}

/// The caller (an admin) and the store, or the response to send.
#[allow(clippy::result_large_err)]
pub(crate) async fn admin_with_store(
    s: &ApiState,
    req: &RequestParts<'_>,
) -> Result<(std::sync::Arc<Grant>, Store), Response> {
    let caller = admin(s, req).await?;
    Ok((caller, store(s)?.clone()))
}

#[allow(clippy::result_large_err)]
pub(crate) fn store(s: &ApiState) -> Result<&Store, Response> {
    s.store.as_ref().ok_or_else(|| {
        error_json(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "this gateway has no token store")
    })
}

/// The response for a token that could not be minted.
pub(crate) fn mint_failed(e: MintError) -> Response {
    match e {
        MintError::TooLong { .. } => error_json(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
        MintError::Sign => {
            error_json(StatusCode::SERVICE_UNAVAILABLE, "signing_unavailable", "the token could not be signed")
        }
    }
}

pub(crate) fn store_failed(e: StoreError) -> Response {
    match e {
        StoreError::Conflict(_) => {
            error_json(StatusCode::CONFLICT, "conflict", "a token with this name already exists")
        }
        e => {
            tracing::warn!(error = %e, "token store failed");
            error_json(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the token store is unavailable")
        }
    }
}

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
    not_before: Option<i64>,
    expires_at: Option<i64>,
    parent_id: Option<&'a str>,
    created_by: Option<&'a str>,
    created_at: i64,
    revoked_at: Option<i64>,
    /// As `whoami` shows them.
    access_rules: Vec<super::RuleView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tenant_permissions: Vec<TenantPermission>,
}

fn view(t: &TokenRecord) -> TokenView<'_> {
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
        revoked_at: t.revoked_at,
        access_rules: access_rules.iter().filter_map(WireRule::compile).map(|r| super::RuleView::of(&r)).collect(),
        tenant_permissions,
    }
}

pub(crate) fn ok_json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => json(status, Bytes::from(b)),
        Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the response could not be built"),
    }
}

/// Read a JSON body of at most 64 KiB.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, Response> {
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| error_json(StatusCode::PAYLOAD_TOO_LARGE, "bad_request", "the body is too large"))?;
    from_object(&body).map_err(|e| error_json(StatusCode::BAD_REQUEST, "bad_request", &format!("malformed body: {e}")))
}

/// Create a token (admin or master caller). Its rules must lie within the
/// caller's; only master callers create admin or master tokens.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateRequest,
    security(("bearer" = []), ("auth-token" = [])),
    responses(
        (status = 201, description = "Created; the secret is in this response only", body = Created),
        (status = 400, description = "Malformed input, named (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or the token would exceed the caller's (admin_required, would_widen)", body = ErrorBody),
        (status = 409, description = "A token with this name exists (conflict)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(State(s): State<ApiState>, req: Request) -> Response {
    let (caller, store) = match admin_with_store(&s, &RequestParts::of(&req)).await {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let input: CreateRequest = match read_json(req).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let bad = |m: &str| error_json(StatusCode::BAD_REQUEST, "bad_request", m);
    if input.name.trim().is_empty() || input.name.len() > 200 {
        return bad("name: 1 to 200 characters");
    }
    let form = match input.form.as_deref() {
        None | Some("jwt") => TokenForm::Jwt,
        Some("reference") => TokenForm::Reference,
        Some(other) => return bad(&format!("form: {other:?} is not jwt or reference")),
    };
    let role = match input.role.as_deref() {
        None | Some("user") | Some("User") => Role::User,
        Some("admin") | Some("Administrator") => Role::Admin,
        Some(other) => return bad(&format!("role: {other:?} is not user or admin")),
    };
    // Creating what the caller could not do itself is widening, too: only
    // a master token may mint admin or master tokens.
    if (role == Role::Admin || input.master) && !caller.master {
        return error_json(
            StatusCode::FORBIDDEN,
            "would_widen",
            "only a master token may create admin or master tokens",
        );
    }
    let now = now_unix();
    let (not_before, expires_at) =
        match (time_field(&input.not_before, "notBefore"), time_field(&input.expires_at, "expiresAt")) {
            (Ok(n), Ok(e)) => (n, e),
            (Err(m), _) | (_, Err(m)) => return bad(&m),
        };
    let expires_at: Option<u64> = match (&input.lifetime, expires_at) {
        (Some(_), Some(_)) => return bad("give lifetime or expiresAt, not both"),
        (Some(l), None) if l == "none" => None,
        (Some(l), None) => match parse_duration(l) {
            Ok(d) if d.as_secs() > 0 => Some(now + d.as_secs()),
            _ => return bad(&format!("lifetime: {l:?} is not a duration like 2h45m30s")),
        },
        (None, Some(e)) if e > now => Some(e),
        (None, Some(_)) => return bad("expiresAt: must be in the future"),
        (None, None) => None,
    };
    if expires_at.is_none() && form == TokenForm::Jwt {
        return bad("a JWT needs lifetime or expiresAt; tokens that never expire use \"form\": \"reference\"");
    }
    if let Err(m) = tenant::validate(&input.tenant_permissions) {
        return bad(&m);
    }
    // Master tokens hold Crafter's token-management authority and may grant
    // any tenant permissions; anyone else only what it holds itself.
    if !caller.master
        && let Err(m) = tenant::within(&input.tenant_permissions, &caller.tenants)
    {
        return error_json(StatusCode::FORBIDDEN, "would_widen", &m);
    }
    let rules: Vec<AccessRule> = match &input.access_rules {
        None if !input.tenant_permissions.is_empty() => Vec::new(),
        None => caller.rules.clone(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, r) in list.iter().enumerate() {
                match super::narrow::compile(r) {
                    Some(rule) => out.push(rule),
                    None => return bad(&format!("accessRules[{i}]: empty application, service, entity or id")),
                }
            }
            out
        }
    };
    // Nobody grants more than it holds: the new token's rules must lie
    // within the caller's, and name only what the manifest knows.
    // (A token of tenant permissions alone has no rules to check.)
    if (!rules.is_empty() || input.tenant_permissions.is_empty())
        && let Err(e) = narrow_detailed(&caller.rules, &rules, &s.manifest)
    {
        return super::narrow::refused(e);
    }
    let new = NewToken {
        id: None,
        name: Some(input.name.clone()),
        subject: input.name.clone(),
        description: input.description.clone(),
        application: input.application.clone(),
        role,
        master: input.master,
        rules,
        tenants: input.tenant_permissions.clone(),
        not_before: not_before.unwrap_or(now),
        expires_at,
        form: match form {
            TokenForm::Jwt => NewForm::Jwt,
            TokenForm::Reference => NewForm::Reference,
        },
        extra_claims: Default::default(),
        external_id: None,
        created_by: Some(caller.token_id.to_string()),
    };
    let (token, record) = match issue(&s, &store, new).await {
        Ok(issued) => issued,
        Err(r) => return r,
    };
    ok_json(StatusCode::CREATED, &Created { token: &token, meta: view(&record) })
}

/// A new access token, as every way of creating one (the native API and the
/// facades) describes it after its own checks of the caller.
pub(crate) struct NewToken {
    /// `None`: a random id.
    pub id: Option<String>,
    pub name: Option<String>,
    pub subject: String,
    pub description: String,
    pub application: Option<String>,
    pub role: Role,
    pub master: bool,
    pub rules: Vec<AccessRule>,
    pub tenants: Vec<TenantPermission>,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds; `None`: never expires (reference tokens only).
    pub expires_at: Option<u64>,
    pub form: NewForm,
    /// Extra JWT claims a facade's clients read.
    pub extra_claims: serde_json::Map<String, serde_json::Value>,
    /// A credential id the client chose (with [`NewForm::External`]).
    pub external_id: Option<String>,
    pub created_by: Option<String>,
}

/// The form of a new token's secret.
pub(crate) enum NewForm {
    Jwt,
    /// A random `ngr_…` secret.
    Reference,
    /// A reference token whose secret is the client-chosen `external_id`
    /// (Crafter's access tokens, whose id is the credential).
    External,
}

/// Sign or generate the secret, record the token, and make a reference
/// token usable here at once (other replicas hear of it from the store).
/// The secret and the stored record; the secret is never stored.
// A handler's early return is a Response; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(crate) async fn issue(s: &ApiState, store: &Store, t: NewToken) -> Result<(String, TokenRecord), Response> {
    // Reference tokens need no signing key; their grants name this
    // gateway's issuer (or `narrowgate` without one), as the mirror does.
    let issuer = s.signing.as_ref().map_or("narrowgate", |sg| sg.issuer.as_str());
    let unavailable = |what: &str| error_json(StatusCode::SERVICE_UNAVAILABLE, "internal", what);
    let jti = match t.id {
        Some(id) => id,
        None => random_id(16).map_err(|_| unavailable("no randomness available"))?,
    };
    if t.expires_at.is_none() && matches!(t.form, NewForm::Jwt) {
        return Err(error_json(StatusCode::BAD_REQUEST, "bad_request", "a JWT needs an expiry"));
    }
    let now = now_unix();
    let mut claims = Claims {
        iss: issuer.to_string(),
        sub: t.subject.clone(),
        aud: None,
        exp: t.expires_at,
        nbf: Some(t.not_before),
        iat: now,
        jti: jti.clone(),
        name: t.name.clone(),
        kind: TokenKind::Access,
        role: t.role,
        master: t.master,
        access_rules: t.rules.iter().map(WireRule::from_rule).collect(),
        tenant_permissions: t.tenants,
        lineage: vec![],
        extra: t.extra_claims,
    };
    let (token, secret_hash, form) = match t.form {
        NewForm::Jwt => match s.signing.as_ref().map(|sg| sg.sign(&mut claims)) {
            Some(Ok(token)) => (token, None, TokenForm::Jwt),
            Some(Err(e)) => return Err(mint_failed(e)),
            None => return Err(mint_failed(MintError::Sign)),
        },
        NewForm::Reference => {
            let secret = reference::new_secret().ok_or_else(|| unavailable("no randomness available"))?;
            let h = reference::hash(&secret);
            (secret, Some(h), TokenForm::Reference)
        }
        NewForm::External => {
            let Some(id) = t.external_id.clone() else {
                return Err(error_json(StatusCode::BAD_REQUEST, "bad_request", "an external token needs its id"));
            };
            let h = reference::hash(&id);
            (id, Some(h), TokenForm::Reference)
        }
    };
    let record = TokenRecord {
        id: jti.clone(),
        name: t.name,
        description: t.description,
        kind: TokenKind::Access,
        role: t.role,
        master: t.master,
        application: t.application,
        subject: t.subject,
        grants: encode_grants(&claims.access_rules, &claims.tenant_permissions),
        form,
        secret_hash: secret_hash.map(|h| h.to_vec()),
        not_before: Some(t.not_before as i64),
        expires_at: t.expires_at.map(|e| e as i64),
        parent_id: None,
        lineage: vec![],
        created_by: t.created_by,
        created_at: now as i64,
        revoked_at: None,
        external_id: t.external_id,
    };
    store.insert_token(&record).await.map_err(store_failed)?;
    if let Some(h) = secret_hash {
        match reference::grant_of(&record, issuer) {
            Some(grant) => s.auth.references().insert(h, grant),
            None => tracing::warn!(token.jti = %jti, "a reference token's grant could not be built"),
        }
    }
    tracing::info!(token.jti = %jti, created_by = ?record.created_by, "created a token");
    Ok((token, record))
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
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('+', " ")))
        .collect()
}

/// List tokens, oldest first; never their secrets.
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
pub(crate) async fn list(State(s): State<ApiState>, req: Request) -> Response {
    let store = match admin_with_store(&s, &RequestParts::of(&req)).await {
        Ok((_, st)) => st,
        Err(r) => return r,
    };
    let q = query_map(&req);
    let number = |k: &str| q.get(k).map(|v| v.parse::<u32>());
    let (limit, offset) = match (number("limit"), number("offset")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return error_json(StatusCode::BAD_REQUEST, "bad_request", "limit and offset are whole numbers");
        }
        (l, o) => (l.and_then(Result::ok).unwrap_or(100), o.and_then(Result::ok).unwrap_or(0)),
    };
    let kind = match q.get("kind").map(|k| parse_kind(k)) {
        Some(None) => {
            return error_json(StatusCode::BAD_REQUEST, "bad_request", "kind is access, narrowed or registration");
        }
        Some(k) => k,
        None => None,
    };
    let filter =
        TokenFilter { name: q.get("name").cloned(), application: q.get("application").cloned(), kind, limit, offset };
    match store.list_tokens(&filter).await {
        Ok(tokens) => {
            let views: Vec<TokenView<'_>> = tokens.iter().map(view).collect();
            ok_json(StatusCode::OK, &TokenList { tokens: views, limit, offset })
        }
        Err(e) => store_failed(e),
    }
}

/// One token by id; never its secret.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(("id" = String, Path, description = "The token id (its jti)")),
    responses(
        (status = 200, description = "The token", body = TokenView),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "The caller is not an admin or master token (admin_required)", body = ErrorBody),
        (status = 404, description = "No token with this id (not_found)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn show(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let store = match admin_with_store(&s, &RequestParts::of(&req)).await {
        Ok((_, st)) => st,
        Err(r) => return r,
    };
    match store.token(&id).await {
        Ok(Some(t)) => ok_json(StatusCode::OK, &view(&t)),
        Ok(None) => error_json(StatusCode::NOT_FOUND, "not_found", "no token with this id"),
        Err(e) => store_failed(e),
    }
}

async fn revoke_record(s: &ApiState, store: &Store, record: Option<TokenRecord>) -> Response {
    let Some(t) = record else {
        return error_json(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such token here; another issuer's token is revoked with POST /v1/revocations (jti and issuer)",
        );
    };
    match store.revoke(&t.id, now_unix() as i64).await {
        Ok(_) => {
            // In force here at once; other replicas hear it from the store.
            s.auth.revocations().revoke(&t.id);
            tracing::info!(token.jti = %t.id, "revoked a token");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => store_failed(e),
    }
}

/// Revoke a token by id; every token narrowed from it, directly or not, is
/// rejected too, on every replica.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(("id" = String, Path, description = "The token id (its jti)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "The caller is not an admin or master token (admin_required)", body = ErrorBody),
        (status = 404, description = "No token with this id (not_found)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn revoke(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let store = match admin_with_store(&s, &RequestParts::of(&req)).await {
        Ok((_, st)) => st,
        Err(r) => return r,
    };
    match store.token(&id).await {
        Ok(record) => revoke_record(&s, &store, record).await,
        Err(e) => store_failed(e),
    }
}

/// Revoke a token by name, with everything narrowed from it.
#[utoipa::path(delete, path = "/v1/tokens", tag = "tokens",
    security(("bearer" = []), ("auth-token" = [])),
    params(("name" = String, Query, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "No name given (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "The caller is not an admin or master token (admin_required)", body = ErrorBody),
        (status = 404, description = "No token with this name (not_found)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn revoke_by_name(State(s): State<ApiState>, req: Request) -> Response {
    let store = match admin_with_store(&s, &RequestParts::of(&req)).await {
        Ok((_, st)) => st,
        Err(r) => return r,
    };
    let Some(name) = query_map(&req).get("name").cloned() else {
        return error_json(StatusCode::BAD_REQUEST, "bad_request", "DELETE /v1/tokens needs ?name=");
    };
    match store.token_by_name(&name).await {
        Ok(record) => revoke_record(&s, &store, record).await,
        Err(e) => store_failed(e),
    }
}

/// A point in time as a client may send it: Unix seconds, or RFC 3339 /
/// ISO 8601 with an offset (`2026-12-31T23:59:59Z`, `…+02:00`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum TimeInput {
    Unix(u64),
    Text(String),
}

/// The Unix seconds of a time field, or a message naming it.
pub(crate) fn time_field(v: &Option<TimeInput>, name: &str) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(TimeInput::Unix(n)) => Ok(Some(*n)),
        Some(TimeInput::Text(t)) => match t.parse::<jiff::Timestamp>() {
            Ok(ts) if ts.as_second() >= 0 => Ok(Some(ts.as_second() as u64)),
            _ => Err(format!("{name}: {t:?} is not Unix seconds or an RFC 3339 time like 2026-12-31T23:59:59Z")),
        },
    }
}
