//! MetaApi's token-management API (`metaapi-cloud-sdk`), as a thin
//! translation onto the native one: the same manifest, and narrowing by the
//! native handler itself — only the paths, the reply (`{"token": …}`) and the
//! error bodies (`{"id", "error", "message", "details"?}`) differ.
//!
//! The SDK retries 409, 500 and any status it does not know, so every client
//! error is sent as 400, 401, 403 or 404; only unavailability (503) stays a
//! status it retries.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApiState, error_json};

/// The facade's routes, at the root where the SDK expects them.
pub(crate) fn routes(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route("/access-rule-manifest", get(super::manifest))
        .route("/users/current/narrow-down-auth-token", post(narrow_down_auth_token))
}

/// `POST /users/current/narrow-down-auth-token[?validity-in-hours=N]`,
/// credential in `auth-token`, body in any of MetaApi's four forms.
async fn narrow_down_auth_token(state: State<ApiState>, req: Request) -> Response {
    translate(super::narrow::narrow(state, req).await).await
}

/// The native reply in MetaApi's shape.
async fn translate(native: Response) -> Response {
    let status = native.status();
    let www_authenticate = native.headers().get(header::WWW_AUTHENTICATE).cloned();
    let Ok(body) = axum::body::to_bytes(native.into_body(), 64 * 1024).await else {
        return error_json(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the reply could not be read");
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        return super::tokens::ok_json(StatusCode::OK, &json!({ "token": v["token"] }));
    }
    let (status, error) = match status.as_u16() {
        401 => (StatusCode::UNAUTHORIZED, "UnauthorizedError"),
        403 => (StatusCode::FORBIDDEN, "ForbiddenError"),
        404 => (StatusCode::NOT_FOUND, "NotFoundError"),
        s if (400..500).contains(&s) => (StatusCode::BAD_REQUEST, "ValidationError"),
        503 => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    };
    let message = v["message"].as_str().unwrap_or("the request failed");
    let mut out = json!({ "id": 1, "error": error, "message": message });
    // A validation message that starts with the element it names
    // (`applications[0]: unknown application …`) becomes a detail.
    if status == StatusCode::BAD_REQUEST
        && let Some((parameter, detail)) = message.split_once(": ")
        && !parameter.contains(' ')
    {
        out["details"] = json!([{ "parameter": parameter, "message": detail }]);
    }
    let mut resp = super::tokens::ok_json(status, &out);
    if let Some(v) = www_authenticate {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.into_response()
}
