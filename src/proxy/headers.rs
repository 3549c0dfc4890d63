//! Phase 7, header hygiene: what is removed from a request before it is
//! forwarded, and what the gateway adds.
//!
//! Removed: hop-by-hop headers and every header named in `Connection`; every
//! inbound `x-narrowgate-*` header and the configured identity headers (any
//! case, `_` for `-`), so a client can never pose as an identity the gateway
//! asserts; `X-Forwarded-*`, `Forwarded` and the request id unless the peer
//! is a trusted proxy; the credential, unless configured to forward it.
//! Added afterwards, so `Connection` can never remove them: `X-Forwarded-*`,
//! the request id, and the identity headers from the grant.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::config::{CredentialSource, Forwarding};
use crate::http_names::HOP_BY_HOP;

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the common non-standard ones).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Compare a lower-case header name with `want`, treating `_` as `-`.
fn eq_dashed(name: &str, want: &str) -> bool {
    name.len() == want.len() && name.bytes().zip(want.bytes()).all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

fn starts_dashed(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && eq_dashed(&name[..prefix.len()], prefix)
}

/// Headers that switch a request's method in some frameworks; the gateway
/// decides on the real method, so a request carrying one is refused.
pub fn has_method_override(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let n = k.as_str();
        eq_dashed(n, "x-http-method-override") || eq_dashed(n, "x-http-method") || eq_dashed(n, "x-method-override")
    })
}

/// Whether the request asks to switch protocols.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

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

/// Remove everything that must not reach the upstream. `upgrade` keeps the
/// `Upgrade` header and re-adds `Connection: upgrade`.
pub fn strip_inbound(
    headers: &mut HeaderMap,
    fwd: &Forwarding,
    credentials: &[CredentialSource],
    trusted_peer: bool,
    upgrade: bool,
) {
    let upgrade_value = if upgrade { headers.get(header::UPGRADE).cloned() } else { None };
    let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
    connection_listed(headers, &mut doomed);
    let id = &fwd.identity;
    for name in headers.keys() {
        let n = name.as_str();
        let drop = is_hop_by_hop(n)
            || starts_dashed(n, "x-narrowgate-")
            || eq_dashed(n, id.subject.as_str())
            || eq_dashed(n, id.token_id.as_str())
            || eq_dashed(n, id.application.as_str())
            || eq_dashed(n, id.roles.as_str())
            || (!trusted_peer
                && (starts_dashed(n, "x-forwarded-") || n == "forwarded" || eq_dashed(n, fwd.request_id.as_str())));
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
    if let Some(up) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up);
    }
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

/// Remove the credential query parameter; `None` if nothing changed.
pub fn strip_query_param(query: &str, param: &str) -> Option<String> {
    let mut changed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let hit = key == param;
            changed |= hit;
            !hit
        })
        .collect();
    changed.then(|| kept.join("&"))
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
        assert_eq!(strip_query_param("a=1&token=x&b=2", "token").as_deref(), Some("a=1&b=2"));
        assert_eq!(strip_query_param("token=x", "token").as_deref(), Some(""));
        assert_eq!(strip_query_param("tokens=x", "token"), None);
    }

    #[test]
    fn dashed_comparison_accepts_underscores() {
        assert!(eq_dashed("x_narrowgate_subject", "x-narrowgate-subject"));
        assert!(starts_dashed("x_narrowgate_anything", "x-narrowgate-"));
        assert!(!starts_dashed("x-narrowgat", "x-narrowgate-"));
    }
}
