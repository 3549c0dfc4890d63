//! Rate limits: per client address before the token is looked at, per
//! token, per subject and per application after; 429 with `Retry-After`,
//! the IETF `RateLimit-Policy`/`RateLimit` fields and MetaApi's
//! `metadata.recommendedRetryTime`; bounded state, whose overflow is
//! limited too; enforced in shadow mode as in any other.

use crate::support;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::json;
use support::{Harness, metric};

const ACCOUNT: &str = "/users/current/accounts/a1";

fn limited(limit: &str) -> String {
    format!("narrowgate_rate_limited_total{{limit=\"{limit}\"}}")
}

/// A token for `sub` with its own `jti`.
fn token(h: &Harness, sub: &str, jti: &str) -> String {
    let mut p = payload(sub, now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
    p["jti"] = jti.into();
    format!("Bearer {}", h.sign(&p))
}

#[tokio::test]
async fn a_token_over_its_limit_gets_429_with_when_to_retry() {
    let h = Harness::start_with(
        |d| {
            d.set("rate_limits", json!({ "per_token": { "rate": "2/m", "burst": 2 } }));
        },
        |_| {},
    )
    .await;
    let alice = token(&h, "alice", "t-1");
    for _ in 0..2 {
        assert_eq!(h.get(ACCOUNT, &[("Authorization", &alice)]).await.status, 200);
    }
    let r = h.get(ACCOUNT, &[("Authorization", &alice)]).await;
    assert_eq!((r.status, r.reason().as_str()), (429, "rate_limited"), "{}", r.body);
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=30).contains(&retry), "one cell every 30 s: {retry}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"token\";q=2;w=60"));
    assert_eq!(r.header("ratelimit"), Some(format!("\"token\";r=0;t={retry}").as_str()));
    let body = r.json();
    assert_eq!(body["limit"], "token");
    let when: jiff::Timestamp =
        body["metadata"]["recommendedRetryTime"].as_str().expect("ISO time").parse().expect("parses");
    let wait = when.as_second() - now_unix() as i64;
    assert!((0..=31).contains(&wait), "{wait}");
    assert_eq!(h.upstream_received().len(), 2, "the limited request never reached the upstream");
    // Another token has its own bucket.
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &token(&h, "alice", "t-2"))]).await.status, 200);
    assert_eq!(metric(h.admin, &limited("token")).await, Some(1.0));
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_over_its_limit_is_refused_before_its_token_is_looked_at() {
    let h = Harness::start_with(
        |d| {
            d.set("rate_limits", json!({ "per_client": { "rate": "3/m" } }));
        },
        |_| {},
    )
    .await;
    for _ in 0..3 {
        let r = h.get(ACCOUNT, &[("Authorization", "Bearer not.a.token")]).await;
        assert_eq!(r.reason(), "invalid_token");
    }
    let r = h.get(ACCOUNT, &[("Authorization", "Bearer not.a.token")]).await;
    assert_eq!((r.status, r.reason().as_str()), (429, "rate_limited"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"client\";q=3;w=60"));
    // Everything from this address now: public routes too.
    assert_eq!(h.get("/health", &[]).await.status, 429);
    assert_eq!(metric(h.admin, &limited("client")).await, Some(2.0));
    h.shutdown().await;
}

#[tokio::test]
async fn subjects_and_applications_have_limits_of_their_own() {
    let h = Harness::start_with(
        |d| {
            d.set("rate_limits", json!({ "per_subject": { "rate": "2/h" } }));
            d.set("applications.2.rate_limit", json!({ "rate": "1/h" }));
        },
        |_| {},
    )
    .await;
    // Two tokens of one subject share its bucket.
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &token(&h, "bob", "b-1"))]).await.status, 200);
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &token(&h, "bob", "b-2"))]).await.status, 200);
    let r = h.get(ACCOUNT, &[("Authorization", &token(&h, "bob", "b-3"))]).await;
    assert_eq!((r.status, r.header("ratelimit-policy")), (429, Some("\"subject\";q=2;w=3600")));
    // metastats-api allows one request an hour, whoever asks.
    let metrics = "/metastats/users/current/accounts/a1/metrics";
    assert_eq!(h.get(metrics, &[("Authorization", &token(&h, "carol", "c-1"))]).await.status, 200);
    let r = h.get(metrics, &[("Authorization", &token(&h, "dave", "d-1"))]).await;
    assert_eq!((r.status, r.json()["limit"].as_str()), (429, Some("application")));
    assert_eq!(
        h.get(ACCOUNT, &[("Authorization", &token(&h, "dave", "d-1"))]).await.status,
        200,
        "only that application"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn shadow_mode_does_not_relax_rate_limits() {
    let h = Harness::start_with(
        |d| {
            d.set("rate_limits", json!({ "per_token": { "rate": "1/h" }, "per_client": { "rate": "100/h" } }));
            d.set("mode", "shadow");
        },
        |_| {},
    )
    .await;
    let erin = token(&h, "erin", "e-1");
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &erin)]).await.status, 200);
    let r = h.get(ACCOUNT, &[("Authorization", &erin)]).await;
    assert_eq!((r.status, r.reason().as_str()), (429, "rate_limited"), "{}", r.body);
    assert_eq!(h.upstream_received().len(), 1, "the limited request never reached the upstream");
    assert_eq!(metric(h.admin, &limited("token")).await, Some(1.0));
    let shadowed =
        "narrowgate_would_deny_total{application=\"trading-account-management-api\",reason=\"rate_limited\"}";
    assert_eq!(metric(h.admin, shadowed).await, None, "a rate limit is never shadowed");
    h.shutdown().await;
}

/// Clients beyond the table's room are limited together, never let
/// through unlimited: each address of 127.0.0.0/8 is another client.
#[tokio::test]
async fn clients_that_find_the_table_full_share_one_bucket() {
    let h = Harness::start_with(
        |d| {
            d.set("rate_limits", json!({ "per_client": { "rate": "2/h" }, "max_keys": 2 }));
        },
        |_| {},
    )
    .await;
    let from = |n: u8| std::net::IpAddr::from([127, 0, 0, n]);
    let get = |n: u8| {
        let req = support::build_request("GET", "/health", &[]);
        let proxy = h.proxy;
        async move { support::send_raw_from(from(n), proxy, req.as_bytes()).await.status }
    };
    // Two clients fill the table; each has its own two requests.
    for n in [11, 12] {
        assert_eq!((get(n).await, get(n).await, get(n).await), (200, 200, 429), "127.0.0.{n}");
    }
    // Every client after them shares one bucket of the same limit: two
    // requests among them all, then 429 — however many addresses.
    let statuses: Vec<u16> = futures_util::future::join_all((13..40).map(get)).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    assert_eq!(metric(h.admin, "narrowgate_rate_limit_untracked_requests").await, Some(27.0));
    assert_eq!(h.upstream_received().len(), 6);
    h.shutdown().await;
}
