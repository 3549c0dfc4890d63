//! The allow/deny matrix over the demo manifest: for every case, what the
//! client got and what the upstream received. The cases live in
//! `tests/support/matrix.rs`; `tests/explain.rs` runs them through offline
//! explain as well.

use crate::support;

use support::Harness;
use support::matrix::{cases, tokens};

#[tokio::test]
async fn allow_deny_matrix_over_the_demo_manifest() {
    let h = Harness::start().await;
    let tokens = tokens(&h);
    let cases = cases();

    for c in &cases {
        let token = c.token(&tokens);
        let (target, headers) = c.request(&tokens);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = h.request(c.method, &target, &headers).await;
        let seen = h.upstream_received();
        assert_eq!(resp.status, c.status, "{}: body {}", c.name, resp.body);
        let request_id =
            resp.header("x-request-id").unwrap_or_else(|| panic!("{}: no x-request-id", c.name)).to_string();

        if c.status != 200 {
            assert_eq!(resp.reason(), c.reason, "{}", c.name);
            assert!(seen.is_empty(), "{}: upstream received {seen:?}", c.name);
            assert_eq!(resp.header("content-type"), Some("application/json"), "{}", c.name);
            let body = resp.json();
            let list = |k: &str| -> Vec<String> {
                body[k]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default()
            };
            assert_eq!(list("missing_scopes"), c.missing_scopes, "{}", c.name);
            assert_eq!(list("missing_roles"), c.missing_roles, "{}", c.name);
            if c.status == 401 {
                assert!(resp.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{}", c.name);
            }
            if let Some(t) = token {
                assert!(!resp.body.contains(t), "{}: the token leaked into the body", c.name);
            }
            continue;
        }

        assert_eq!(seen.len(), 1, "{}: upstream should get exactly one request", c.name);
        let got = &seen[0];
        assert_eq!(got.method, c.method, "{}", c.name);
        // Exactly the target without the credential, wherever it was.
        assert_eq!(got.target, c.target, "{}", c.name);
        assert_eq!(got.header("authorization"), None, "{}: credential forwarded", c.name);
        assert_eq!(got.header("auth-token"), None, "{}: credential forwarded", c.name);
        assert_eq!(got.header("x-request-id"), Some(request_id.as_str()), "{}", c.name);
        assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"), "{}", c.name);
        assert_eq!(got.header("x-forwarded-proto"), Some("http"), "{}", c.name);
        assert_eq!(got.header("x-forwarded-host"), Some("gateway.test"), "{}", c.name);
        assert_eq!(got.header("host"), Some("gateway.test"), "{}", c.name);
        match c.token {
            None => {
                for hdr in
                    ["x-narrowgate-subject", "x-narrowgate-token-id", "x-narrowgate-application", "x-narrowgate-roles"]
                {
                    assert_eq!(got.header(hdr), None, "{}: {hdr} on a public route", c.name);
                }
            }
            Some((who, _)) => {
                assert_eq!(got.header("x-narrowgate-subject"), Some(who), "{}", c.name);
                assert!(
                    got.header("x-narrowgate-token-id").is_some_and(|v| v.starts_with(&format!("jti-{who}-"))),
                    "{}",
                    c.name
                );
                assert_eq!(got.header("x-narrowgate-application"), Some(c.reason), "{}", c.name);
                assert_eq!(got.header("x-narrowgate-roles"), Some(c.roles), "{}", c.name);
            }
        }
    }
    h.shutdown().await;
}
