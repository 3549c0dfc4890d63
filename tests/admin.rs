//! The admin listener: health, readiness, and metrics that count what the
//! proxy decided.

mod support;

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
