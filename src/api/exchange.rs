//! `POST /v1/oauth/token`: OAuth 2.0 Token Exchange (RFC 8693) — a token of
//! any issuer the gateway trusts (an identity provider's, mapped to rules
//! by its claim mapping, or narrowgate's own) exchanged for a narrowgate
//! token that allows at most what it does, for at most as long: MetaApi's
//! narrowing offered by the OAuth standard. The subject token is judged as
//! the proxy judges a credential; the exchange itself is the token
//! service's (`TokenService::exchange`), under its issuer's `exchange`
//! setting (by default no token is exchangeable).
//!
//! Answers are OAuth's: `{"access_token", "issued_token_type",
//! "token_type", "expires_in"}`, or `{"error", "error_description"}` with
//! RFC 6749 §5.2's codes. Neither ever holds the subject token, nor
//! anything else the client sent.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{ApiError, Kind, body_bytes};
use super::{ApiCode, ApiState};
use crate::reason::Reason;
use crate::service::{Exchange, Narrowing};
use crate::token::mapping::{DEFAULT_CLIENT, client_of, payload_of};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The form an exchange is asked with (`application/x-www-form-urlencoded`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    grant_type: String,
    /// The token to exchange: an identity provider's JWT, or narrowgate's.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt` or `…:access_token`.
    subject_token_type: String,
    /// `…:jwt` or `…:access_token` (the same: a narrowgate JWT), if given.
    requested_token_type: Option<String>,
    /// Space-separated scopes: the new token keeps only the grants of the
    /// subject's claim mapping that these scopes give.
    scope: Option<String>,
    /// Applications the new token is for (repeatable; `audience` alike).
    resource: Option<Vec<String>>,
    audience: Option<Vec<String>>,
    /// narrowgate's own narrowing, as JSON: the body of
    /// `POST /v1/tokens/narrow` (simplified or detailed form, validity).
    narrowing: Option<String>,
}

/// A token exchanged.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExchangeResponse {
    access_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    issued_token_type: &'static str,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds it lives.
    expires_in: u64,
}

/// RFC 6749 §5.2's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OAuthError {
    #[serde(skip)]
    status: StatusCode,
    /// `invalid_request`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_target`,
    /// `temporarily_unavailable`, `server_error`.
    error: &'static str,
    /// What was wrong, for a person: the field's name, never its value.
    error_description: Cow<'static, str>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError { status, error, error_description: description.into() }
    }

    fn request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        no_store(self.status, &self)
    }
}

/// A JSON answer that no cache keeps (RFC 6749 §5.1).
fn no_store<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = super::ok_json(status, body);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The token service's errors in OAuth's terms.
impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        let message = e.message().to_string();
        let bad = |error| OAuthError::new(StatusCode::BAD_REQUEST, error, message.clone());
        match e.kind() {
            Kind::Credential(Reason::KeysUnavailable | Reason::RevocationsUnavailable) => OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the subject token cannot be judged now",
            ),
            Kind::Credential(reason) => OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                format!("the subject token is refused: {}", reason.code()),
            ),
            Kind::Api(ApiCode::NotExchangeable) => bad("unauthorized_client"),
            Kind::Api(ApiCode::WouldWiden) if e.field() == Some("scope") => bad("invalid_scope"),
            Kind::Api(ApiCode::WouldWiden) => bad("invalid_target"),
            Kind::Api(ApiCode::NotLive) => bad("invalid_grant"),
            Kind::Api(ApiCode::StoreUnavailable | ApiCode::SigningUnavailable) => {
                OAuthError::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", message)
            }
            Kind::Api(ApiCode::Internal) => OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message),
            Kind::Api(ApiCode::PayloadTooLarge | ApiCode::RequestTimeout) => {
                OAuthError::new(e.status(), "invalid_request", message)
            }
            Kind::Api(_) => bad("invalid_request"),
        }
    }
}

/// The form's fields: each at most once (RFC 6749 §3.2), but `resource`
/// and `audience`, which RFC 8693 lets repeat.
struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        for (i, (k, _)) in fields.iter().enumerate() {
            let repeatable = k == "resource" || k == "audience";
            if !repeatable && fields[..i].iter().any(|(seen, _)| seen == k) {
                return Err(OAuthError::request(format!("{k}: given more than once")));
            }
        }
        Ok(Form { fields })
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.fields.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Exchange a token for a narrowgate token that allows at most what it
/// does (RFC 8693). The subject token's issuer must let its client's
/// tokens be exchanged (`issuers[].exchange.clients`). Narrow with
/// `scope` (the claim mapping's grants those scopes give), `resource` /
/// `audience` (applications), and `narrowing` (the body of
/// `POST /v1/tokens/narrow`, as JSON).
#[utoipa::path(post, path = "/v1/oauth/token", tag = "tokens",
    request_body(content = ExchangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token it was exchanged for", body = ExchangeResponse),
        (status = 400, description = "RFC 6749 §5.2: invalid_request, invalid_grant (the subject token is refused), unauthorized_client (its issuer does not let it be exchanged), unsupported_grant_type, invalid_scope, invalid_target (would widen)", body = OAuthError),
        (status = 503, description = "temporarily_unavailable: the keys, the store or signing", body = OAuthError),
    ))]
pub(crate) async fn exchange(State(s): State<ApiState>, req: Request) -> Response {
    match exchanged(&s, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn exchanged(s: &ApiState, req: Request) -> Result<Response, OAuthError> {
    let form_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form_type {
        return Err(OAuthError::request("the body must be application/x-www-form-urlencoded"));
    }
    let presented = super::presented_certificate(req.extensions());
    let body = body_bytes(req.into_body()).await.map_err(OAuthError::from)?;
    let form = Form::parse(&body)?;
    match form.one("grant_type") {
        Some(GRANT_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only token exchange (urn:ietf:params:oauth:grant-type:token-exchange) is served here",
            ));
        }
        None => return Err(OAuthError::request("grant_type: missing")),
    }
    let subject =
        form.one("subject_token").filter(|t| !t.is_empty()).ok_or(OAuthError::request("subject_token: missing"))?;
    match form.one("subject_token_type") {
        Some(JWT | ACCESS_TOKEN) => {}
        Some(_) => return Err(OAuthError::request("subject_token_type: not a JWT or an access token type")),
        None => return Err(OAuthError::request("subject_token_type: missing")),
    }
    if form.one("requested_token_type").is_some_and(|t| t != JWT && t != ACCESS_TOKEN) {
        return Err(OAuthError::request("requested_token_type: only a JWT access token is issued"));
    }
    if form.one("actor_token").is_some() || form.one("actor_token_type").is_some() {
        return Err(OAuthError::request("actor_token: delegation is not supported"));
    }

    // The subject token, judged as the proxy judges a credential.
    let snap = s.snapshot();
    let grant = snap
        .auth
        .authenticate_token_fetching(subject, presented.as_ref())
        .await
        .map_err(|r| OAuthError::from(ApiError::credential(r)))?;
    let keys = snap.auth.keys().current();
    let policy = keys.issuers.iter().find(|p| *p.issuer == *grant.issuer);
    let claims = payload_of(subject);
    let client = claims.as_ref().and_then(|c| match policy.and_then(|p| p.mapping.as_deref()) {
        Some(m) => client_of(c, &m.client.iter().map(String::as_str).collect::<Vec<_>>()),
        None => client_of(c, &DEFAULT_CLIENT),
    });

    // What it is narrowed to.
    let keep = match form.one("scope") {
        None => None,
        Some(scope) => {
            let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
            let mapping = policy.and_then(|p| p.mapping.as_deref()).ok_or_else(|| {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", "this token's issuer maps no scopes")
            })?;
            Some(mapping.rules_for_scopes(&scopes))
        }
    };
    let narrowing = form.one("narrowing").unwrap_or("");
    let mut req = super::narrow::request(None, None, narrowing.as_bytes(), presented)
        .map_err(|e| OAuthError::request(format!("narrowing: {}", e.message())))?;
    let targets: Vec<String> = form.all("resource").chain(form.all("audience")).map(str::to_string).collect();
    if !targets.is_empty() {
        match &mut req.narrowing {
            Narrowing::Simplified(s) if s.applications.is_none() => s.applications = Some(targets),
            _ => {
                return Err(OAuthError::request(
                    "resource, audience: give the applications there or in narrowing, not both",
                ));
            }
        }
    }
    let exchange = Exchange { clients: policy.and_then(|p| p.exchange.as_deref()), client, keep: keep.as_deref() };
    let minted = s
        .service
        .exchange(&snap.service, grant, exchange, req)
        .await
        .map_err(|e| OAuthError::from(ApiError::from(e)))?;
    let now = s.service.now().secs();
    let expires_in = minted.record.expires_at.map_or(0, |t| t.secs().saturating_sub(now));
    Ok(no_store(
        StatusCode::OK,
        &ExchangeResponse { access_token: minted.secret, issued_token_type: JWT, token_type: "Bearer", expires_in },
    ))
}
