//! Phase 7, header hygiene: what is refused, removed and added, decided by
//! one [`HeaderPolicy`] built at start from the closed lists in
//! [`crate::http_names`] and the configured header names.
//!
//! Refused (before anything is forwarded): method-override and
//! target-rewriting headers, and every upgrade but a well-formed WebSocket
//! handshake ([`upgrade`]). Removed: hop-by-hop headers and every header
//! named in `Connection`; identity headers (`x-narrowgate-*` and the
//! configured ones) always; forwarding and client-address headers unless the
//! peer is a trusted proxy; the credential, unless configured to forward
//! it. Names are matched folded (case and separators ignored). Added
//! afterwards, so `Connection` can never remove them: `X-Forwarded-*`,
//! `X-Real-IP`, the request id, and the identity headers from the grant.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::config::header_policy::Class;
pub use crate::config::header_policy::{HeaderPolicy, Scan};
use crate::config::{CredentialSource, Forwarding};
use crate::http_names::{HOP_BY_HOP, HeaderClass, connection_has};
pub use crate::http_names::{UpgradeRefusal, upgrade, websocket_accept};

/// What a request forwarded in shadow mode carries instead of the
/// identity headers: the reason code the rules deny it for. Under the
/// `x-narrowgate-` prefix, so a client can never send it itself.
pub const WOULD_DENY: HeaderName = HeaderName::from_static("x-narrowgate-would-deny");

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the common non-standard ones).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

impl HeaderPolicy {
    /// Remove everything that must not reach the upstream, as `scan` found
    /// it. `upgrade` (a validated WebSocket handshake) forwards `Upgrade:
    /// websocket` and `Connection: upgrade`, in their canonical spelling.
    pub fn strip_inbound(
        &self,
        headers: &mut HeaderMap,
        scan: &Scan,
        fwd: &Forwarding,
        credentials: &[CredentialSource],
        trusted_peer: bool,
        upgrade: bool,
    ) {
        let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
        if scan.upgrade_related {
            connection_listed(headers, &mut doomed);
        }
        for (name, class) in &scan.classified {
            let drop = match class {
                Class::Policy(HeaderClass::Forwarding) => !trusted_peer,
                // The credential in its own spelling is handled below
                // (forward_credential may keep it).
                Class::CredentialAlias => {
                    !credentials.iter().any(|c| matches!(c, CredentialSource::Header(h) if h == name))
                }
                Class::Policy(_) => true,
            };
            if drop {
                doomed.push(name.clone());
            }
        }
        for name in &doomed {
            headers.remove(name);
        }
        if !fwd.forward_credential {
            strip_credentials(headers, credentials);
        }
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
    }
}

/// Whether an upstream's 101 answers the WebSocket handshake whose
/// `Sec-WebSocket-Accept` should be `accept`: `Upgrade: websocket`,
/// `Connection: upgrade`, and the accept value.
pub fn answers_websocket(headers: &HeaderMap, accept: &str) -> bool {
    let upgrade_ok =
        headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"));
    let accept_ok = headers.get("sec-websocket-accept").is_some_and(|v| v.as_bytes().trim_ascii() == accept.as_bytes());
    upgrade_ok && connection_has(headers, "upgrade") && accept_ok
}

/// Whether a `Connection` header lists `token`.
/// Header names listed in `Connection`, other than the hop-by-hop ones that
/// are removed anyway (so the usual `Connection: keep-alive` costs nothing).
fn connection_listed(headers: &HeaderMap, out: &mut SmallVec<[HeaderName; 4]>) {
    for v in headers.get_all(header::CONNECTION) {
        let Ok(s) = v.to_str() else { continue };
        for token in s.split(',') {
            let token = token.trim();
            if token.is_empty() || token.eq_ignore_ascii_case("close") || is_hop_by_hop_ci(token) {
                continue;
            }
            // from_bytes lower-cases.
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                out.push(name);
            }
        }
    }
}

fn is_hop_by_hop_ci(token: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(token))
}

fn strip_credentials(headers: &mut HeaderMap, credentials: &[CredentialSource]) {
    for src in credentials {
        match src {
            CredentialSource::Bearer => {
                // Only a Bearer Authorization is narrowgate's credential; other
                // schemes belong to the upstream.
                let bearer = headers
                    .get_all(header::AUTHORIZATION)
                    .iter()
                    .any(|v| v.as_bytes().len() >= 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"bearer"));
                if bearer {
                    headers.remove(header::AUTHORIZATION);
                }
            }
            CredentialSource::Header(name) => {
                headers.remove(name);
            }
            CredentialSource::Cookie(cookie) => strip_cookie(headers, cookie),
            // The query is rewritten with the path.
            CredentialSource::Query(_) => {}
        }
    }
}

fn strip_cookie(headers: &mut HeaderMap, cookie: &str) {
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    let mut kept: Vec<String> = Vec::new();
    let mut changed = false;
    for v in &values {
        let Ok(s) = v.to_str() else {
            // An undecodable cookie header could hide the credential; drop it.
            changed = true;
            continue;
        };
        for pair in s.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
            if name == cookie {
                changed = true;
            } else {
                kept.push(pair.to_string());
            }
        }
    }
    if !changed {
        return;
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Remove every credential query parameter (in any spelling the
/// extractor accepts); `None` if nothing changed.
pub fn strip_query_param(query: &str, params: &[String]) -> Option<String> {
    let mut changed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let hit = is_credential_key(key_of(pair), params);
            changed |= hit;
            !hit
        })
        .collect();
    changed.then(|| kept.join("&"))
}

/// The keys of `query` that carry a credential, as spelled there.
pub fn credential_keys<'q>(query: &'q str, params: &'q [String]) -> impl Iterator<Item = &'q str> {
    query.split('&').map(key_of).filter(move |k| is_credential_key(k, params))
}

/// A query pair's key (the whole pair when it has no `=`).
fn key_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(k, _)| k)
}

/// Whether a query key names a credential parameter, in any spelling the
/// extractor accepts.
fn is_credential_key(key: &str, params: &[String]) -> bool {
    params.iter().any(|p| crate::auth::credential::is_param(key, p))
}

/// Remove hop-by-hop headers from an upstream response (keeping the
/// `Upgrade`/`Connection` pair of a 101).
pub fn strip_response(headers: &mut HeaderMap, switching: bool) {
    let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
    connection_listed(headers, &mut doomed);
    for name in headers.keys() {
        if is_hop_by_hop(name.as_str()) && !(switching && (name == header::UPGRADE || name == header::CONNECTION)) {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_is_removed_exactly() {
        let one = ["token".to_string()];
        assert_eq!(strip_query_param("a=1&token=x&b=2", &one).as_deref(), Some("a=1&b=2"));
        assert_eq!(strip_query_param("token=x", &one).as_deref(), Some(""));
        assert_eq!(strip_query_param("tokens=x", &one), None);
        // Percent-encoded keys an upstream would decode to the name.
        assert_eq!(strip_query_param("%74oken=x&b=2", &one).as_deref(), Some("b=2"));
        assert_eq!(strip_query_param("to%6Ben=x", &one).as_deref(), Some(""));
        // Every configured parameter, wherever it stands.
        let two = ["accessTokenId".to_string(), "access_token".to_string()];
        assert_eq!(strip_query_param("x=1&access_token=a&accessTokenId=b&y=2", &two).as_deref(), Some("x=1&y=2"));
    }
}
