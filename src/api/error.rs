//! The api listener's one error type, [`ApiError`] (the service's
//! [`ServiceError`] mapped to codes and statuses), and its one rendering
//! (`{"error": code, "message": …}`). Codes come from one closed set,
//! [`ApiCode`], plus the proxy's own [`Reason`]s for a refused credential
//! (which keep their codes, statuses and `WWW-Authenticate`). Each facade
//! maps an `ApiError` to its own wire shape with a `match` on
//! [`ApiError::kind`], never by reading a rendered response.
//!
//! Messages are built from fixed text and the *name* of the field at fault
//! (`accessRules[0].roles[1]`), never from what the client sent.

use std::borrow::Cow;
use std::fmt::Display;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::MintError;
use crate::policy::issuance::IssuanceError;
use crate::policy::narrow::NarrowError;
use crate::reason::Reason;
pub use crate::respond::ApiCode;
use crate::respond::{self, error_response};
#[cfg(test)]
use crate::service::ErrorKind;
use crate::service::ServiceError;
use crate::store::StoreError;

/// What went wrong: one of the service's codes, or the proxy's reason for
/// refusing the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Api(ApiCode),
    Credential(Reason),
}

/// An error of the token service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    kind: Kind,
    message: Cow<'static, str>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    fn new(code: ApiCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { kind: Kind::Api(code), message: message.into() }
    }

    /// The credential was refused, for `reason` (rendered as the proxy does).
    pub fn credential(reason: Reason) -> Self {
        ApiError { kind: Kind::Credential(reason), message: respond::message(reason).into() }
    }

    /// Malformed input at `field` (a place in the request, never its value).
    pub fn bad(field: impl Display, what: &'static str) -> Self {
        Self::new(ApiCode::BadRequest, format!("{field}: {what}"))
    }

    pub fn feed_reader_required() -> Self {
        Self::new(ApiCode::FeedReaderRequired, "only feed-reader, admin or master tokens read the revocation feed")
    }

    pub fn not_found(what: &'static str) -> Self {
        Self::new(ApiCode::NotFound, what)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(ApiCode::PayloadTooLarge, format!("the body is larger than {limit} bytes"))
    }

    pub fn request_timeout() -> Self {
        Self::new(ApiCode::RequestTimeout, "the request took too long to arrive")
    }

    /// Something that should not happen; `what` is logged, not returned.
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "token service failure");
        Self::new(ApiCode::Internal, "the request could not be completed")
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self.kind {
            Kind::Api(c) => c.code(),
            Kind::Credential(r) => r.code(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Api(c) => c.status(),
            Kind::Credential(r) => StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the field at fault is `field` (the message starts with it).
    pub fn field(&self) -> Option<&str> {
        matches!(self.kind, Kind::Api(ApiCode::BadRequest | ApiCode::WouldWiden))
            .then(|| self.message.split_once(": ").map(|(f, _)| f))
            .flatten()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.kind {
            Kind::Credential(reason) => error_response(reason, None, None).into_response(),
            Kind::Api(code) => respond::code_response(code, &self.message).into_response(),
        }
    }
}

/// A value as a JSON response.
pub(crate) fn ok_json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => json(status, Bytes::from(b)),
        Err(_) => ApiError::internal("a response could not be serialized").into_response(),
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: Bytes) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::new(ApiCode::from(e.kind()), e.into_message())
    }
}

/// What the service's errors are made from is the api's too, mapped the
/// same way.
macro_rules! through_service {
    ($($from:ty),*) => {$(
        impl From<$from> for ApiError {
            fn from(e: $from) -> Self {
                ServiceError::from(e).into()
            }
        }
    )*};
}
through_service!(StoreError, IssuanceError, NarrowError, MintError);

pub use crate::respond::MAX_BODY;

/// Read a JSON object into `T` (see [`parse`]), at most [`MAX_BODY`].
pub async fn read_body<T: DeserializeOwned>(req: axum::extract::Request) -> Result<T, ApiError> {
    parse(&body(req).await?)
}

/// A request's body, at most [`MAX_BODY`].
pub async fn body(req: axum::extract::Request) -> Result<bytes::Bytes, ApiError> {
    body_bytes(req.into_body()).await
}

/// [`body`], of a request already taken apart.
pub async fn body_bytes(body: axum::body::Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::payload_too_large(MAX_BODY))
}

/// Parse a request body: a JSON object (never an array read by position),
/// each problem reported by the field's place and the kind of problem,
/// never by what was sent.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad("body", "not a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: Result<T, _> = serde_path_to_error::deserialize(de);
    let e = match value {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let segments: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
    let inner = e.into_inner();
    use serde_json::error::Category;
    if !matches!(inner.classify(), Category::Data) {
        return Err(ApiError::bad("body", "malformed body: not valid JSON"));
    }
    // serde's messages quote the offending value or key: only their kind
    // is kept. A missing field's name is ours (from the struct), not sent;
    // an unknown field's is the client's, so its segment is dropped.
    let text = inner.to_string();
    let keep = if text.starts_with("unknown field") { segments.len().saturating_sub(1) } else { segments.len() };
    let mut path = String::new();
    for segment in &segments[..keep] {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Enum { variant } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(variant);
            }
            Segment::Unknown => path.push_str(".?"),
        }
    }
    let field = if path.is_empty() { "body".to_string() } else { path };
    let (field, what) = if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        (format!("{field}.{name}"), "missing field")
    } else if text.starts_with("unknown field") {
        (field, "unknown field")
    } else if text.starts_with("unknown variant") {
        (field, "not one of the accepted values")
    } else if text.starts_with("invalid type") {
        (field, "wrong type")
    } else if text.starts_with("invalid length") {
        (field, "wrong number of elements")
    } else {
        (field, "invalid value")
    };
    Err(ApiError::bad(field, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Req {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        count: u32,
    }

    #[test]
    fn every_code_is_distinct_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ApiCode::ALL {
            assert!(seen.insert(c.code()), "{:?}", c);
            assert!(c.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        for r in Reason::iter() {
            assert!(
                !seen.contains(r.code()) || ApiCode::ALL.iter().any(|c| c.code() == r.code()),
                "{} would mean two things",
                r.code()
            );
        }
    }

    #[test]
    fn every_service_error_keeps_its_code() {
        for k in ErrorKind::ALL {
            let e = ApiError::from(ServiceError::new(*k, "m"));
            assert_eq!(e.code(), k.code());
        }
    }

    #[test]
    fn body_errors_name_the_field_never_the_value() {
        let marker = "zq-distinctive-zq";
        let cases = [
            (format!(r#"["{marker}"]"#), "body: not a JSON object"),
            (format!(r#"{{"name": "{marker}""#), "body: malformed body: not valid JSON"),
            (format!(r#"{{"name": 7, "x": "{marker}"}}"#), "name: wrong type"),
            (format!(r#"{{"name": "a", "{marker}": 1}}"#), "unknown field"),
            (r#"{"items": []}"#.to_string(), "body.name: missing field"),
            (format!(r#"{{"name": "a", "items": [{{"count": "{marker}"}}]}}"#), "items[0].count: wrong type"),
            (r#"{"name": "a", "items": [{"count": -1}]}"#.to_string(), "items[0].count: invalid value"),
        ];
        for (body, want) in cases {
            let e = parse::<Req>(body.as_bytes()).expect_err(&body);
            assert!(e.message().contains(want), "{body}: {}", e.message());
            assert!(!e.message().contains(marker), "{body}: echoed: {}", e.message());
            assert_eq!(e.code(), "bad_request");
        }
    }
}
