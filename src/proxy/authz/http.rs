//! The decision listener's HTTP endpoints, one per kind of front proxy:
//!
//! - `/envoy/…` (`decision.envoy_path_prefix`): Envoy's `ext_authz` HTTP
//!   service with that `path_prefix`. The method, the path after the
//!   prefix with its query, the `Host` and the headers Envoy lets through
//!   are the request's; the client is the last `X-Forwarded-For` entry
//!   (Envoy's own with `use_remote_address`).
//! - `/nginx`: nginx's `auth_request` (and ingress-nginx's `auth-url`).
//!   `X-Original-Method`, and `X-Original-URI` with the `Host`, or
//!   `X-Original-URL` (absolute, as ingress-nginx sends it), never both:
//!   nginx passes the client's headers into the subrequest, so the one
//!   the front proxy did not set would be the client's word (a host, a
//!   target). The client is `X-Real-IP`, else nginx itself.
//! - `/forward-auth`: Traefik's `forwardAuth` and Caddy's `forward_auth`.
//!   `X-Forwarded-Method`, `X-Forwarded-Uri` and `X-Forwarded-Host`; the
//!   client is the last `X-Forwarded-For` entry.
//!
//! Each endpoint reads its own description headers, each at most once (a
//! second copy — the client's, passed through — refuses the request),
//! and decides the rest as the request's headers: any other endpoint's
//! description headers among them are the client's, and are judged as
//! the proxy judges them (`X-Original-URI` is a target rewrite).
//!
//! An allow is 200 with the headers the upstream request gets (for
//! nginx's `auth_request_set`, Envoy's `allowed_upstream_headers`, the
//! forward-auth `authResponseHeaders` / `copy_headers`): every identity
//! header, its value or, where it has none, removed (Envoy reads
//! `x-envoy-auth-headers-to-remove`) or empty. A denial is the proxy's own
//! answer, with `x-narrowgate-reason`, and never a 2xx.

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{Caller, Checked, ConnInfo, Described, Gateway, Undescribed};
use crate::reason::Reason;
use crate::respond;

/// The headers Envoy's HTTP `ext_authz` removes from the upstream request.
const ENVOY_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// Which front proxy is asking, by the endpoint it calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Envoy,
    Nginx,
    Forward,
}

impl Mode {
    /// The mode of a call to `path`, Envoy's under `envoy_prefix`.
    fn of(path: &str, envoy_prefix: &str) -> Option<Mode> {
        match path {
            "/nginx" => Some(Mode::Nginx),
            "/forward-auth" => Some(Mode::Forward),
            p if p.strip_prefix(envoy_prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) => {
                Some(Mode::Envoy)
            }
            _ => None,
        }
    }

    /// What the front proxy carries out: none drops a query parameter;
    /// Envoy removes headers and sets the request id it describes, the
    /// others only copy what the answer states, and pass the client's id.
    fn caller(self) -> Caller {
        let envoy = self == Mode::Envoy;
        Caller { strips_query: false, removes_headers: envoy, sets_request_id: envoy }
    }

    /// The headers that describe the request: read, then never decided
    /// as the request's own.
    fn description(self) -> &'static [&'static str] {
        match self {
            Mode::Envoy => &[],
            Mode::Nginx => &["x-original-method", "x-original-uri", "x-original-url"],
            Mode::Forward => &["x-forwarded-method", "x-forwarded-uri", "x-forwarded-host", "x-forwarded-proto"],
        }
    }
}

/// Answer one request to the decision listener's HTTP side.
pub(super) async fn answer(gateway: &Gateway, req: Request<Incoming>, peer: &ConnInfo) -> Response<Full<Bytes>> {
    let Some(mode) = Mode::of(req.uri().path(), &gateway.runtime.snapshot().decision.envoy_path_prefix) else {
        return respond::error_response(Reason::NoMatchingRoute, None, Some(http::StatusCode::NOT_FOUND));
    };
    // The body (Envoy may be told to send it) is not looked at.
    let (parts, _) = req.into_parts();
    let read = |snap: &crate::runtime::Snapshot| describe(mode, parts, peer, &snap.decision.envoy_path_prefix);
    render(mode, gateway.check(peer, mode.caller(), read).await)
}

/// The value of `name` if `h` has at most one; `Err` for two or more.
fn one<'h>(h: &'h HeaderMap, name: &str) -> Result<Option<&'h HeaderValue>, ()> {
    let mut all = h.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() { Err(()) } else { Ok(first) }
}

/// The request `parts` describe, in `mode`.
fn describe(mode: Mode, parts: http::request::Parts, peer: &ConnInfo, prefix: &str) -> Result<Described, Undescribed> {
    let mut headers = parts.headers;
    let read = |name: &str| one(&headers, name).map(|v| v.cloned());
    let named = |name: &str| read(name).ok().flatten().and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    let method = match mode {
        Mode::Envoy => Some(parts.method),
        Mode::Nginx => named("x-original-method"),
        Mode::Forward => named("x-forwarded-method"),
    };
    let Some(method) = method else { return Err(Undescribed::bad(None)) };
    let bad = || Undescribed::bad(Some(method.clone()));
    let (target, host) = match mode {
        Mode::Envoy => {
            // The prefix in force now (a reload may have changed it since
            // the call was routed here): another path is no description.
            let rest = parts.uri.path().strip_prefix(prefix).ok_or_else(bad)?;
            let path = if rest.is_empty() { "/" } else { rest };
            let target = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            let host = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            (target, host.or_else(|| headers.get(HOST).cloned()))
        }
        Mode::Nginx => {
            let uri = read("x-original-uri").map_err(|_| bad())?;
            let url = read("x-original-url").map_err(|_| bad())?;
            match (uri, url) {
                // Neither, or both: one of them is not the front proxy's.
                (None, None) | (Some(_), Some(_)) => return Err(bad()),
                (Some(uri), None) => (text(&uri).ok_or_else(bad)?.to_string(), headers.get(HOST).cloned()),
                (None, Some(url)) => {
                    let url: Uri = text(&url).and_then(|u| u.parse().ok()).ok_or_else(bad)?;
                    let (Some(authority), Some(target)) = (url.authority(), url.path_and_query()) else {
                        return Err(bad());
                    };
                    (target.to_string(), HeaderValue::from_str(authority.as_str()).ok())
                }
            }
        }
        Mode::Forward => {
            let uri = read("x-forwarded-uri").map_err(|_| bad())?.ok_or_else(bad)?;
            let host = read("x-forwarded-host").map_err(|_| bad())?;
            read("x-forwarded-proto").map_err(|_| bad())?;
            (text(&uri).ok_or_else(bad)?.to_string(), host.or_else(|| headers.get(HOST).cloned()))
        }
    };
    // Origin-form only: what a client sends an origin server.
    if !target.starts_with('/') {
        return Err(bad());
    }
    let target = PathAndQuery::try_from(target).map_err(|_| bad())?;
    let client = client_address(mode, &headers).map_or_else(|| peer.clone(), |ip| ConnInfo::new((ip, 0).into()));
    for name in mode.description() {
        headers.remove(*name);
    }
    match host {
        Some(h) => {
            headers.insert(HOST, h);
        }
        None => {
            headers.remove(HOST);
        }
    }
    let mut request = Request::builder().method(method.clone()).uri(target).body(()).map_err(|_| bad())?;
    *request.headers_mut() = headers;
    Ok(Described { request, client })
}

/// A header value as text, if it is visible ASCII.
fn text(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok()
}

/// The client's address, as the front proxy tells it: nginx's
/// `X-Real-IP` (its config sets it; `X-Forwarded-For` there is the
/// client's word), the others' last `X-Forwarded-For` entry (the one they
/// add; any before it are the client's). `None`: the front proxy is the
/// client.
fn client_address(mode: Mode, headers: &HeaderMap) -> Option<std::net::IpAddr> {
    if mode == Mode::Nginx {
        return one(headers, "x-real-ip").ok().flatten().and_then(|v| text(v)?.trim().parse().ok());
    }
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    text(last)?.rsplit(',').next()?.trim().parse().ok()
}

/// `checked` as the front proxy in `mode` reads it.
fn render(mode: Mode, checked: Checked) -> Response<Full<Bytes>> {
    if !checked.allowed() {
        let mut resp = checked.response;
        // Every one of these proxies takes a 2xx for an allow.
        if resp.status().is_success() {
            *resp.status_mut() = http::StatusCode::FORBIDDEN;
        }
        return resp;
    }
    let mut resp = Response::new(Full::default());
    let h = resp.headers_mut();
    for (name, value) in checked.set {
        h.append(name, value);
    }
    let mut gone: Vec<&str> = checked.remove.iter().map(HeaderName::as_str).collect();
    for (name, value) in &checked.identity {
        match (value, mode) {
            (Some(v), _) => {
                h.insert(name.clone(), v.clone());
            }
            // Envoy removes what it is told to.
            (None, Mode::Envoy) => gone.push(name.as_str()),
            // nginx sets the header from the answer, and drops an empty
            // one; forward auth copies it: an empty value, never the
            // client's.
            (None, _) => {
                h.insert(name.clone(), HeaderValue::from_static(""));
            }
        }
    }
    if mode == Mode::Envoy
        && !gone.is_empty()
        && let Ok(v) = HeaderValue::from_str(&gone.join(","))
    {
        h.insert(ENVOY_REMOVE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().method("GET").uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn peer() -> ConnInfo {
        ConnInfo::new(([10, 0, 0, 1], 1).into())
    }

    /// The method, target and Host described, or the reason it is not.
    fn seen(mode: Mode, path: &str, headers: &[(&str, &str)]) -> Result<(String, String, String, String), Reason> {
        let d = describe(mode, parts(path, headers), &peer(), "/envoy").map_err(|u| u.reason)?;
        let host = d.request.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("-").to_string();
        Ok((d.request.method().to_string(), d.request.uri().to_string(), host, d.client.peer.to_string()))
    }

    fn ok(m: &str, t: &str, h: &str, c: &str) -> Result<(String, String, String, String), Reason> {
        Ok((m.into(), t.into(), h.into(), c.into()))
    }

    #[test]
    fn each_mode_reads_its_own_description() {
        assert_eq!(Mode::of("/envoy/a", "/envoy"), Some(Mode::Envoy));
        assert_eq!(Mode::of("/envoy", "/envoy"), Some(Mode::Envoy));
        assert_eq!(Mode::of("/envoyx/a", "/envoy"), None);
        assert_eq!(Mode::of("/nginx/x", "/envoy"), None);
        assert_eq!(
            seen(Mode::Envoy, "/envoy/users/1?a=b", &[("host", "api.test"), ("x-forwarded-for", "1.1.1.1, 2.2.2.2")]),
            ok("GET", "/users/1?a=b", "api.test", "2.2.2.2")
        );
        assert_eq!(seen(Mode::Envoy, "/envoy", &[]), ok("GET", "/", "-", "10.0.0.1"));
        let nginx = [("x-original-method", "DELETE"), ("x-original-uri", "/a/b?c"), ("host", "api.test")];
        assert_eq!(seen(Mode::Nginx, "/nginx", &nginx), ok("DELETE", "/a/b?c", "api.test", "10.0.0.1"));
        let ingress = [("x-original-method", "PUT"), ("x-original-url", "https://api.test:8443/a?x"), ("host", "ng")];
        assert_eq!(seen(Mode::Nginx, "/nginx", &ingress), ok("PUT", "/a?x", "api.test:8443", "10.0.0.1"));
        let real = [("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-real-ip", "3.3.3.3")];
        assert_eq!(seen(Mode::Nginx, "/nginx", &real), ok("GET", "/a", "-", "3.3.3.3"));
        let fwd = [
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/o?p=1"),
            ("x-forwarded-host", "shop.test"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "4.4.4.4"),
            ("host", "narrowgate"),
        ];
        assert_eq!(seen(Mode::Forward, "/forward-auth", &fwd), ok("POST", "/o?p=1", "shop.test", "4.4.4.4"));
        // The description headers are not the request's.
        let d = describe(Mode::Forward, parts("/forward-auth", &fwd), &peer(), "/envoy").expect("described");
        assert!(
            !d.request.headers().contains_key("x-forwarded-uri") && d.request.headers().contains_key("x-forwarded-for")
        );
    }

    #[test]
    fn a_description_that_does_not_hold_together_is_refused() {
        let bad = Err(Reason::BadRequest);
        for (mode, headers) in [
            (Mode::Nginx, vec![("x-original-uri", "/a")]),
            (Mode::Nginx, vec![("x-original-method", "GET")]),
            (
                Mode::Nginx,
                vec![("x-original-method", "GET"), ("x-original-method", "DELETE"), ("x-original-uri", "/a")],
            ),
            (Mode::Nginx, vec![("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-uri", "/admin")]),
            (
                Mode::Nginx,
                vec![("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-url", "http://h/b")],
            ),
            (
                Mode::Nginx,
                vec![("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-url", "http://h/a")],
            ),
            (Mode::Nginx, vec![("x-original-method", "GET"), ("x-original-uri", "http://h/a")]),
            (Mode::Nginx, vec![("x-original-method", "GET"), ("x-original-uri", "*")]),
            (Mode::Nginx, vec![("x-original-method", "GET"), ("x-original-url", "/relative")]),
            (Mode::Nginx, vec![("x-original-method", "G ET"), ("x-original-uri", "/a")]),
            (Mode::Forward, vec![("x-forwarded-method", "GET")]),
            (Mode::Forward, vec![("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]),
            (
                Mode::Forward,
                vec![
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "a"),
                    ("x-forwarded-host", "b"),
                ],
            ),
        ] {
            assert_eq!(seen(mode, "/x", &headers), bad, "{mode:?} {headers:?}");
        }
    }
}
