//! The token service on the `api` listener (axum): the native JSON API
//! under `/v1` and the compatibility facades. Every write goes through one
//! [`TokenService`] (`crate::service`); every error is one [`ApiError`]
//! (`error.rs`). Authentication is the proxy's own ([`Authenticator`]): the
//! same credential sources, verification, cache and revocation mirror, so
//! a token is judged identically on both listeners.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::config::Facades;
use crate::runtime::{Runtime, Snapshot};
use crate::service::TokenService;
use crate::token::Grant;
use error::json;
pub(crate) use error::ok_json;
pub use error::{ApiCode, ApiError, Kind};
pub(crate) use published::RuleView;
use published::{jwks, manifest, whoami};

mod crafter;
pub mod error;
mod exchange;
mod metaapi;
mod narrow;
pub mod openapi;
mod prodmanager;
mod published;
mod registration;
mod revocations;
mod tokens;

/// What the token service's handlers share. The policy — authentication,
/// manifest, keys, facades, feed readers — is the snapshot's in force
/// ([`Runtime`]), read once per request.
#[derive(Clone)]
pub struct ApiState {
    runtime: Arc<Runtime>,
    service: Arc<TokenService>,
    openapi_json: Bytes,
    /// This replica's name in feed cursors: random per process.
    instance: Arc<str>,
    /// Becomes true when the process stops: long-lived responses (the
    /// revocation feed) end then, so the drain is not held open.
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

impl ApiState {
    pub fn new(runtime: Arc<Runtime>, service: Arc<TokenService>) -> Self {
        ApiState {
            openapi_json: Bytes::from(openapi::document()),
            instance: crate::token::keys::random_id(8).unwrap_or_else(|_| "replica".into()).into(),
            stopping: None,
            runtime,
            service,
        }
    }

    /// End long-lived responses when `stopping` turns true.
    pub fn stopping_on(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// The policy in force, for this request.
    fn snapshot(&self) -> Arc<Snapshot> {
        self.runtime.snapshot()
    }

    /// The caller's grant, from a request's credential (its headers and
    /// query: a borrowed request body would not be `Send`).
    async fn caller(
        &self,
        headers: &axum::http::HeaderMap,
        query: Option<&str>,
        extensions: &http::Extensions,
    ) -> Result<Arc<Grant>, ApiError> {
        Ok(self.authorized(headers, query, extensions).await?.1)
    }

    /// The policy in force and the caller's grant under it: what a call
    /// that acts passes on to the token service, so one policy decides it.
    /// A token bound to a client certificate only from a connection that
    /// presented it.
    /// (The connection's client certificate is in the request's
    /// `extensions`.)
    async fn authorized(
        &self,
        headers: &axum::http::HeaderMap,
        query: Option<&str>,
        extensions: &http::Extensions,
    ) -> Result<(Arc<Snapshot>, Arc<Grant>), ApiError> {
        let snap = self.snapshot();
        let presented = presented_certificate(extensions);
        match snap.auth.authenticate_fetching(headers, query, presented.as_ref()).await {
            Ok(grant) => Ok((snap, grant)),
            Err(reason) => {
                // A call that acts, refused for its credential: audited.
                self.runtime.shared().action(crate::audit::ActionEvent {
                    action: crate::audit::Action::Authenticate,
                    kind: None,
                    result: reason.code(),
                    by: None,
                    by_subject: None,
                    target: None,
                    config_hash: None,
                });
                Err(ApiError::credential(reason))
            }
        }
    }

    /// A request's body (at most [`error::MAX_BODY`]), read once its caller
    /// is authenticated, and the caller authenticated again when it is in,
    /// under the policy in force then: a token revoked or a key withdrawn
    /// while a body trickled in mints nothing.
    async fn authorized_body(&self, req: Request) -> Result<(Arc<Snapshot>, Arc<Grant>, Bytes), ApiError> {
        let (parts, body) = req.into_parts();
        let (headers, query, extensions) = (&parts.headers, parts.uri.query(), &parts.extensions);
        self.authorized(headers, query, extensions).await?;
        let body = error::body_bytes(body).await?;
        let (snap, grant) = self.authorized(headers, query, extensions).await?;
        Ok((snap, grant, body))
    }
}

/// The thumbprint of the client certificate the request's connection
/// presented and the handshake verified (what a bound token is bound to).
pub(crate) fn presented_certificate(extensions: &http::Extensions) -> Option<[u8; 32]> {
    extensions.get::<Arc<crate::tls::PeerIdentity>>().map(|p| p.thumbprint)
}

/// The token service's router; testable without sockets. The facades'
/// routes are always there and answer only while the policy in force
/// enables them, so a reload turns them on and off. `beside`: another
/// front end's routes served on the same listener (the console), under
/// the same request bound and fallback.
pub fn app(state: ApiState, beside: Router) -> Router {
    let router = Router::new()
        .route("/v1/manifest", get(manifest))
        .route("/v1/whoami", get(whoami))
        .route("/v1/tokens/narrow", axum::routing::post(narrow::narrow))
        .route("/v1/oauth/token", axum::routing::post(exchange::exchange))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/openapi.json", get(|State(s): State<ApiState>| async move { json(StatusCode::OK, s.openapi_json) }))
        .route("/v1/tokens", get(tokens::list).post(tokens::create).delete(tokens::revoke_by_name))
        .route("/v1/tokens/{id}", get(tokens::show).delete(tokens::revoke))
        .route("/v1/tokens/{id}/narrow", axum::routing::post(narrow::narrow_token))
        .route("/v1/registration-tokens", axum::routing::post(registration::create))
        .route("/v1/registration-tokens/{id}", axum::routing::delete(registration::revoke))
        .route("/v1/registration-tokens/redeem", axum::routing::post(registration::redeem))
        .route("/v1/revocations", get(revocations::feed).post(revocations::revoke_jti))
        .merge(gated(metaapi::routes(Router::new()), &state, |f| f.metaapi))
        .merge(gated(crafter::routes(Router::new()), &state, |f| f.crafter))
        .merge(gated(prodmanager::routes(Router::new()), &state, |f| f.prodmanager.is_some()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), traced));
    router
        .with_state(state)
        .merge(beside)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn(bounded))
}

/// How long a request may take to arrive and be answered (its body read,
/// the token minted and stored): a client that trickles its body holds
/// nothing for longer. A streamed response (the revocation feed) is bounded
/// only until its head.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn bounded(req: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::request_timeout().into_response(),
    }
}

/// A call's span, when tracing is on and its trace is sampled: its
/// route's template, its method and its status, with the token
/// service's spans below it (`trace::child`).
async fn traced(State(s): State<ApiState>, req: Request, next: axum::middleware::Next) -> Response {
    let Some(tracing) = s.runtime.shared().tracing.clone() else { return next.run(req).await };
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::IpAddr>>().map(|c| c.0);
    let trusted = peer.is_some_and(|p| s.snapshot().is_trusted(p));
    let trace = tracing.begin(req.headers(), trusted);
    let Some(started) = trace.started else { return next.run(req).await };
    let began = std::time::Instant::now();
    let method = crate::trace::method_name(req.method());
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let active =
        crate::trace::Active { tracing: tracing.clone(), trace_id: trace.trace_id, span_id: trace.span_id, started };
    let resp = active.scope(next.run(req)).await;
    let status = resp.status();
    let mut attributes = vec![
        opentelemetry::KeyValue::new("http.request.method", method),
        opentelemetry::KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    ];
    if let Some(route) = route {
        attributes.push(opentelemetry::KeyValue::new("http.route", route));
    }
    let failed = status.is_server_error().then_some("server_error");
    if let Some(span) = trace.request_span(began, attributes, failed) {
        tracing.export(span);
    }
    resp
}

/// `router`'s routes, answering only while `enabled` holds for the
/// facades in force; otherwise as if they were not there.
fn gated(router: Router<ApiState>, state: &ApiState, enabled: fn(&Facades) -> bool) -> Router<ApiState> {
    router.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        move |State(s): State<ApiState>, req: Request, next: axum::middleware::Next| async move {
            if enabled(&s.snapshot().facades) {
                next.run(req).await
            } else {
                ApiError::not_found("no such endpoint").into_response()
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    //! The token service's router as a service, without sockets.
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::runtime::Shared;
    use crate::store::Mirror;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn call(app: &Router, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let req = axum::http::Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// The demo config in a file (so it can be reloaded), its runtime, and
    /// the api router on it.
    fn router(dir: &std::path::Path, yaml: &str) -> (Arc<Runtime>, Router) {
        let key = crate::token::testkit::TestKey::es256("demo");
        std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
        std::fs::write(dir.join("keys/demo.pub.pem"), &key.public).expect("write");
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).expect("write");
        let config = Config::load(&path).expect("demo config");
        let metrics = Arc::new(Metrics::register(&prometheus::Registry::new()).expect("metrics"));
        let mirror = Arc::new(Mirror::of(&config, Arc::default()));
        let shared = Shared::new(metrics, mirror.revocations.clone(), mirror.references.clone());
        let runtime = Runtime::new(&config, Some(path), shared);
        let service = Arc::new(TokenService::new(runtime.clone(), None, mirror));
        (runtime.clone(), app(ApiState::new(runtime, service), Router::new()))
    }

    const DEMO: &str = include_str!("../../config/demo.yaml");

    #[tokio::test]
    async fn public_documents_and_closed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_rt, app) = router(dir.path(), DEMO);
        let (status, manifest) = call(&app, "GET", "/v1/manifest").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(manifest.as_array().map(Vec::len), Some(4));
        let (status, jwks) = call(&app, "GET", "/.well-known/jwks.json").await;
        assert_eq!((status, jwks["keys"].clone()), (StatusCode::OK, serde_json::json!([])), "no signing keys");
        let (status, body) = call(&app, "GET", "/v1/whoami").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_token")));
        let (status, body) = call(&app, "GET", "/v2/anything").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, body) = call(&app, "POST", "/v1/tokens").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_token")));
    }

    #[tokio::test]
    async fn facades_follow_the_policy_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (runtime, app) = router(dir.path(), DEMO);
        let (status, manifest) = call(&app, "GET", "/access-rule-manifest").await;
        assert_eq!((status, manifest.as_array().map(Vec::len)), (StatusCode::OK, Some(4)));

        // MetaApi's facade off, one application fewer: after the reload the
        // facade is gone and the manifest is the new one.
        let mut doc: serde_json::Value = serde_saphyr::from_str(DEMO).expect("yaml");
        doc["facades"]["metaapi"] = false.into();
        doc["applications"].as_array_mut().expect("list").pop();
        std::fs::write(dir.path().join("config.yaml"), doc.to_string()).expect("write");
        let reloaded = runtime.reload().await.expect("reloads");
        assert!(matches!(reloaded, crate::runtime::Reloaded::Applied { .. }), "{reloaded:?}");
        let (status, body) = call(&app, "GET", "/access-rule-manifest").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, body) = call(&app, "POST", "/users/current/narrow-down-auth-token").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (_, manifest) = call(&app, "GET", "/v1/manifest").await;
        assert_eq!(manifest.as_array().map(Vec::len), Some(3));
        // The other facades stay.
        let (status, _) = call(&app, "GET", "/api/token/whoami").await;
        assert_ne!(status, StatusCode::NOT_FOUND);
    }
}
