//! The mutating admission webhook: `POST /inject` takes an
//! `AdmissionReview` (admission.k8s.io/v1) and answers with the same
//! review carrying a base64 JSON Patch from [`super::inject::pod`] — the
//! very function `narrowgate inject` runs.
//!
//! Served over TLS (rustls) only: the API server calls webhooks over
//! HTTPS. The certificate and key files are read again when they change
//! (cert-manager renews them in place), without a restart and without
//! dropping a connection; a broken pair on disk keeps the last good one in
//! use.
//!
//! What is answered:
//! - a Pod CREATE: the patch (none when the pod already carries the
//!   injector's own sidecar, as it does when the webhook is called again
//!   after another webhook's patch), or, for a pod that asks for
//!   something impossible (a port clash, a bad annotation) or only looks
//!   injected, `allowed: false` with the reason: a pod meant to be
//!   protected must not start unprotected;
//! - anything else (another kind, another operation, a subresource):
//!   allowed, unchanged;
//! - `dryRun` requests get the same answer (injection has no side
//!   effects; the log says it was a dry run);
//! - a body that is not JSON or not a review: 400; another content type:
//!   415. Nothing of the request is echoed in an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::inject::{self, Options, Outcome};
use crate::server::{self, Drain, Limits};

/// The largest review accepted (the API server's own request limit is
/// 3 MiB; a review carries the object once or twice).
const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// What the webhook is configured with.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for a change.
    pub reload_interval: Duration,
    pub options: Options,
}

#[derive(Deserialize)]
struct Review {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: Option<ReviewRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: String,
    #[serde(default)]
    object: Value,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    kind: String,
}

/// Answer one review (the whole HTTP exchange, so tests can call it).
pub fn review(headers: &HeaderMap, body: &[u8], options: &Options) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "an AdmissionReview is sent as application/json");
    }
    let review: Review = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return problem(StatusCode::BAD_REQUEST, "the body is not an AdmissionReview"),
    };
    let Some(request) = review.request else {
        return problem(StatusCode::BAD_REQUEST, "the AdmissionReview has no request");
    };
    if review.kind != "AdmissionReview" || review.api_version != "admission.k8s.io/v1" {
        return problem(StatusCode::BAD_REQUEST, "only admission.k8s.io/v1 AdmissionReview is understood");
    }
    let response = respond(&request, options);
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    json_response(StatusCode::OK, &body)
}

/// The review's `response`.
fn respond(request: &ReviewRequest, options: &Options) -> Value {
    let allowed = json!({"uid": request.uid, "allowed": true});
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != "CREATE" || request.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return allowed;
    }
    let pod = &request.object;
    // A pod made by a controller has only `generateName`; its namespace
    // is the request's when the object has none.
    let name = request
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| pod["metadata"]["name"].as_str())
        .map(str::to_string)
        .or_else(|| pod["metadata"]["generateName"].as_str().map(|g| format!("{g}…")))
        .unwrap_or_else(|| "(unnamed)".into());
    let namespace = request
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| pod["metadata"]["namespace"].as_str())
        .unwrap_or("default");
    let dry_run = request.dry_run.unwrap_or(false);
    match inject::pod(pod, "", options) {
        Ok(outcome) => {
            let what = match &outcome {
                Outcome::Injected(_) => "injected",
                Outcome::AlreadyInjected => "already injected",
                Outcome::Skipped { reason, .. } => reason,
            };
            tracing::info!(pod = %name, namespace, dry_run, outcome = what, "admission review");
            let ops = outcome.ops();
            if ops.is_empty() {
                return allowed;
            }
            match serde_json::to_vec(&ops) {
                Ok(patch) => json!({
                    "uid": request.uid,
                    "allowed": true,
                    "patchType": "JSONPatch",
                    "patch": base64::engine::general_purpose::STANDARD.encode(patch),
                }),
                Err(_) => refuse(&request.uid, "the patch could not be encoded"),
            }
        }
        Err(e) => {
            tracing::warn!(pod = %name, namespace, dry_run, error = %e, "admission review: refused");
            refuse(&request.uid, &format!("narrowgate: {e}"))
        }
    }
}

fn refuse(uid: &str, message: &str) -> Value {
    json!({
        "uid": uid,
        "allowed": false,
        "status": {"code": 403, "reason": "Forbidden", "message": message},
    })
}

fn problem(status: StatusCode, message: &'static str) -> Response {
    json_response(status, &json!({"error": message}))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The webhook's routes: `POST /inject`, and `GET /healthz` for probes.
pub fn router(options: Options) -> Router {
    async fn inject(State(options): State<Arc<Options>>, headers: HeaderMap, body: Bytes) -> Response {
        review(&headers, &body, &options)
    }
    Router::new()
        .route("/inject", post(inject))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(Arc::new(options))
}

/// The serving certificate, swapped when its files change.
#[derive(Debug)]
pub struct Certificate {
    current: ArcSwap<CertifiedKey>,
    /// The files' contents when last loaded (to see a change).
    loaded: std::sync::Mutex<Vec<u8>>,
    cert: PathBuf,
    key: PathBuf,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Why the certificate files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("{0}: cannot read: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    #[error("{0}: no usable PEM private key in it")]
    Key(PathBuf),
    #[error("the key does not belong to the certificate, or is of an unsupported type: {0}")]
    Mismatch(rustls::Error),
}

impl Certificate {
    /// Load the pair.
    pub fn load(cert: &Path, key: &Path) -> Result<Certificate, CertificateError> {
        let (cert_pem, key_pem) = read_files(cert, key)?;
        let certified = parse_pair(cert, key, &cert_pem, &key_pem)?;
        let seen = [cert_pem, key_pem].concat();
        Ok(Certificate {
            current: ArcSwap::from_pointee(certified),
            loaded: std::sync::Mutex::new(seen),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Load the files again if they changed; whether the certificate in
    /// use changed. A pair that does not load keeps the last good one.
    pub fn reload(&self) -> bool {
        let Ok((cert_pem, key_pem)) = read_files(&self.cert, &self.key) else {
            return false;
        };
        let parsed = parse_pair(&self.cert, &self.key, &cert_pem, &key_pem);
        let seen = [cert_pem, key_pem].concat();
        let Ok(mut loaded) = self.loaded.lock() else { return false };
        if *loaded == seen {
            return false;
        }
        match parsed {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                *loaded = seen;
                tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the new certificate files do not load; the last good pair stays");
                *loaded = seen;
                false
            }
        }
    }
}

/// The certificate and key files' contents, each read once.
fn read_files(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), CertificateError> {
    let cert_pem = std::fs::read(cert).map_err(|e| CertificateError::Read(cert.to_path_buf(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| CertificateError::Read(key.to_path_buf(), e))?;
    Ok((cert_pem, key_pem))
}

/// The serving pair from the files' contents (their paths name them in
/// errors).
fn parse_pair(cert: &Path, key: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertificateError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate(cert.to_path_buf()));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| CertificateError::Key(key.to_path_buf()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, private, &provider).map_err(CertificateError::Mismatch)
}

/// Serve the webhook until `stop` resolves, then stop accepting and give
/// the requests in flight a moment to finish.
pub async fn serve(
    config: WebhookConfig,
    stop: impl std::future::Future<Output = ()>,
    bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    use anyhow::Context;
    let certificate = Arc::new(Certificate::load(&config.tls_cert, &config.tls_key)?);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS settings")?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(tls);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the webhook listener {}", config.listen))?;
    bound(listener.local_addr()?);
    tracing::info!(listen = %listener.local_addr()?, "admission webhook listening");

    let watcher = tokio::spawn({
        let certificate = certificate.clone();
        let every = config.reload_interval;
        async move {
            loop {
                tokio::time::sleep(every).await;
                let c = certificate.clone();
                let _ = tokio::task::spawn_blocking(move || c.reload()).await;
            }
        }
    });
    let limits = || Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(90),
        max_header_bytes: 64 * 1024,
        max_headers: 100,
        shutdown_grace: Duration::from_secs(10),
        // Its TLS offers HTTP/1.1 alone (the API server speaks it).
        http2: crate::config::Http2 {
            enabled: false,
            cleartext: false,
            max_concurrent_streams: 100,
            max_cancelled_streams: 100,
        },
    };
    let app = router(config.options);
    server::serve_router(listener, move || Some(tls.clone()), limits, app, Drain::default(), stop).await;
    watcher.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &Value) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().expect("header"));
        let resp = review(&headers, &serde_json::to_vec(body).expect("json"), &Options::default());
        let status = resp.status();
        let bytes = futures_util::FutureExt::now_or_never(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .expect("ready")
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn pod_review(object: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0b3c2f5e-1111-4c6b-9a8e-0b7c2e1f4d11",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": object,
                "oldObject": null,
                "dryRun": false,
            }
        })
    }

    #[test]
    fn a_pod_gets_a_patch_and_the_uid_is_echoed() {
        let (status, body) = pod_review_answer();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], "0b3c2f5e-1111-4c6b-9a8e-0b7c2e1f4d11");
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
    }

    fn pod_review_answer() -> (StatusCode, Value) {
        post(&pod_review(json!({
            "metadata": {"generateName": "web-7d4b9c8f6d-"},
            "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}]}]},
        })))
    }

    #[test]
    fn other_kinds_and_operations_pass_unchanged() {
        let mut r = pod_review(json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a"}]}}));
        r["request"]["operation"] = "UPDATE".into();
        let (_, body) = post(&r);
        assert_eq!(body["response"], json!({"uid": "0b3c2f5e-1111-4c6b-9a8e-0b7c2e1f4d11", "allowed": true}));
        let mut r = pod_review(json!({"metadata": {"name": "x"}, "data": {}}));
        r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
        let (_, body) = post(&r);
        assert_eq!(body["response"]["allowed"], true);
        assert!(body["response"].get("patch").is_none());
    }

    #[test]
    fn malformed_reviews_are_refused_without_echoing_them() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().expect("header"));
        for body in [&b"<not json secret-ish>"[..], b"{}", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE"}}"#] {
            let resp = review(&headers, body, &Options::default());
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        }
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert_eq!(review(&text, b"{}", &Options::default()).status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(review(&HeaderMap::new(), b"{}", &Options::default()).status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
