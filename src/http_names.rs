//! Header names with a fixed meaning to the gateway, shared by config
//! validation and the proxy (so neither depends on the other for them).
//!
//! [`CLIENT_HEADER_POLICY`] is the one place that says what happens to a
//! header a client sends that could change who the upstream thinks is
//! calling or what it thinks is being called. Names are matched *folded*
//! ([`fold`]): case, `-`, `_`, `.` and every other separator ignored, because
//! frameworks downstream conflate them (CGI and WSGI turn `X-Real-IP`,
//! `X_Real_IP` and `X.Real.IP` alike into `HTTP_X_REAL_IP`).

use http::HeaderName;

/// What the gateway does with a header of this class when a client sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderClass {
    /// Connection-level (RFC 9110 §7.6.1 and the common non-standard ones):
    /// never forwarded.
    HopByHop,
    /// Switches the method in some frameworks: the request is refused
    /// (the gateway decided on the real method).
    OverridesMethod,
    /// Replaces the target in some frameworks or proxies: the request is
    /// refused (the gateway decided on the real target).
    RewritesTarget,
    /// Claims the client's address or the original request's scheme and
    /// host: kept only from a trusted proxy; otherwise removed, and the
    /// gateway sets `X-Forwarded-For/Proto/Host` and `X-Real-IP` from the
    /// connection.
    Forwarding,
    /// Asserts an identity the gateway sets after verifying a token: never
    /// accepted from a client, trusted proxy or not.
    Identity,
}

/// The closed list of client headers the gateway treats specially, by
/// folded name. The configured identity, request-id and credential header
/// names join it at start (see `proxy::headers::HeaderPolicy`).
pub const CLIENT_HEADER_POLICY: &[(&str, HeaderClass)] = &[
    ("connection", HeaderClass::HopByHop),
    ("keep-alive", HeaderClass::HopByHop),
    ("proxy-connection", HeaderClass::HopByHop),
    ("proxy-authorization", HeaderClass::HopByHop),
    ("proxy-authenticate", HeaderClass::HopByHop),
    ("te", HeaderClass::HopByHop),
    ("trailer", HeaderClass::HopByHop),
    ("transfer-encoding", HeaderClass::HopByHop),
    ("upgrade", HeaderClass::HopByHop),
    // RFC 7540 §3.2.1: only meaningful beside `Upgrade: h2c`, which is refused.
    ("http2-settings", HeaderClass::HopByHop),
    ("x-http-method-override", HeaderClass::OverridesMethod),
    ("x-http-method", HeaderClass::OverridesMethod),
    ("x-method-override", HeaderClass::OverridesMethod),
    ("x-original-url", HeaderClass::RewritesTarget),
    ("x-original-uri", HeaderClass::RewritesTarget),
    ("x-rewrite-url", HeaderClass::RewritesTarget),
    ("x-override-url", HeaderClass::RewritesTarget),
    ("x-http-destinationurl", HeaderClass::RewritesTarget),
    ("x-envoy-original-path", HeaderClass::RewritesTarget),
    ("forwarded", HeaderClass::Forwarding),
    ("x-real-ip", HeaderClass::Forwarding),
    ("true-client-ip", HeaderClass::Forwarding),
    ("x-client-ip", HeaderClass::Forwarding),
    ("x-cluster-client-ip", HeaderClass::Forwarding),
    ("cf-connecting-ip", HeaderClass::Forwarding),
    ("fastly-client-ip", HeaderClass::Forwarding),
    ("x-originating-ip", HeaderClass::Forwarding),
    ("x-remote-ip", HeaderClass::Forwarding),
    ("x-remote-addr", HeaderClass::Forwarding),
];

/// Folded-name prefixes: every header starting so belongs to the class.
pub const CLIENT_HEADER_PREFIXES: &[(&str, HeaderClass)] = &[
    // X-Forwarded-For, -Proto, -Host, -Port, -Prefix, -Uri, …
    ("x-forwarded-", HeaderClass::Forwarding),
    // The gateway's own namespace.
    ("x-narrowgate-", HeaderClass::Identity),
];

/// Hop-by-hop headers, as the upstream's responses are cleaned of them.
pub const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// The longest folded name the policy compares in full; longer names can
/// only match by prefix.
pub const MAX_FOLDED: usize = 64;

/// A header name folded for comparison: ASCII letters lower-cased, digits
/// kept, everything else dropped. At most [`MAX_FOLDED`] bytes are kept; the
/// flag says whether the name was longer.
#[derive(Clone, Copy)]
pub struct Folded {
    buf: [u8; MAX_FOLDED],
    len: usize,
    truncated: bool,
}

impl Folded {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The whole folded name, unless it was too long to keep.
    pub fn whole(&self) -> Option<&[u8]> {
        (!self.truncated).then(|| self.as_bytes())
    }
}

/// Fold `name` (see [`Folded`]).
pub fn fold(name: &str) -> Folded {
    let mut f = Folded { buf: [0; MAX_FOLDED], len: 0, truncated: false };
    for b in name.bytes() {
        if !b.is_ascii_alphanumeric() {
            continue;
        }
        if f.len == MAX_FOLDED {
            f.truncated = true;
            break;
        }
        f.buf[f.len] = b.to_ascii_lowercase();
        f.len += 1;
    }
    f
}

/// Headers the gateway manages itself; config may not name them as
/// identity headers.
pub fn is_reserved(name: &HeaderName) -> bool {
    let folded = fold(name.as_str());
    let is = |s: &str| folded.as_bytes() == fold(s).as_bytes();
    CLIENT_HEADER_POLICY.iter().any(|(n, class)| *class != HeaderClass::Identity && is(n))
        || CLIENT_HEADER_PREFIXES
            .iter()
            .any(|(p, class)| *class == HeaderClass::Forwarding && folded.as_bytes().starts_with(fold(p).as_bytes()))
        || ["host", "authorization", "cookie", "content-length"].iter().any(|n| is(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_every_separator() {
        for spelling in ["X-Real-IP", "x_real_ip", "X.Real.Ip", "x~real|ip", "XREALIP", "x-real-ip-"] {
            assert_eq!(fold(spelling).as_bytes(), b"xrealip", "{spelling}");
        }
        let long = "x-".repeat(100);
        assert!(fold(&long).whole().is_none());
        assert_eq!(fold(&long).as_bytes().len(), MAX_FOLDED);
    }

    #[test]
    fn reserved_names_are_refused_in_any_spelling() {
        for n in ["x-forwarded-for", "x_forwarded_host", "x-real-ip", "transfer_encoding", "host", "content.length"] {
            assert!(is_reserved(&HeaderName::from_bytes(n.as_bytes()).expect("name")), "{n}");
        }
        assert!(!is_reserved(&HeaderName::from_static("x-user")));
    }
}
