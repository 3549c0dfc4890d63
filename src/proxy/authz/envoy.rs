//! Envoy's (and Istio's) external authorization over gRPC:
//! `envoy.service.auth.v3.Authorization/Check`, with the protos of the
//! `envoy-types` crate served by tonic.
//!
//! The request comes from `CheckRequest.attributes`: `request.http`'s
//! method, path (with its query), host and headers (`headers`, or the raw
//! `header_map` when Envoy sends `encode_raw_headers`; pseudo-headers are
//! not headers here), and `source.address` as the client. An allow is
//! `OK` with the headers to set upstream (replacing the client's), the
//! ones to remove and the credential query parameters to drop; a denial
//! is `UNAUTHENTICATED` (a 401) or `PERMISSION_DENIED` (anything else)
//! with the status, headers and JSON body the proxy would have sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue as EnvoyHeader, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::{Caller, Checked, ConnInfo, Described, Gateway, Undescribed};
use crate::runtime::Snapshot;

/// Envoy drops the query parameters an allow names, removes the headers it
/// names, and sets the request id it describes.
const ENVOY: Caller = Caller { strips_query: true, removes_headers: true, sets_request_id: true };

/// The method's path: what Envoy's gRPC client asks for.
const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The largest `CheckRequest` read (headers, and a body if Envoy is told
/// to send one): more is refused by tonic before it is decoded.
const MAX_CHECK_BYTES: usize = 1024 * 1024;

/// Whether `req` calls `Check`.
pub(super) fn is_check<B>(req: &Request<B>) -> bool {
    req.uri().path() == CHECK
}

/// The gRPC service, made once per listener.
pub(super) fn service(gateway: Arc<Gateway>) -> AuthorizationServer<Checker> {
    AuthorizationServer::new(Checker(gateway)).max_decoding_message_size(MAX_CHECK_BYTES)
}

/// Call `Check` with `req`, whose connection is `info`. A caller that is
/// not one of `decision.peers` is refused before its message is read:
/// recorded as `untrusted_peer`, and answered `PERMISSION_DENIED` (Envoy
/// denies a request whose check fails).
pub(super) async fn call(
    gateway: &Gateway,
    mut service: AuthorizationServer<Checker>,
    mut req: Request<Incoming>,
    info: Arc<ConnInfo>,
) -> Response<Either<tonic::body::Body, Full<Bytes>>> {
    use tonic::codegen::Service;
    if !gateway.runtime.snapshot().is_decision_peer(info.peer) {
        let checked = gateway.check(&info, ENVOY, |_| Err(Undescribed::bad(None))).await;
        return crate::respond::grpc_error_response(checked.reason, None, None).map(Either::Right);
    }
    req.extensions_mut().insert(info);
    match service.call(req).await {
        Ok(resp) => resp.map(Either::Left),
        Err(never) => match never {},
    }
}

/// The `Authorization` service over the gateway.
#[derive(Debug)]
pub(super) struct Checker(Arc<Gateway>);

#[tonic::async_trait]
impl Authorization for Checker {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let Some(peer) = request.extensions().get::<Arc<ConnInfo>>().cloned() else {
            return Err(tonic::Status::internal("no connection"));
        };
        let limits = |snap: &Snapshot| (snap.server.max_headers, snap.server.max_header_bytes);
        let checked = self.0.check(&peer, ENVOY, |snap| describe(request.get_ref(), &peer, limits(snap))).await;
        Ok(tonic::Response::new(answer(checked)))
    }
}

/// The request `check` describes, within the server's header limits
/// (`max_headers`, `max_header_bytes`).
fn describe(
    check: &CheckRequest,
    peer: &ConnInfo,
    (max_headers, max_bytes): (usize, usize),
) -> Result<Described, Undescribed> {
    let attributes = check.attributes.as_ref();
    let http = attributes.and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref());
    let Some(http) = http else { return Err(Undescribed::bad(None)) };
    let method = Method::from_bytes(http.method.as_bytes()).ok();
    let Some(method) = method.filter(|_| !http.method.is_empty()) else { return Err(Undescribed::bad(None)) };
    let bad = || Undescribed::bad(Some(method.clone()));
    // Origin-form only: what a client sends an origin server.
    let uri: Uri = http.path.parse().map_err(|_| bad())?;
    if uri.scheme().is_some() || !http.path.starts_with('/') {
        return Err(bad());
    }
    // The header section as the proxy would have read it: no more
    // headers, nor bytes, than its limits allow.
    let mut headers = HeaderMap::new();
    let mut bytes = 0usize;
    let mut add = |name: &str, value: &[u8]| -> Result<(), Undescribed> {
        if name.starts_with(':') {
            return Ok(());
        }
        bytes = bytes.saturating_add(name.len() + value.len() + 4);
        if headers.len() >= max_headers || bytes > max_bytes {
            return Err(bad());
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(value).map_err(|_| bad())?;
        headers.try_append(name, value).map_err(|_| bad())?;
        Ok(())
    };
    match http.header_map.as_ref().filter(|m| !m.headers.is_empty()) {
        Some(raw) => {
            for h in &raw.headers {
                add(&h.key, if h.raw_value.is_empty() { h.value.as_bytes() } else { &h.raw_value })?;
            }
        }
        None => {
            for (k, v) in &http.headers {
                add(k, v.as_bytes())?;
            }
        }
    }
    // The host Envoy routed by, whatever a header says.
    if !http.host.is_empty() {
        headers.insert(HOST, HeaderValue::from_str(&http.host).map_err(|_| bad())?);
    }
    let mut request = Request::builder().method(method.clone()).uri(uri).body(()).map_err(|_| bad())?;
    *request.headers_mut() = headers;
    let client = attributes.and_then(|a| a.source.as_ref()).and_then(|s| s.address.as_ref()).and_then(|a| {
        let Some(Address::SocketAddress(s)) = &a.address else { return None };
        let ip: IpAddr = s.address.parse().ok()?;
        let port = match s.port_specifier {
            Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
            _ => 0,
        };
        Some(SocketAddr::new(ip, u16::try_from(port).unwrap_or(0)))
    });
    // Without the client's address, the front proxy is the client.
    let client = client.map_or_else(|| ConnInfo::clone(peer), ConnInfo::new);
    Ok(Described { request, client })
}

/// `checked` in Envoy's terms.
fn answer(checked: Checked) -> CheckResponse {
    let header = |name: &HeaderName, value: &HeaderValue, action: HeaderAppendAction| {
        #[allow(deprecated)]
        HeaderValueOption {
            // Envoy takes `value` where it can (text), else `raw_value`.
            header: Some(match value.to_str() {
                Ok(text) => {
                    EnvoyHeader { key: name.as_str().to_string(), value: text.to_string(), raw_value: Vec::new() }
                }
                Err(_) => EnvoyHeader {
                    key: name.as_str().to_string(),
                    value: String::new(),
                    raw_value: value.as_bytes().to_vec(),
                },
            }),
            append: None,
            append_action: action.into(),
            keep_empty_value: false,
        }
    };
    if checked.allowed() {
        // A name's first value replaces the client's, any further ones
        // are added to it; an identity header without a value here goes.
        let given = checked.identity.iter().filter_map(|(n, v)| Some((n, v.as_ref()?)));
        let mut headers = Vec::with_capacity(checked.set.len() + checked.identity.len());
        let mut previous: Option<&HeaderName> = None;
        for (name, value) in checked.set.iter().map(|(n, v)| (n, v)).chain(given) {
            let action = if previous == Some(name) {
                HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            };
            headers.push(header(name, value, action));
            previous = Some(name);
        }
        let gone = checked.identity.iter().filter(|(_, v)| v.is_none()).map(|(n, _)| n);
        let ok = OkHttpResponse {
            headers,
            headers_to_remove: checked.remove.iter().chain(gone).map(|n| n.as_str().to_string()).collect(),
            query_parameters_to_remove: checked.remove_query,
            ..OkHttpResponse::default()
        };
        return CheckResponse {
            status: Some(rpc::Status { code: tonic::Code::Ok as i32, message: String::new(), details: Vec::new() }),
            http_response: Some(HttpResponse::OkResponse(ok)),
            ..CheckResponse::default()
        };
    }
    let (parts, body) = checked.response.into_parts();
    let body = body_text(body);
    let code = if parts.status == http::StatusCode::UNAUTHORIZED {
        tonic::Code::Unauthenticated
    } else {
        tonic::Code::PermissionDenied
    };
    let headers = parts.headers.iter().map(|(n, v)| header(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd)).collect();
    let denied =
        DeniedHttpResponse { status: Some(HttpStatus { code: i32::from(parts.status.as_u16()) }), headers, body };
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message: checked.reason.code().to_string(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..CheckResponse::default()
    }
}

/// A denial's body (our own JSON, always whole and UTF-8).
fn body_text(body: http_body_util::Full<bytes::Bytes>) -> String {
    use hyper::body::Body;
    // A `Full` body is ready at once: its one frame, without waiting.
    let mut body = std::pin::pin!(body);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut text = String::new();
    while let std::task::Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use envoy_types::pb::envoy::config::core::v3::{SocketAddress, socket_address::PortSpecifier};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

    /// A `Check` for `method path` at `host` with `headers`, from `client`.
    fn check(method: &str, path: &str, headers: &[(&str, &str)], client: Option<&str>) -> CheckRequest {
        let http = attribute_context::HttpRequest {
            method: method.into(),
            path: path.into(),
            host: "api.test".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        let source = client.map(|a| attribute_context::Peer {
            address: Some(envoy_types::pb::envoy::config::core::v3::Address {
                address: Some(Address::SocketAddress(SocketAddress {
                    address: a.into(),
                    port_specifier: Some(PortSpecifier::PortValue(4711)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        });
        let request = attribute_context::Request { http: Some(http), ..Default::default() };
        CheckRequest { attributes: Some(AttributeContext { source, request: Some(request), ..Default::default() }) }
    }

    fn peer() -> ConnInfo {
        ConnInfo::new(([10, 0, 0, 1], 1).into())
    }

    #[test]
    fn a_check_describes_its_request_within_the_header_limits() {
        let c = check("DELETE", "/a/b?c=d", &[(":authority", "x"), ("x-a", "1"), ("host", "forged")], Some("1.2.3.4"));
        let d = describe(&c, &peer(), (64, 16 * 1024)).expect("described");
        assert_eq!((d.request.method().as_str(), d.request.uri().to_string()), ("DELETE", "/a/b?c=d".to_string()));
        assert_eq!(d.request.headers().get(HOST).and_then(|h| h.to_str().ok()), Some("api.test"), "Envoy's host");
        assert!(!d.request.headers().keys().any(|k| k.as_str().starts_with(':')), "no pseudo-header is a header");
        assert_eq!(d.client.peer.to_string(), "1.2.3.4");
        assert_eq!(describe(&check("GET", "/", &[], None), &peer(), (64, 1024)).expect("ok").client.peer, peer().peer);

        let bad = |c: &CheckRequest, limits| describe(c, &peer(), limits).err().map(|u| u.reason);
        // Past the limits, a bad request, never a panic: 30,000 names are
        // more than a header map holds.
        let many: Vec<(String, String)> = (0..30_000).map(|i| (format!("x-{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(bad(&check("GET", "/", &many, None), (usize::MAX, usize::MAX)), Some(Reason::BadRequest));
        assert_eq!(bad(&check("GET", "/", &many[..65], None), (64, usize::MAX)), Some(Reason::BadRequest));
        assert_eq!(
            bad(&check("GET", "/", &[("x-big", &"v".repeat(2000))], None), (64, 1024)),
            Some(Reason::BadRequest)
        );
        for (method, path) in [("", "/"), ("G ET", "/"), ("GET", "http://h/a"), ("GET", "*"), ("GET", "a")] {
            assert_eq!(bad(&check(method, path, &[], None), (64, 1024)), Some(Reason::BadRequest), "{method} {path}");
        }
    }
}
