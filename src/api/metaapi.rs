//! MetaApi's token-management API (`metaapi-cloud-sdk`), as a thin
//! translation onto the token service: the same manifest, and narrowing
//! read by the native handler's own parser and minted by the service —
//! only the paths, the reply (`{"token": …}`) and the error bodies
//! (`{"id", "error", "message", "details"?}`, mapped from `ApiError`)
//! differ.
//!
//! The SDK retries 409, 500 and any status it does not know, so every client
//! error is sent as 400, 401, 403 or 404; only unavailability (503) stays a
//! status it retries.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use super::error::{ApiCode, ApiError, Kind};
use super::{ApiState, ok_json};

/// The facade's routes, at the root where the SDK expects them.
pub(crate) fn routes(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route("/access-rule-manifest", get(super::manifest))
        .route("/users/current/narrow-down-auth-token", post(narrow_down_auth_token))
}

/// `POST /users/current/narrow-down-auth-token[?validity-in-hours=N]`,
/// credential in `auth-token`, body in any of MetaApi's four forms.
async fn narrow_down_auth_token(State(s): State<ApiState>, req: Request) -> Response {
    match super::narrow::mint(&s, None, req).await {
        Ok((token, _)) => ok_json(StatusCode::OK, &json!({ "token": token })),
        Err(e) => metaapi_error(e),
    }
}

/// The token service's error in MetaApi's shape: `{id, error, message,
/// details?}`, with statuses its SDK does not retry.
fn metaapi_error(e: ApiError) -> Response {
    let (status, error) = match e.kind() {
        Kind::Credential(r) if r.status() == 503 => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError"),
        Kind::Credential(_) => (StatusCode::UNAUTHORIZED, "UnauthorizedError"),
        Kind::Api(
            ApiCode::AdminRequired | ApiCode::MasterRequired | ApiCode::WouldWiden | ApiCode::FeedReaderRequired,
        ) => (StatusCode::FORBIDDEN, "ForbiddenError"),
        Kind::Api(ApiCode::NotFound) => (StatusCode::NOT_FOUND, "NotFoundError"),
        Kind::Api(ApiCode::StoreUnavailable | ApiCode::SigningUnavailable) => {
            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError")
        }
        Kind::Api(ApiCode::Internal) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        // Every other client error is a validation error (the SDK retries
        // 409 and statuses it does not know).
        Kind::Api(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
    };
    let mut out = json!({ "id": 1, "error": error, "message": e.message() });
    if status == StatusCode::BAD_REQUEST
        && let Some(parameter) = e.field()
    {
        let detail = e.message().split_once(": ").map_or("", |(_, d)| d);
        out["details"] = json!([{ "parameter": parameter, "message": detail }]);
    }
    let mut resp = ok_json(status, &out);
    if let Kind::Credential(reason) = e.kind()
        && let Some(v) = crate::respond::www_authenticate(reason, &[])
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}
