//! The client-header policy: headers that carry identity, rewrite the
//! target or claim the client's address never pass from a client, in any
//! spelling (case, `-`, `_`, `.` and other separators folded). Each case
//! asserts what the client got and what the upstream received.

use crate::support;

use http::HeaderName;
use narrowgate::token::testkit::rule;
use serde_json::{Value, json};
use support::Harness;

const ACCOUNT: &str = "/users/current/accounts/a1";

fn web_rules() -> Value {
    json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])])
}

#[tokio::test]
async fn target_rewriting_and_method_override_headers_are_refused_in_every_spelling() {
    let h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let cases = [
        ("X-Original-URL", "/admin", "target_rewrite_rejected"),
        ("x_original_url", "/admin", "target_rewrite_rejected"),
        ("X.Original.Url", "/admin", "target_rewrite_rejected"),
        ("X-Original-URI", "/admin", "target_rewrite_rejected"),
        ("X-Rewrite-URL", "/admin", "target_rewrite_rejected"),
        ("x.rewrite_url", "/admin", "target_rewrite_rejected"),
        ("X-Override-URL", "/admin", "target_rewrite_rejected"),
        ("X-HTTP-DestinationURL", "/admin", "target_rewrite_rejected"),
        ("X-Envoy-Original-Path", "/admin", "target_rewrite_rejected"),
        ("X-HTTP-Method-Override", "DELETE", "method_override_rejected"),
        ("x.http.method", "DELETE", "method_override_rejected"),
        ("X_Method_Override", "DELETE", "method_override_rejected"),
        ("x-method~override", "DELETE", "method_override_rejected"),
    ];
    for (name, value, reason) in cases {
        let resp = h.get(ACCOUNT, &[("Authorization", &auth), (name, value)]).await;
        assert_eq!((resp.status, resp.reason().as_str()), (400, reason), "{name}");
        assert!(!resp.body.contains(value), "{name}: the client's value was echoed");
        assert!(h.upstream_received().is_empty(), "{name} reached the upstream");
    }
    // The same request without them is allowed: the header alone decided.
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn identity_headers_never_pass_from_a_client_in_any_spelling() {
    let h = Harness::start_with(
        |_| {},
        |c| {
            // A configured identity header outside the gateway's namespace.
            c.forwarding.identity.subject = HeaderName::from_static("x-user-id");
            c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        },
    )
    .await;
    let token = h.token("web", web_rules());
    let auth = format!("Bearer {token}");
    let forged = [
        "X-Narrowgate-Token-Id",
        "x_narrowgate_roles",
        "x.narrowgate.application",
        "X.NARROWGATE-anything",
        "x~narrowgate|subject",
        "xnarrowgateroles",
        "X-User-Id",
        "x_user_id",
        "x.user.id",
        "X-USER~ID",
    ];
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend(forged.iter().map(|n| (*n, "root")));
    // Even from a trusted proxy: trust covers forwarding, never identity.
    let resp = h.get(ACCOUNT, &headers).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = h.upstream_received();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    for name in forged {
        let lower = name.to_ascii_lowercase();
        let gateway_set = ["x-narrowgate-token-id", "x-user-id"].contains(&lower.as_str());
        if !gateway_set {
            assert_eq!(got.header(&lower), None, "{name} reached the upstream");
        }
    }
    // The gateway's own values, once each.
    assert_eq!(got.headers.iter().filter(|(n, _)| n == "x-user-id").count(), 1);
    assert_eq!(got.header("x-user-id"), Some("web"));
    assert_ne!(got.header("x-narrowgate-token-id"), Some("root"));
    assert_eq!(got.header("x-narrowgate-roles"), Some("reader"));
    assert!(got.headers.iter().all(|(_, v)| v != "root"), "a forged value reached the upstream: {:?}", got.headers);
    h.shutdown().await;
}

#[tokio::test]
async fn client_address_headers_are_replaced_unless_the_peer_is_a_trusted_proxy() {
    let spoofed = [
        ("X-Real-IP", "6.6.6.6"),
        ("x_real_ip", "6.6.6.7"),
        ("True-Client-IP", "6.6.6.8"),
        ("true.client.ip", "6.6.6.9"),
        ("CF-Connecting-IP", "6.6.6.10"),
        ("Fastly-Client-IP", "6.6.6.11"),
        ("X-Client-IP", "6.6.6.12"),
        ("X-Cluster-Client-IP", "6.6.6.13"),
        ("Forwarded", "for=6.6.6.14"),
        ("X-Forwarded-For", "6.6.6.15"),
        ("x_forwarded_for", "6.6.6.16"),
        ("X.Forwarded.Host", "evil.test"),
        ("X-Forwarded-Prefix", "/admin"),
        ("x_request_id", "client-chosen"),
    ];
    let h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend(spoofed);
    // Connection cannot remove what the gateway sets.
    headers.push(("Connection", "x-real-ip, x-forwarded-for"));
    let resp = h.get(ACCOUNT, &headers).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = &h.upstream_received()[0];
    assert_eq!(got.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-host"), Some("gateway.test"));
    assert!(
        got.headers
            .iter()
            .all(|(_, v)| !v.starts_with("6.6.6.") && v != "evil.test" && v != "/admin" && v != "client-chosen"),
        "a spoofed value reached the upstream: {:?}",
        got.headers
    );
    h.shutdown().await;

    // From a trusted proxy the same headers are its word and are kept.
    let h = Harness::start_with(|_| {}, |c| c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")]).await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let resp = h
        .get(
            ACCOUNT,
            &[
                ("Authorization", &auth),
                ("X-Real-IP", "203.0.113.7"),
                ("True-Client-IP", "203.0.113.7"),
                ("X-Forwarded-For", "203.0.113.7"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200);
    let got = &h.upstream_received()[0];
    assert_eq!(got.header("x-real-ip"), Some("203.0.113.7"));
    assert_eq!(got.header("true-client-ip"), Some("203.0.113.7"));
    assert_eq!(got.header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_credential_header_in_another_spelling_is_removed_too() {
    // `auth-token` is a credential source: an `auth_token` beside it (or
    // alone) would read as the credential to an upstream that folds names.
    let h = Harness::start().await;
    let token = h.token("web", web_rules());
    let resp =
        h.get(ACCOUNT, &[("auth-token", &token), ("auth_token", "unverified"), ("Auth.Token", "unverified")]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = &h.upstream_received()[0];
    assert!(got.headers.iter().all(|(n, v)| v != "unverified" && !n.starts_with("auth")), "{:?}", got.headers);
    // Alone, an alias is not a credential: the request has none.
    let resp = h.get(ACCOUNT, &[("auth_token", &token)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "missing_token"));
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}
