//! The one place decisions and failures become HTTP responses.
//!
//! Bodies are JSON with the stable reason code; they never contain internal
//! error text, tokens or keys. 401s carry `WWW-Authenticate: Bearer` as RFC
//! 6750 describes.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::policy::Denial;
use crate::reason::Reason;
use crate::service::ErrorKind;

/// The largest body the token service's listener reads (api and console).
pub const MAX_BODY: usize = 64 * 1024;

/// Declares a closed set of codes: the enum, `ALL`, `code()` and
/// `status()` from one list, so no variant can be left out of any.
macro_rules! closed_set {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident => ($code:literal, $status:literal),)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant,)* }
        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// The stable snake_case code.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)* }
            }
            /// The HTTP status.
            pub fn status(self) -> StatusCode {
                match self { $($name::$variant => StatusCode::from_u16($status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),)* }
            }
        }
    };
}

closed_set! {
    /// The token service's own error codes. Stable: clients key on them, so
    /// a code is never renamed, only added.
    pub enum ApiCode {
        /// Malformed input; the message names the field.
        BadRequest => ("bad_request", 400),
        /// The token would not fit `server.max_token_bytes`.
        TokenTooLarge => ("token_too_large", 400),
        /// The caller has no management authority.
        AdminRequired => ("admin_required", 403),
        /// Acting on a master token needs a master.
        MasterRequired => ("master_required", 403),
        /// The revocation feed is for feed readers, admins and masters.
        FeedReaderRequired => ("feed_reader_required", 403),
        /// More than the caller may give; the message names the field.
        WouldWiden => ("would_widen", 403),
        /// A token its issuer does not let be exchanged (RFC 8693).
        NotExchangeable => ("not_exchangeable", 403),
        NotFound => ("not_found", 404),
        Conflict => ("conflict", 409),
        AlreadyRedeemed => ("already_redeemed", 409),
        /// A registration token past its TTL.
        RegistrationExpired => ("registration_expired", 410),
        /// A registration token revoked, or its creator.
        RegistrationRevoked => ("registration_revoked", 410),
        /// The token to act on is revoked (itself or an ancestor) or
        /// expired: nothing more is made from it.
        NotLive => ("not_live", 410),
        /// The request (its body included) took longer than the token
        /// service waits.
        RequestTimeout => ("request_timeout", 408),
        PayloadTooLarge => ("payload_too_large", 413),
        Internal => ("internal", 500),
        StoreUnavailable => ("store_unavailable", 503),
        SigningUnavailable => ("signing_unavailable", 503),
    }
}

/// The service's errors as the listener's codes (the code strings are the
/// same; each gets its status).
impl From<ErrorKind> for ApiCode {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::BadRequest => ApiCode::BadRequest,
            ErrorKind::TokenTooLarge => ApiCode::TokenTooLarge,
            ErrorKind::AdminRequired => ApiCode::AdminRequired,
            ErrorKind::MasterRequired => ApiCode::MasterRequired,
            ErrorKind::WouldWiden => ApiCode::WouldWiden,
            ErrorKind::NotExchangeable => ApiCode::NotExchangeable,
            ErrorKind::NotFound => ApiCode::NotFound,
            ErrorKind::Conflict => ApiCode::Conflict,
            ErrorKind::AlreadyRedeemed => ApiCode::AlreadyRedeemed,
            ErrorKind::RegistrationExpired => ApiCode::RegistrationExpired,
            ErrorKind::RegistrationRevoked => ApiCode::RegistrationRevoked,
            ErrorKind::NotLive => ApiCode::NotLive,
            ErrorKind::Internal => ApiCode::Internal,
            ErrorKind::StoreUnavailable => ApiCode::StoreUnavailable,
            ErrorKind::SigningUnavailable => ApiCode::SigningUnavailable,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
/// Every error body, on the proxy and the token service alike.
pub struct ErrorBody<'a> {
    /// A stable code (`missing_token`, `would_widen`, `not_found`, …).
    error: &'static str,
    /// What happened, for a person.
    message: &'static str,
    /// On `insufficient_role`: the roles the route accepts.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Vec<String>)]
    missing_roles: &'a [Box<str>],
    /// On `insufficient_scope`: the scopes the token lacks.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Vec<String>)]
    missing_scopes: &'a [Box<str>],
}

pub fn message(reason: Reason) -> &'static str {
    match reason {
        Reason::MissingToken => "a bearer token is required",
        Reason::InvalidToken => "the token is not valid",
        Reason::Expired => "the token has expired",
        Reason::NotYetValid => "the token is not valid yet",
        Reason::TokenTooLarge => "the token is too large",
        Reason::Revoked => "the token has been revoked",
        Reason::ConflictingCredentials => "the request carries more than one credential",
        Reason::NoMatchingRoute => "no route matches this request",
        Reason::ApplicationNotAllowed => "the token does not grant this application",
        Reason::ServiceNotAllowed => "the token does not grant this service",
        Reason::MethodNotGranted => "the token does not grant this method",
        Reason::ResourceNotAllowed => "the token does not grant this resource",
        Reason::InsufficientRole => "the token has none of the roles this route requires",
        Reason::InsufficientScope => "the token lacks scopes this route requires",
        Reason::AmbiguousPath => "the request path is ambiguous",
        Reason::BadRequest => "the request is malformed",
        Reason::MethodOverride => "method override headers are not accepted",
        Reason::TargetRewrite => "headers that rewrite the request target are not accepted",
        Reason::UpgradeNotAllowed => "this request's protocol upgrade is not accepted here",
        Reason::UpstreamUnavailable => "the upstream is unavailable",
        Reason::UpstreamTimeout => "the upstream did not answer in time",
        Reason::KeysUnavailable => "the keys to verify this token are not available; try again shortly",
        Reason::UnknownKey => "the token was signed with a key no trusted issuer publishes",
        Reason::TenantNotAllowed => "the token's tenant permissions do not allow this action on this tenant",
        Reason::RevocationsUnavailable => "the gateway cannot confirm which tokens are revoked; try again shortly",
        Reason::RateLimited => "too many requests; retry after the time given",
        Reason::CertificateMismatch => "the token is bound to a client certificate this connection did not present",
        Reason::UnknownHost => "this gateway serves no application at this host",
        Reason::UpstreamConnect => "the upstream could not be reached",
        Reason::UpstreamTls => "the upstream's TLS could not be established",
        Reason::UntrustedPeer => "this address may not ask for decisions",
        Reason::CannotRemove => {
            "the request carries what must not reach the upstream (a credential in the query or a cookie, a header in an identity's or credential's name), and it cannot be removed here"
        }
        Reason::Allowed | Reason::Public | Reason::Shadow => "",
    }
}

/// A JSON error response for `reason`, with what was missing if known.
pub fn error_response(
    reason: Reason,
    denial: Option<&Denial>,
    status_override: Option<StatusCode>,
) -> Response<Full<Bytes>> {
    let (roles, scopes): (&[Box<str>], &[Box<str>]) = match denial {
        Some(d) => (&d.missing_roles, &d.missing_scopes),
        None => (&[], &[]),
    };
    let body =
        ErrorBody { error: reason.code(), message: message(reason), missing_roles: roles, missing_scopes: scopes };
    // Serializing this struct cannot fail; fall back to a fixed body anyway.
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":"internal"}"#.to_vec());
    let status =
        status_override.or_else(|| StatusCode::from_u16(reason.status()).ok()).unwrap_or(StatusCode::FORBIDDEN);
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(v) = www_authenticate(reason, scopes) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    resp
}

/// The `grpc-status` a refusal answered with `status` has: what a gRPC
/// client reads where a REST client reads the HTTP status.
pub fn grpc_status(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 | 421 => 12, // UNIMPLEMENTED: no such method here
        429 => 8,        // RESOURCE_EXHAUSTED
        504 => 4,        // DEADLINE_EXCEEDED
        502 | 503 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// A refusal in gRPC's own terms: a trailers-only response (HTTP 200,
/// `content-type: application/grpc`, no body) whose `grpc-status` is what
/// the REST answer's status maps to and whose `grpc-message` carries the
/// same reason code, then what was missing (percent-encoded).
pub fn grpc_error_response(
    reason: Reason,
    denial: Option<&Denial>,
    status_override: Option<StatusCode>,
) -> Response<Full<Bytes>> {
    let status =
        status_override.or_else(|| StatusCode::from_u16(reason.status()).ok()).unwrap_or(StatusCode::FORBIDDEN);
    let mut message = reason.code().to_string();
    if let Some(d) = denial {
        for (what, names) in [("missing roles", &d.missing_roles), ("missing scopes", &d.missing_scopes)] {
            if !names.is_empty() {
                message.push_str(&format!("; {what}: {}", names.join(", ")));
            }
        }
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(grpc_status(status))));
    if let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(&message)) {
        h.insert("grpc-message", v);
    }
    if let Some(v) = www_authenticate(reason, denial.map_or(&[][..], |d| &d.missing_scopes)) {
        h.insert(WWW_AUTHENTICATE, v);
    }
    resp
}

/// gRPC's percent-encoding of `grpc-message`: every byte outside
/// printable ASCII, and `%`.
fn grpc_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token service listener's error response: `{"error": code,
/// "message": …}` with the code's status. `message` is fixed text or names
/// a field, never a value a client sent.
pub fn code_response(code: ApiCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": code.code(), "message": message });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = code.status();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The `WWW-Authenticate` a refusal for `reason` carries (RFC 6750).
pub fn www_authenticate(reason: Reason, scopes: &[Box<str>]) -> Option<HeaderValue> {
    let fixed = match reason {
        // RFC 6750 §3.1: no error code when the request had no credential.
        Reason::MissingToken => r#"Bearer realm="narrowgate""#,
        Reason::InvalidToken | Reason::TokenTooLarge | Reason::UnknownKey => {
            r#"Bearer realm="narrowgate", error="invalid_token", error_description="the token is not valid""#
        }
        Reason::Expired => {
            r#"Bearer realm="narrowgate", error="invalid_token", error_description="the token has expired""#
        }
        Reason::NotYetValid => {
            r#"Bearer realm="narrowgate", error="invalid_token", error_description="the token is not valid yet""#
        }
        Reason::Revoked => {
            r#"Bearer realm="narrowgate", error="invalid_token", error_description="the token has been revoked""#
        }
        Reason::ConflictingCredentials => r#"Bearer realm="narrowgate", error="invalid_request""#,
        // RFC 8705 §3: a bound token presented without its certificate.
        Reason::CertificateMismatch => {
            r#"Bearer realm="narrowgate", error="invalid_token", error_description="the token is bound to another client certificate""#
        }
        Reason::InsufficientScope => {
            let list: Vec<&str> = scopes.iter().map(|s| &**s).collect();
            return HeaderValue::from_str(&format!(
                r#"Bearer realm="narrowgate", error="insufficient_scope", scope="{}""#,
                list.join(" ")
            ))
            .ok();
        }
        _ => return None,
    };
    Some(HeaderValue::from_static(fixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_grpc_status_and_the_reason_code_in_its_message() {
        for reason in Reason::iter().filter(|r| r.status() >= 400) {
            let resp = grpc_error_response(reason, None, None);
            assert_eq!(resp.status(), StatusCode::OK, "{reason:?}: trailers-only responses are 200");
            let status = resp.headers()["grpc-status"].to_str().unwrap_or("");
            let want = match reason.status() {
                401 => "16",
                403 => "7",
                429 => "8",
                502 | 503 => "14",
                504 => "4",
                400 => "3",
                421 => "12",
                _ => "2",
            };
            assert_eq!(status, want, "{reason:?}");
            assert_eq!(resp.headers()["grpc-message"], reason.code(), "{reason:?}");
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/grpc");
        }
        // What was missing follows the code; bytes outside printable ASCII
        // (and `%`) are percent-encoded.
        let denial = Denial {
            reason: Reason::InsufficientRole,
            missing_roles: vec!["writer".into(), "ré%".into()],
            missing_scopes: vec![],
            closest: None,
        };
        let resp = grpc_error_response(Reason::InsufficientRole, Some(&denial), None);
        assert_eq!(resp.headers()["grpc-message"], "insufficient_role; missing roles: writer, r%C3%A9%25");
        // A 404 for unmatched routes (if so configured) is UNIMPLEMENTED.
        let resp = grpc_error_response(Reason::NoMatchingRoute, None, Some(StatusCode::NOT_FOUND));
        assert_eq!(resp.headers()["grpc-status"], "12");
    }
}
