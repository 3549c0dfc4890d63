//! Crafter Profile's access-token API, as a thin translation onto the native
//! token service: tokens are issued by the same [`issue`], revoked the same
//! way, and enforced on the proxy like any reference token.
//!
//! Crafter's access-token id *is* the credential (the `accessTokenId`
//! parameter), chosen by the client or generated, and its API lists ids to
//! master callers. narrowgate keeps that id as the token's external id (and
//! its hash for lookups); the token's own id is a separate random `jti`, so
//! deleting a token (revoking that `jti`) and creating the same id again —
//! Crafter's way of changing an immutable token — works.
//!
//! Paths under `/api/1/access_token`, with or without the `.json` suffix
//! Crafter's Java client adds. The caller's id comes in the query string or
//! a form body; every call needs a master token. Errors are
//! `{"errorCode", "message"}`.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::tokens::{NewForm, NewToken, issue, ok_json, store};
use crate::policy::tenant::{self, TenantPermission};
use crate::store::{Store, TokenRecord};
use crate::token::keys::random_uuid;
use crate::token::{Grant, Role, now_unix};

const BASE: &str = "/api/1/access_token";

pub(crate) fn routes(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route(&format!("{BASE}/create"), post(create))
        .route(&format!("{BASE}/create.json"), post(create))
        .route(&format!("{BASE}/all"), get(all))
        .route(&format!("{BASE}/all.json"), get(all))
        .route(&format!("{BASE}/{{id}}"), get(show))
        .route(&format!("{BASE}/{{id}}/delete"), post(delete))
        .route(&format!("{BASE}/{{id}}/delete.json"), post(delete))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    ok_json(status, &json!({ "errorCode": code, "message": message }))
}

/// `accessTokenId` from the query string, or else from a form body.
fn caller_id(query: Option<&str>, form: Option<&[u8]>) -> Option<String> {
    let find =
        |bytes: &[u8]| form_urlencoded::parse(bytes).find(|(k, _)| k == "accessTokenId").map(|(_, v)| v.into_owned());
    query.and_then(|q| find(q.as_bytes())).or_else(|| form.and_then(find)).filter(|v| !v.is_empty())
}

/// The caller, if its token is a live master token; else Crafter's 403.
#[allow(clippy::result_large_err)]
async fn master(s: &ApiState, id: Option<String>) -> Result<std::sync::Arc<Grant>, Response> {
    let denied = || error(StatusCode::FORBIDDEN, "ACCESS_DENIED", "a valid access token id is required");
    let id = id.ok_or_else(denied)?;
    let value = HeaderValue::from_str(&format!("Bearer {id}")).map_err(|_| denied())?;
    let headers = HeaderMap::from_iter([(header::AUTHORIZATION, value)]);
    let grant = s.auth.authenticate_fetching(&headers, None).await.map_err(|_| denied())?;
    if !grant.master {
        return Err(error(StatusCode::FORBIDDEN, "ACTION_DENIED", "only master access tokens manage access tokens"));
    }
    Ok(grant)
}

#[allow(clippy::result_large_err)]
fn crafter_store(s: &ApiState) -> Result<Store, Response> {
    store(s).cloned().map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE", "no token store"))
}

/// A token as Crafter shows it.
fn view(t: &TokenRecord) -> Value {
    let tenants = crate::token::claims::decode_grants(&t.grants).map(|(_, tn)| tn).unwrap_or_default();
    json!({
        "id": t.external_id,
        "application": t.application,
        "master": t.master,
        "tenantPermissions": tenants,
        "expiresOn": t.expires_at.map(|e| e * 1000),
    })
}

/// The path id without the `.json` suffix.
fn strip_json(id: &str) -> &str {
    id.strip_suffix(".json").unwrap_or(id)
}

/// Ids are credentials sent in query strings: letters, digits, `-` and `_`
/// (UUIDs, say), and no dot, so they are never taken for a JWT.
fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `expiresOn`: epoch milliseconds, ISO-8601 (with an offset, or UTC
/// without), or `MM/dd/yyyy HH:mm:ss` (UTC); `null`: never.
fn expires_on(v: &Value) -> Result<Option<u64>, String> {
    let bad = || format!("expiresOn: {v} is not epoch milliseconds, ISO-8601 or MM/dd/yyyy HH:mm:ss");
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(|ms| Some(ms.div_ceil(1000))).ok_or_else(bad),
        Value::String(s) => {
            let utc = |c: jiff::civil::DateTime| c.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp());
            let ts = s
                .parse::<jiff::Timestamp>()
                .ok()
                .or_else(|| s.parse::<jiff::civil::DateTime>().ok().and_then(utc))
                .or_else(|| jiff::civil::DateTime::strptime("%m/%d/%Y %H:%M:%S", s).ok().and_then(utc));
            ts.and_then(|t| u64::try_from(t.as_second()).ok()).map(Some).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    application: String,
    #[serde(default)]
    master: bool,
    #[serde(default)]
    tenant_permissions: Vec<TenantPermission>,
    #[serde(default)]
    expires_on: Value,
}

async fn create(State(s): State<ApiState>, req: Request) -> Response {
    let caller = match master(&s, caller_id(req.uri().query(), None)).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let store = match crafter_store(&s) {
        Ok(st) => st,
        Err(r) => return r,
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m);
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return bad("the body is too large");
    };
    let body: CreateBody = match crate::token::encoding::from_object(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(&format!("malformed token: {e}")),
    };
    let id = match body.id.filter(|i| !i.is_empty()) {
        Some(id) if valid_id(&id) => id,
        Some(_) => return bad("id: 1 to 128 letters, digits, '-' or '_'"),
        None => match random_uuid() {
            Ok(id) => id,
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL", "no randomness available"),
        },
    };
    if body.application.trim().is_empty() {
        return bad("application: required");
    }
    if let Err(m) = tenant::validate(&body.tenant_permissions) {
        return bad(&m);
    }
    let expires_at = match expires_on(&body.expires_on) {
        Ok(e) => e,
        Err(m) => return bad(&m),
    };
    let now = now_unix();
    if expires_at.is_some_and(|e| e <= now) {
        return bad("expiresOn: must be in the future");
    }
    let new = NewToken {
        id: None,
        name: None,
        subject: body.application.clone(),
        description: "Crafter Profile access token".into(),
        application: Some(body.application),
        role: if body.master { Role::Admin } else { Role::User },
        master: body.master,
        rules: Vec::new(),
        tenants: body.tenant_permissions,
        not_before: now,
        expires_at,
        form: NewForm::External,
        extra_claims: Default::default(),
        external_id: Some(id),
        created_by: Some(caller.token_id.to_string()),
    };
    match issue(&s, &store, new).await {
        Ok((_, record)) => ok_json(StatusCode::OK, &view(&record)),
        Err(native) if native.status() == StatusCode::CONFLICT => {
            error(StatusCode::CONFLICT, "ACCESS_TOKEN_EXISTS", "an access token with this id already exists")
        }
        Err(native) => error(native.status(), "INTERNAL", "the token could not be created"),
    }
}

async fn show(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    if let Err(r) = master(&s, caller_id(req.uri().query(), None)).await {
        return r;
    }
    let store = match crafter_store(&s) {
        Ok(st) => st,
        Err(r) => return r,
    };
    match store.token_by_external_id(strip_json(&id)).await {
        Ok(Some(t)) => ok_json(StatusCode::OK, &view(&t)),
        Ok(None) => error(StatusCode::NOT_FOUND, "NO_SUCH_ACCESS_TOKEN_ID", "no access token with this id"),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE", "the token store is unavailable"),
    }
}

async fn all(State(s): State<ApiState>, req: Request) -> Response {
    if let Err(r) = master(&s, caller_id(req.uri().query(), None)).await {
        return r;
    }
    let store = match crafter_store(&s) {
        Ok(st) => st,
        Err(r) => return r,
    };
    match store.external_tokens().await {
        Ok(list) => ok_json(StatusCode::OK, &list.iter().map(view).collect::<Vec<_>>()),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE", "the token store is unavailable"),
    }
}

/// Delete (revoke) a token; 200 with an empty body, also for unknown ids.
async fn delete(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let query = req.uri().query().map(str::to_string);
    let form = axum::body::to_bytes(req.into_body(), 16 * 1024).await.unwrap_or_default();
    if let Err(r) = master(&s, caller_id(query.as_deref(), Some(&form))).await {
        return r;
    }
    let store = match crafter_store(&s) {
        Ok(st) => st,
        Err(r) => return r,
    };
    let unavailable = || error(StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE", "the token store is unavailable");
    let record = match store.token_by_external_id(&id).await {
        Ok(r) => r,
        Err(_) => return unavailable(),
    };
    if let Some(t) = record {
        // Revoked here and on every replica; then the id is free again.
        if store.revoke(&t.id, now_unix() as i64).await.is_err() {
            return unavailable();
        }
        s.auth.revocations().revoke(&t.id);
        if store.forget_secret(&t.id).await.is_err() {
            return unavailable();
        }
        tracing::info!(token.jti = %t.id, "deleted a Crafter access token");
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_in_every_form_crafter_clients_send() {
        assert_eq!(expires_on(&json!(null)), Ok(None));
        assert_eq!(expires_on(&json!(1_893_456_000_000u64)), Ok(Some(1_893_456_000)));
        assert_eq!(expires_on(&json!(1_893_456_000_001u64)), Ok(Some(1_893_456_001)), "never earlier");
        assert_eq!(expires_on(&json!("2030-01-01T00:00:00Z")), Ok(Some(1_893_456_000)));
        assert_eq!(expires_on(&json!("2030-01-01T02:00:00+02:00")), Ok(Some(1_893_456_000)));
        assert_eq!(expires_on(&json!("2030-01-01T00:00:00")), Ok(Some(1_893_456_000)), "UTC without an offset");
        assert_eq!(expires_on(&json!("01/01/2030 00:00:00")), Ok(Some(1_893_456_000)));
        for bad in [json!("2030-13-01T00:00:00Z"), json!("tomorrow"), json!(-5), json!(true)] {
            assert!(expires_on(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_safe_credentials_and_generated_ones_are_uuids() {
        assert!(valid_id("e8f5170c-877b-416f-b70f-4b09772f8e2d") && valid_id("my_app-1"));
        for bad in ["", "a.b", "a/b", "a b", "a?b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        let u = random_uuid().expect("uuid");
        assert!(valid_id(&u));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{u}");
        assert_ne!(random_uuid().ok(), random_uuid().ok());
    }

    #[test]
    fn the_caller_id_comes_from_the_query_or_the_form() {
        assert_eq!(caller_id(Some("a=1&accessTokenId=abc"), None).as_deref(), Some("abc"));
        assert_eq!(caller_id(None, Some(b"accessTokenId=f%2Dg")).as_deref(), Some("f-g"));
        assert_eq!(caller_id(Some("x=1"), Some(b"accessTokenId=")), None);
    }
}
