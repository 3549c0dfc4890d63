//! Criterion benches of the request path's pieces: verification per
//! algorithm, the cache-hit path, rule evaluation by rule count, route
//! matching by route count, all decision phases together, and what
//! tracing adds to a request at each sampling ratio.
//! Results and the machine are recorded in benches/README.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use narrowgate::config::Config;
use narrowgate::metrics::Metrics;
use narrowgate::policy::manifest::{ResourceSpec, Route, RouteAccess};
use narrowgate::policy::{AccessRule, Decision, Router, evaluate};
use narrowgate::proxy::Gateway;
use narrowgate::store::Revocations;
use narrowgate::token::testkit::{self, TestKey, payload, rule};
use narrowgate::token::{GrantCache, Verifier, now_unix};
use serde_json::json;

fn bench_verify(c: &mut Criterion) {
    let keys = [TestKey::es256("es"), TestKey::eddsa("ed"), TestKey::rs256("rs"), TestKey::hs256("hs", &[7u8; 32])];
    let refs: Vec<&TestKey> = keys.iter().collect();
    let verifier = Verifier::new(testkit::keyset(&refs, testkit::issuer_policy()), 8192);
    let now = now_unix();
    let p = payload(
        "alice",
        now,
        3600,
        json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]),
    );
    let mut group = c.benchmark_group("verify");
    for key in &keys {
        let token = key.sign(&p);
        assert!(verifier.verify(&token, now).is_ok());
        group.bench_function(testkit::alg_name(key.alg), |b| b.iter(|| verifier.verify(black_box(&token), now)));
    }
    group.finish();
}

fn facts_route() -> Route {
    Route {
        template: "GET /users/current/accounts/{accountId}".into(),
        method: http::Method::GET,
        path: "/users/current/accounts/{accountId}".into(),
        app_index: 0,
        application: "trading-account-management-api".into(),
        service: "rest".into(),
        access: RouteAccess::Protected {
            group: "account-management".into(),
            method: "getAccount".into(),
            scopes: vec![],
            roles: vec!["reader".into(), "writer".into()],
            resource: Some(ResourceSpec { entity: "account".into(), param: "accountId".into(), param_index: 0 }),
            tenant: None,
        },
        upstream: None,
    }
}

fn bench_cache_hit(c: &mut Criterion) {
    let key = TestKey::es256("es");
    let verifier = Verifier::new(testkit::keyset(&[&key], testkit::issuer_policy()), 8192);
    let now = now_unix();
    let token = key.sign(&payload(
        "alice",
        now,
        3600,
        json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]),
    ));
    let cache = GrantCache::new(100_000, 300);
    cache.put(&token, Arc::new(verifier.verify(&token, now).expect("valid")), now);
    let revocations = Revocations::default();
    let route = facts_route();
    c.bench_function("cache_hit/verify+revocation+evaluate", |b| {
        b.iter(|| {
            let grant = cache.get(black_box(&token), now).expect("cached");
            assert!(!revocations.rejects(&grant));
            let facts = route.facts(Some("a1"), None).expect("protected");
            matches!(evaluate(&grant.rules, &grant.tenants, &facts), Decision::Allow(_))
        })
    });
}

fn bench_evaluate(c: &mut Criterion) {
    let route = facts_route();
    let facts = route.facts(Some("a1"), None).expect("protected");
    let mut group = c.benchmark_group("evaluate");
    for n in [10usize, 100, 1000] {
        // n-1 rules that miss late (right application, wrong resource), then
        // the one that allows.
        let mut rules: Vec<AccessRule> = (0..n - 1)
            .map(|i| {
                let w = narrowgate::token::WireRule {
                    id: format!("r{i}"),
                    application: "trading-account-management-api".into(),
                    service: "*".into(),
                    method_groups: vec![narrowgate::token::claims::WireMethodGroup {
                        group: "*".into(),
                        methods: vec![narrowgate::token::claims::WireMethod { method: "*".into(), scopes: None }],
                    }],
                    roles: vec!["reader".into()],
                    resources: vec![format!("account:$USER_ID$:other-{i}")],
                };
                w.compile().expect("rule")
            })
            .collect();
        rules.push(AccessRule::everything());
        group.bench_with_input(BenchmarkId::from_parameter(n), &rules, |b, rules| {
            b.iter(|| evaluate(black_box(rules), &[], &facts))
        });
    }
    group.finish();
}

fn bench_route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10usize, 10_000] {
        let routes: Vec<Route> = (0..n)
            .map(|i| {
                let mut r = facts_route();
                r.path = format!("/svc{i}/accounts/{{accountId}}").into();
                r.template = format!("GET {}", r.path).into();
                r
            })
            .collect();
        let router = Router::build(&routes).expect("router");
        let path = format!("/svc{}/accounts/a1", n / 2);
        group.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, path| {
            b.iter(|| router.at(&routes, &http::Method::GET, black_box(path)).expect("match").route)
        });
    }
    group.finish();
}

/// Phases 1–6 of a real gateway built from config/demo.yaml, on a cached token.
fn bench_decide(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::es256("demo");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
    let config = Config::from_yaml(include_str!("../config/demo.yaml"), dir.path()).expect("config");
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::register(&registry).expect("metrics"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let gateway = Gateway::new(config, metrics, Arc::new(Revocations::default()));
    let now = now_unix();
    let token = key.sign(&payload(
        "alice",
        now,
        3600,
        json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]),
    ));
    let req = http::Request::builder()
        .uri("/users/current/accounts/a1")
        .header("host", "gateway.test")
        .header("authorization", format!("Bearer {token}"))
        .header("user-agent", "bench")
        .body(())
        .expect("request");
    assert!(gateway.decide(&req, now).1.is_allow());
    // What every request pays to hold the policy in force for its whole life.
    c.bench_function("runtime/snapshot_per_request", |b| b.iter(|| black_box(gateway.runtime().snapshot())));
    c.bench_function("decide/all_phases_cache_hit", |b| b.iter(|| gateway.decide(black_box(&req), now).1.is_allow()));

    // What a browser sends: a dozen headers, each judged by the client
    // header policy (folded names).
    let mut browser = http::Request::builder().uri("/users/current/accounts/a1");
    for (k, v) in [
        ("host", "gateway.test"),
        ("authorization", &*format!("Bearer {token}")),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("origin", "https://app.example"),
        ("referer", "https://app.example/accounts"),
        ("sec-fetch-mode", "cors"),
        ("x-request-id", "edge-1"),
        ("cookie", "theme=dark"),
    ] {
        browser = browser.header(k, v);
    }
    let browser = browser.body(()).expect("request");
    assert!(gateway.decide(&browser, now).1.is_allow());
    c.bench_function("decide/all_phases_cache_hit_12_headers", |b| {
        b.iter(|| gateway.decide(black_box(&browser), now).1.is_allow())
    });

    // A thousand distinct cached tokens, taken in turn: the cache's working
    // set no longer fits the CPU caches.
    let reqs: Vec<http::Request<()>> = (0..1000)
        .map(|i| {
            let rules = json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]);
            let token = key.sign(&payload(&format!("user-{i}"), now, 3600, rules));
            http::Request::builder()
                .uri("/users/current/accounts/a1")
                .header("host", "gateway.test")
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .expect("request")
        })
        .collect();
    for r in &reqs {
        assert!(gateway.decide(r, now).1.is_allow());
    }
    let mut i = 0;
    c.bench_function("decide/all_phases_cache_hit_1000_tokens", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            gateway.decide(black_box(&reqs[i]), now).1.is_allow()
        })
    });
}

/// Takes every batch and does nothing with it: what tracing costs the
/// request path, not the collector.
#[derive(Debug)]
struct NullExporter;

impl opentelemetry_sdk::trace::SpanExporter for NullExporter {
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// What tracing adds to one request, as the proxy does it: the trace
/// begun (or continued from a `traceparent`), the `traceparent` written
/// for the upstream and, when sampled, the request's span with its
/// attributes and the upstream call's span made and queued for export.
fn bench_trace(c: &mut Criterion) {
    use narrowgate::trace::{ContinueFrom, SpanCounters, TraceProtocol, Tracing, TracingConfig};
    use opentelemetry::KeyValue;
    use opentelemetry::trace::SpanKind;
    let mut group = c.benchmark_group("trace");
    let counter = |n: &str| prometheus::IntCounter::new(n, n).expect("counter");
    for (name, ratio) in [("unsampled", 0.0), ("sampled_1_percent", 0.01), ("sampled_all", 1.0)] {
        let config = TracingConfig {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            protocol: TraceProtocol::Http,
            sample_ratio: ratio,
            continue_from: ContinueFrom::Trusted,
            service_name: "bench".into(),
            queue: 1 << 20,
            batch: 512,
            flush_interval: std::time::Duration::from_millis(100),
            export_timeout: std::time::Duration::from_secs(1),
        };
        let counters = SpanCounters {
            exported: counter("e"),
            queue_full: counter("q"),
            export_failed: counter("f"),
            after_shutdown: counter("s"),
        };
        let tracing = Tracing::with_exporter(&config, NullExporter, counters);
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", http::HeaderValue::from_static("bench"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let began = std::time::Instant::now();
                let trace = tracing.begin(black_box(&headers), false);
                let mut upstream = http::HeaderMap::new();
                let call = trace.next_span();
                upstream.insert(narrowgate::trace::TRACEPARENT, trace.traceparent(call));
                if trace.sampled {
                    let attributes = vec![
                        KeyValue::new("http.request.method", "GET".to_owned()),
                        KeyValue::new("http.response.status_code", 200i64),
                        KeyValue::new("http.route", "GET /users/current/accounts/{accountId}".to_owned()),
                        KeyValue::new("narrowgate.decision", "allow"),
                        KeyValue::new("narrowgate.reason", "allowed"),
                        KeyValue::new("narrowgate.application", "trading-account-management-api".to_owned()),
                        KeyValue::new("narrowgate.token_id", "4c0f2a9c1e6b4d8f".to_owned()),
                        KeyValue::new("narrowgate.rule_id", "trading-account-management-api".to_owned()),
                        KeyValue::new("narrowgate.request_id", "6f2a9c1e-1b".to_owned()),
                    ];
                    let now = std::time::Instant::now();
                    let attrs = vec![KeyValue::new("narrowgate.upstream", "default".to_owned())];
                    if let Some(s) = trace.child(call, "upstream", SpanKind::Client, (began, now), attrs, None) {
                        tracing.export(s);
                    }
                    if let Some(s) = trace.request_span(began, attributes, None) {
                        tracing.export(s);
                    }
                }
                black_box(upstream)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify, bench_cache_hit, bench_evaluate, bench_route_match, bench_decide, bench_trace);
criterion_main!(benches);
