//! Crafter Profile's access-token API, as a thin translation onto the token
//! service: tokens are minted and revoked by the same [`TokenService`]
//! (`super::service`) on the same authority rules, and enforced on the
//! proxy like any reference token.
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

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiCode, ApiError, Kind};
use super::{ApiState, ok_json};
use crate::policy::issuance::{self, Authority};
use crate::policy::tenant::{self, TenantPermission};
use crate::runtime::Snapshot;
use crate::service::{NewForm, NewToken, RevokeTarget};
use crate::store::TokenRecord;
use crate::time::UnixTime;
use crate::token::keys::random_uuid;
use crate::token::{Grant, Role};

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

/// The token service's error in Crafter's shape and codes.
fn crafter_error(e: impl Into<ApiError>) -> Response {
    let e = e.into();
    let (status, code) = match e.kind() {
        Kind::Credential(_) => (StatusCode::FORBIDDEN, "ACCESS_DENIED"),
        Kind::Api(ApiCode::Conflict) => (StatusCode::CONFLICT, "ACCESS_TOKEN_EXISTS"),
        Kind::Api(ApiCode::NotFound) => (StatusCode::NOT_FOUND, "NO_SUCH_ACCESS_TOKEN_ID"),
        Kind::Api(ApiCode::BadRequest | ApiCode::TokenTooLarge | ApiCode::PayloadTooLarge) => {
            (StatusCode::BAD_REQUEST, "BAD_REQUEST")
        }
        Kind::Api(ApiCode::AdminRequired | ApiCode::MasterRequired | ApiCode::WouldWiden) => {
            (StatusCode::FORBIDDEN, "ACTION_DENIED")
        }
        Kind::Api(ApiCode::StoreUnavailable) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
        Kind::Api(_) => (e.status(), "INTERNAL"),
    };
    error(status, code, e.message())
}

/// `accessTokenId` from the query string, or else from a form body.
fn caller_id(query: Option<&str>, form: Option<&[u8]>) -> Option<String> {
    let find =
        |bytes: &[u8]| form_urlencoded::parse(bytes).find(|(k, _)| k == "accessTokenId").map(|(_, v)| v.into_owned());
    query.and_then(|q| find(q.as_bytes())).or_else(|| form.and_then(find)).filter(|v| !v.is_empty())
}

/// The caller, if its id is a live master token, with the policy in force
/// that said so; else Crafter's 403.
#[allow(clippy::result_large_err)]
async fn master(
    s: &ApiState,
    id: Option<String>,
    presented: Option<[u8; 32]>,
) -> Result<(Arc<Snapshot>, Arc<Grant>), Response> {
    let denied = || error(StatusCode::FORBIDDEN, "ACCESS_DENIED", "a valid access token id is required");
    let id = id.ok_or_else(denied)?;
    let snap = s.snapshot();
    let grant = snap.auth.authenticate_token_fetching(&id, presented.as_ref()).await.map_err(|_| denied())?;
    // Crafter's token API is for master tokens only.
    if issuance::authority(&grant) != Authority::Master {
        return Err(error(StatusCode::FORBIDDEN, "ACTION_DENIED", "only master access tokens manage access tokens"));
    }
    Ok((snap, grant))
}

/// A token as Crafter shows it.
fn view(t: &TokenRecord) -> Value {
    let tenants = crate::token::claims::decode_grants(&t.grants).map(|(_, tn)| tn).unwrap_or_default();
    json!({
        "id": t.external_id,
        "application": t.application,
        "master": t.master,
        "tenantPermissions": tenants,
        "expiresOn": t.expires_at.map(crate::time::UnixTime::millis),
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
/// without), or `MM/dd/yyyy HH:mm:ss` (UTC), up to 9999-12-30T22:00:00Z; `null`:
/// never.
fn expires_on(v: &Value) -> Result<Option<UnixTime>, ApiError> {
    let bad =
        || ApiError::bad("expiresOn", "not epoch milliseconds, ISO-8601 or MM/dd/yyyy HH:mm:ss, from 1970 to 9999");
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().and_then(|ms| UnixTime::from_millis_ceil(ms).ok()).map(Some).ok_or_else(bad),
        Value::String(s) => {
            let utc = |c: jiff::civil::DateTime| c.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp());
            let ts = s
                .parse::<jiff::Timestamp>()
                .ok()
                .or_else(|| s.parse::<jiff::civil::DateTime>().ok().and_then(utc))
                .or_else(|| jiff::civil::DateTime::strptime("%m/%d/%Y %H:%M:%S", s).ok().and_then(utc));
            ts.and_then(|t| UnixTime::from_timestamp(t).ok()).map(Some).ok_or_else(bad)
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
    let id = caller_id(req.uri().query(), None);
    let presented = super::presented_certificate(req.extensions());
    if let Err(r) = master(&s, id.clone(), presented).await {
        return r;
    }
    let body = match super::error::body(req).await {
        Ok(b) => b,
        Err(e) => return crafter_error(e),
    };
    // Asked again once the body is in: the policy and the caller as they
    // are now decide.
    let (snap, caller) = match master(&s, id, presented).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match create_token(&s, &snap, caller, &body).await {
        Ok(record) => ok_json(StatusCode::OK, &view(&record)),
        Err(e) => crafter_error(e),
    }
}

/// Crafter's create as the token service's: the id is the credential.
async fn create_token(s: &ApiState, snap: &Snapshot, caller: Arc<Grant>, body: &[u8]) -> Result<TokenRecord, ApiError> {
    let body: CreateBody = super::error::parse(body)?;
    let id = match body.id.filter(|i| !i.is_empty()) {
        Some(id) if valid_id(&id) => id,
        Some(_) => return Err(ApiError::bad("id", "1 to 128 letters, digits, '-' or '_'")),
        None => random_uuid().map_err(|_| ApiError::internal("no randomness"))?,
    };
    if body.application.trim().is_empty() {
        return Err(ApiError::bad("application", "required"));
    }
    tenant::validate(&body.tenant_permissions).map_err(|e| ApiError::bad(e.path, e.what))?;
    let expires_at = expires_on(&body.expires_on)?;
    let now = s.service.now();
    if expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::bad("expiresOn", "must be in the future"));
    }
    let mut token = NewToken::user(body.application.clone(), NewForm::External(id), now);
    token.description = "Crafter Profile access token".into();
    token.application = Some(body.application);
    token.role = if body.master { Role::Admin } else { Role::User };
    token.master = body.master;
    token.tenants = body.tenant_permissions;
    token.expires_at = expires_at;
    Ok(s.service.create(&snap.service, caller, token).await?.record)
}

async fn show(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let (_, caller) =
        match master(&s, caller_id(req.uri().query(), None), super::presented_certificate(req.extensions())).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    match s.service.external(&caller, Some(strip_json(&id))).await {
        Ok(found) => match found.first() {
            Some(t) => ok_json(StatusCode::OK, &view(t)),
            None => crafter_error(ApiError::not_found("no access token with this id")),
        },
        Err(e) => crafter_error(e),
    }
}

async fn all(State(s): State<ApiState>, req: Request) -> Response {
    let (_, caller) =
        match master(&s, caller_id(req.uri().query(), None), super::presented_certificate(req.extensions())).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    match s.service.external(&caller, None).await {
        Ok(list) => ok_json(StatusCode::OK, &list.iter().map(view).collect::<Vec<_>>()),
        Err(e) => crafter_error(e),
    }
}

/// Delete (revoke) a token; 200 with an empty body, also for unknown ids.
/// The id is free again afterwards (Crafter re-creates immutable tokens).
async fn delete(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let query = req.uri().query().map(str::to_string);
    let presented = super::presented_certificate(req.extensions());
    let form = axum::body::to_bytes(req.into_body(), 16 * 1024).await.unwrap_or_default();
    let (snap, caller) = match master(&s, caller_id(query.as_deref(), Some(&form)), presented).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match s.service.revoke(&snap.service, &caller, RevokeTarget::ExternalId(strip_json(&id).to_string())).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) if e.kind() == crate::service::ErrorKind::NotFound => StatusCode::OK.into_response(),
        Err(e) => crafter_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_in_every_form_crafter_clients_send() {
        assert_eq!(expires_on(&json!(null)), Ok(None));
        assert_eq!(
            expires_on(&json!(1_893_456_000_000u64)),
            Ok(Some(UnixTime::from_secs(1_893_456_000).expect("in range")))
        );
        assert_eq!(
            expires_on(&json!(1_893_456_000_001u64)),
            Ok(Some(UnixTime::from_secs(1_893_456_001).expect("in range"))),
            "never earlier"
        );
        assert_eq!(
            expires_on(&json!("2030-01-01T00:00:00Z")),
            Ok(Some(UnixTime::from_secs(1_893_456_000).expect("in range")))
        );
        assert_eq!(
            expires_on(&json!("2030-01-01T02:00:00+02:00")),
            Ok(Some(UnixTime::from_secs(1_893_456_000).expect("in range")))
        );
        assert_eq!(
            expires_on(&json!("2030-01-01T00:00:00")),
            Ok(Some(UnixTime::from_secs(1_893_456_000).expect("in range"))),
            "UTC without an offset"
        );
        assert_eq!(
            expires_on(&json!("01/01/2030 00:00:00")),
            Ok(Some(UnixTime::from_secs(1_893_456_000).expect("in range")))
        );
        for bad in [json!("2030-13-01T00:00:00Z"), json!("tomorrow"), json!(-5), json!(true)] {
            let e = expires_on(&bad).expect_err("refused");
            assert!(!e.message().contains("tomorrow"), "the value is not repeated: {}", e.message());
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
