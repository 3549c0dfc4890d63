//! The admin listener: health, readiness, and metrics that count what the
//! proxy decided.

use crate::support;

use narrowgate::token::testkit::rule;
use serde_json::json;
use support::Harness;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = Harness::start().await;
    assert_eq!(h.admin_get("/healthz").await.status, 200);
    assert_eq!(h.admin_get("/readyz").await.status, 200);

    let token = h.token("web", json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = format!("Bearer {token}");
    for _ in 0..3 {
        assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    }
    assert_eq!(h.get("/users/current/accounts/a2", &[("Authorization", &auth)]).await.status, 403);
    assert_eq!(h.get("/users/current/accounts/a2", &[]).await.status, 401);
    assert_eq!(h.get("/nowhere", &[]).await.status, 403);

    let m = h.admin_get("/metrics").await;
    assert_eq!(m.status, 200);
    let line = |needle: &str| -> f64 {
        m.body
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric line {needle}"))
    };
    let tama = "trading-account-management-api";
    let one = "GET /users/current/accounts/{accountId}";
    assert_eq!(
        line(&format!(
            r#"narrowgate_requests_total{{application="{tama}",decision="allow",reason="allowed",route="{one}"}}"#
        )),
        3.0
    );
    assert_eq!(
        line(&format!(
            r#"narrowgate_requests_total{{application="{tama}",decision="deny",reason="resource_not_allowed",route="{one}"}}"#
        )),
        1.0
    );
    assert_eq!(
        line(&format!(
            r#"narrowgate_requests_total{{application="{tama}",decision="deny",reason="missing_token",route="{one}"}}"#
        )),
        1.0
    );
    assert_eq!(
        line(
            r#"narrowgate_requests_total{application="none",decision="deny",reason="no_matching_route",route="none"}"#
        ),
        1.0
    );
    // One verification, then cache hits for the same token.
    assert_eq!(line(r#"narrowgate_token_cache_total{result="miss"}"#), 1.0);
    assert_eq!(line(r#"narrowgate_token_cache_total{result="hit"}"#), 3.0);
    assert_eq!(line(r#"narrowgate_request_duration_seconds_count{decision="allow"}"#), 3.0);
    assert!(!m.body.contains(&token), "a token in the metrics");
    assert!(!m.body.contains("/users/current/accounts/a1"), "a raw path as a label");
    // No series exists that never counted anything.
    assert!(!m.body.contains("reason=\"expired\""), "a series made before its first count");
    assert_eq!(line("narrowgate_decision_duration_seconds_count"), 6.0);
    assert_eq!(line("narrowgate_token_cache_entries"), 1.0);
    h.shutdown().await;
}

/// The catalogue: every family `/metrics` shows after a run is in
/// `docs/metrics.md` with the type it has there.
fn catalogue() -> Vec<(String, String)> {
    include_str!("../../docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            Some((cells.first()?.strip_suffix('`')?.to_string(), cells.get(1)?.trim().to_string()))
        })
        .collect()
}

/// One request of each kind of outcome, with `i` in what varies.
async fn warm(h: &Harness, good: &str, i: usize) {
    let _ = h.get("/users/current/accounts/a1", &[("Authorization", good)]).await;
    let _ = h.get(&format!("/users/current/accounts/x{i}"), &[("Authorization", good)]).await;
    let _ = h.get(&format!("/users/current/accounts/y{i}"), &[]).await;
    let _ = h.get(&format!("/random/{i}/path"), &[("Authorization", good)]).await;
    let _ = h.get(&format!("/users/current/accounts/z{i}"), &[("Authorization", &format!("Bearer garbage{i}"))]).await;
}

/// The series `/metrics` shows: every sample line.
async fn series(h: &Harness) -> Vec<String> {
    let m = h.admin_get("/metrics").await;
    m.body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_string())
        .collect()
}

#[tokio::test]
async fn the_metrics_are_the_catalogue_and_do_not_grow_with_traffic() {
    let h = Harness::start_with(
        |d| {
            d.set("rate_limits", json!({ "per_token": { "rate": "1000/s" } }));
        },
        |_| {},
    )
    .await;
    let rules = json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]);
    let good = format!("Bearer {}", h.token("web", rules.clone()));
    // Every kind of outcome once, so their series exist.
    warm(&h, &good, 0).await;
    let m = h.admin_get("/metrics").await;
    let known = catalogue();
    for line in m.body.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
        let documented =
            known.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} is not in docs/metrics.md"));
        assert_eq!(documented.1, kind, "{name}'s type");
    }
    let before = series(&h).await;

    // Random paths, subjects, tokens and ids: no new series.
    for i in 1..60 {
        warm(&h, &good, i).await;
        let subject = format!("user-{i}-{}", narrowgate::token::keys::random_id(4).expect("id"));
        let token = format!("Bearer {}", h.token(&subject, rules.clone()));
        let _ = h.get(&format!("/users/current/accounts/a1?q={i}"), &[("Authorization", &token)]).await;
    }
    let after = series(&h).await;
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(new.is_empty(), "series grew with traffic: {new:#?}");
    h.shutdown().await;
}
