//! Header names with a fixed meaning to the gateway, shared by config
//! validation and the proxy (so neither depends on the other for them).

use http::HeaderName;

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the common non-standard ones):
/// never forwarded.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers the gateway manages itself; config may not name them as
/// identity headers.
pub fn is_reserved(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
        || matches!(
            name.as_str(),
            "host"
                | "authorization"
                | "cookie"
                | "content-length"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "forwarded"
        )
}
