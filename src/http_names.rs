//! Header names with a fixed meaning to the gateway, shared by config
//! validation and the proxy (so neither depends on the other for them).
//!
//! [`CLIENT_HEADER_POLICY`] is the one place that says what happens to a
//! header a client sends that could change who the upstream thinks is
//! calling or what it thinks is being called. Names are matched *folded*:
//! case, `-`, `_`, `.` and every other separator ignored, because
//! frameworks downstream conflate them (CGI and WSGI turn `X-Real-IP`,
//! `X_Real_IP` and `X.Real.IP` alike into `HTTP_X_REAL_IP`); [`fingerprint`]
//! compares folded names without making a folded copy.

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
pub const CLIENT_HEADER_PREFIXES: [(&str, HeaderClass); 2] = [
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

/// Each byte's folded form: ASCII letters lower-cased, digits kept, 0 for
/// everything else (dropped).
const FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { 0 };
        b += 1;
    }
    t
};

/// A folded name's fingerprint, made in one pass without copying it: its
/// folded length and a hash of the folded name. Names with equal folded
/// forms have equal fingerprints; two different names share one only by a
/// hash collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: usize,
    pub hash: u64,
}

/// The fingerprint of `name`'s folded form, and the hashes of its folded
/// prefixes of the lengths in `at` (zero where it is shorter).
#[inline]
pub fn fingerprint<const N: usize>(name: &str, at: [usize; N]) -> (Fingerprint, [u64; N]) {
    // FxHash's step: one rotate, xor and multiply per folded byte (measured
    // faster here than packing bytes into words first).
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let (mut len, mut hash) = (0usize, 0u64);
    let mut prefixes = [0u64; N];
    for &b in name.as_bytes() {
        let c = FOLD[b as usize];
        if c == 0 {
            continue;
        }
        hash = (hash.rotate_left(5) ^ u64::from(c)).wrapping_mul(K);
        len += 1;
        for (want, snap) in at.iter().zip(prefixes.iter_mut()) {
            if len == *want {
                *snap = hash;
            }
        }
    }
    (Fingerprint { len, hash }, prefixes)
}

/// Headers the gateway manages itself; config may not name them as
/// identity headers.
pub fn is_reserved(name: &HeaderName) -> bool {
    let (folded, _) = fingerprint(name.as_str(), []);
    let is = |s: &str| fingerprint(s, []).0 == folded;
    let starts = |p: &str| {
        let (prefix, _) = fingerprint(p, []);
        fingerprint(name.as_str(), [prefix.len]).1 == [prefix.hash]
    };
    CLIENT_HEADER_POLICY.iter().any(|(n, class)| *class != HeaderClass::Identity && is(n))
        || CLIENT_HEADER_PREFIXES.iter().any(|(p, class)| *class == HeaderClass::Forwarding && starts(p))
        || ["host", "authorization", "cookie", "content-length"].iter().any(|n| is(n))
}

/// The `Sec-WebSocket-Accept` a genuine answer to `key` carries (RFC 6455
/// §4.2.2).
pub fn websocket_accept(key: &[u8]) -> String {
    let mut input = Vec::with_capacity(key.len() + 36);
    input.extend_from_slice(key.trim_ascii());
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest.as_ref())
}

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRefusal {
    /// A protocol other than WebSocket (h2c, TLS/1.x, …), or several.
    Protocol,
    /// `Upgrade: websocket` without a well-formed RFC 6455 handshake.
    Handshake,
}

/// Whether the request asks to switch protocols, and if so whether it is
/// the one upgrade the gateway relays: a WebSocket opening handshake (RFC
/// 6455 §4.1: GET over HTTP/1.1, `Connection: upgrade`, exactly one
/// `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, and one
/// `Sec-WebSocket-Key` of 16 base64-encoded bytes). Anything that mentions
/// an upgrade and is not that is refused: the upstream must never be asked
/// to switch to a protocol the gateway cannot enforce.
pub fn upgrade(
    method: &http::Method,
    version: http::Version,
    headers: &http::HeaderMap,
) -> Result<bool, UpgradeRefusal> {
    let mut upgrades = headers.get_all(http::header::UPGRADE).iter();
    let connection_upgrade = connection_has(headers, "upgrade");
    let first = upgrades.next();
    if first.is_none() && !connection_upgrade && !headers.contains_key("http2-settings") {
        return Ok(false);
    }
    let Some(value) = first else { return Err(UpgradeRefusal::Protocol) };
    if upgrades.next().is_some() || !value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket") {
        return Err(UpgradeRefusal::Protocol);
    }
    let single = |name: &str| {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => Some(v.as_bytes().trim_ascii()),
            _ => None,
        }
    };
    let key_ok = single("sec-websocket-key")
        .and_then(|k| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, k).ok())
        .is_some_and(|k| k.len() == 16);
    let handshake = method == http::Method::GET
        && version == http::Version::HTTP_11
        && connection_upgrade
        && single("sec-websocket-version") == Some(b"13".as_slice())
        && key_ok
        && !headers.contains_key("http2-settings");
    if handshake { Ok(true) } else { Err(UpgradeRefusal::Handshake) }
}

/// Whether `Connection` lists `token` (case-insensitive).
pub fn connection_has(headers: &http::HeaderMap, token: &str) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_every_separator() {
        let want = fingerprint("xrealip", []).0;
        for spelling in ["X-Real-IP", "x_real_ip", "X.Real.Ip", "x~real|ip", "XREALIP", "x-real-ip-"] {
            assert_eq!(fingerprint(spelling, []).0, want, "{spelling}");
        }
        for other in ["x-real-ips", "x-realip2", "real-ip", "x-rea-lip-x"] {
            assert_ne!(fingerprint(other, []).0, want, "{other}");
        }
        let (_, [ten]) = fingerprint("X_Forwarded.Anything", [10]);
        assert_eq!(ten, fingerprint("xforwarded", []).0.hash);
        assert_eq!(fingerprint("x-f", [10]).1, [0], "shorter than the prefix");
    }

    #[test]
    fn reserved_names_are_refused_in_any_spelling() {
        for n in ["x-forwarded-for", "x_forwarded_host", "x-real-ip", "transfer_encoding", "host", "content.length"] {
            assert!(is_reserved(&HeaderName::from_bytes(n.as_bytes()).expect("name")), "{n}");
        }
        assert!(!is_reserved(&HeaderName::from_static("x-user")));
    }
}
