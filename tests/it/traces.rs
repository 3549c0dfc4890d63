//! Tracing through a real OTLP receiver (tests/python/otlp_receiver.py,
//! on the OpenTelemetry project's own protobuf definitions), over HTTP and
//! gRPC: the trace's parentage from the client through the gateway to the
//! upstream (what the upstream received, what the receiver got), the
//! spans' attributes, no token in any of them, the trace id in the audit
//! event, sampling at its ratio, and a collector that refuses or is gone
//! costing no request.

use crate::support::python;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{self, Harness, master, sqlite_store};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_receiver.py");

/// The receiver, and the spans it has received (one JSON line each).
struct Receiver {
    http: u16,
    grpc: u16,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<Value>,
    _child: tokio::process::Child,
}

impl Receiver {
    async fn start(mode: &str) -> Receiver {
        let mut child = tokio::process::Command::new(python())
            .args([RECEIVER, "0", "0", mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the OTLP receiver starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let Ok(Ok(Some(line))) = ready else { panic!("the receiver is not ready: {ready:?}") };
        let ports: Vec<u16> = line.split(' ').skip(1).filter_map(|p| p.parse().ok()).collect();
        let [http, grpc] = ports[..] else { panic!("{line}") };
        Receiver { http, grpc, lines, seen: Vec::new(), _child: child }
    }

    /// Every line received until `done` holds of them (10 s at most).
    async fn until(&mut self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => self.seen.push(serde_json::from_str(&line).expect("a JSON line")),
                _ => panic!("the receiver got only {:#?}", self.seen),
            }
        }
        self.seen.clone()
    }

    /// Lines that come within `wait` more.
    async fn settle(&mut self, wait: Duration) -> Vec<Value> {
        while let Ok(Ok(Some(line))) = tokio::time::timeout(wait, self.lines.next_line()).await {
            self.seen.push(serde_json::from_str(&line).expect("a JSON line"));
        }
        self.seen.clone()
    }
}

/// The demo config exporting to `endpoint` over `protocol`, flushing
/// every 50 ms, sampling `ratio` of the traces it begins, auditing to a
/// file.
fn traced(endpoint: String, protocol: &str, ratio: f64) -> impl FnOnce(&mut support::ConfigDoc) {
    let protocol = protocol.to_string();
    move |doc| {
        doc.set(
            "tracing",
            json!({
                "endpoint": endpoint, "protocol": protocol, "sample_ratio": ratio,
                "flush_interval": "50ms", "service_name": "gateway-under-test",
            }),
        );
        doc.set("audit", json!({ "sink": { "file": { "path": "audit.jsonl" } } }));
    }
}

fn reader_token(h: &Harness) -> String {
    h.token(
        "alice",
        json!([{
            "id": "reader-rule", "application": "trading-account-management-api", "service": "rest",
            "methodGroups": [{ "group": "account-management", "methods": [{ "method": "*" }] }],
            "roles": ["reader"], "resources": ["account:$USER_ID$:a1"]
        }]),
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn span<'v>(spans: &'v [Value], name: &str) -> &'v Value {
    spans.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
}

/// Every attribute value of every span, as text.
fn attribute_text(spans: &[Value]) -> String {
    spans.iter().map(|s| format!("{} {} {}", s["attributes"], s["resource"], s["status"])).collect()
}

#[tokio::test]
async fn a_trusted_callers_trace_runs_through_the_gateway_to_the_upstream_over_http() {
    let mut r = Receiver::start("").await;
    let endpoint = format!("http://127.0.0.1:{}", r.http);
    let h = Harness::start_with(
        |doc| {
            traced(endpoint, "http", 0.0)(doc);
            doc.set("trusted_proxies", json!(["127.0.0.1/32"]));
        },
        |_| {},
    )
    .await;
    let token = reader_token(&h);
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let auth = format!("Bearer {token}");
    let resp = h
        .get(
            "/users/current/accounts/a1",
            &[("Authorization", &auth), ("traceparent", &parent), ("tracestate", "vendor=opaque")],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);

    // The upstream is in the client's trace, below the gateway's span of
    // the call, and gets the client's trace state.
    let got = h.upstream_received();
    let up = got[0].header("traceparent").expect("a traceparent upstream").to_string();
    let parts: Vec<&str> = up.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", CLIENT_TRACE, "01"), "{up}");
    assert_ne!(parts[2], CLIENT_SPAN, "the gateway's span is the upstream's parent");
    assert_eq!(got[0].header("tracestate"), Some("vendor=opaque"));

    let spans = r.until(|s| s.len() >= 3).await;
    let request = span(&spans, "request");
    let upstream = span(&spans, "upstream");
    let verify = span(&spans, "verify token");
    assert!(spans.iter().all(|s| s["trace_id"] == CLIENT_TRACE && s["transport"] == "http"));
    assert_eq!(request["parent_span_id"], CLIENT_SPAN, "continued from the client's span");
    assert_eq!(upstream["span_id"], parts[2], "the span the upstream was told of");
    assert_eq!(upstream["parent_span_id"], request["span_id"]);
    assert_eq!(verify["parent_span_id"], request["span_id"], "a cache miss: the token was verified");
    // SERVER, CLIENT, INTERNAL (the proto's numbers).
    assert_eq!(
        (request["kind"].as_u64(), upstream["kind"].as_u64(), verify["kind"].as_u64()),
        (Some(2), Some(3), Some(1))
    );
    let a = &request["attributes"];
    assert_eq!(a["narrowgate.decision"], "allow");
    assert_eq!(a["narrowgate.reason"], "allowed");
    assert_eq!(a["http.route"], "GET /users/current/accounts/{accountId}");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["narrowgate.application"], "trading-account-management-api");
    assert_eq!(a["narrowgate.rule_id"], "reader-rule");
    assert!(a["narrowgate.token_id"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(a["narrowgate.request_id"].as_str(), resp.header("x-request-id"));
    assert_eq!(request["resource"]["service.name"], "gateway-under-test");
    // The spans nest in time.
    let (rs, re) = (request["start"].as_u64().expect("start"), request["end"].as_u64().expect("end"));
    let (us, ue) = (upstream["start"].as_u64().expect("start"), upstream["end"].as_u64().expect("end"));
    assert!(rs <= us && us <= ue && ue <= re, "request {rs}–{re}, upstream {us}–{ue}");

    // A denial is a span of its trace too; nothing reaches the upstream.
    let denied = h.get("/users/current/accounts/a1", &[("traceparent", &parent)]).await;
    assert_eq!(denied.status, 401);
    assert!(h.upstream_received().is_empty());
    let spans = r.until(|s| s.iter().any(|s| s["attributes"]["narrowgate.decision"] == "deny")).await;
    let deny = spans.iter().find(|s| s["attributes"]["narrowgate.decision"] == "deny").expect("the denial");
    assert_eq!(deny["attributes"]["narrowgate.reason"], "missing_token");
    assert_eq!(deny["status"]["code"], 0, "a refusal is no server error");

    // No token, nor any part of it, in any span.
    let text = attribute_text(&r.settle(Duration::from_millis(300)).await);
    for part in token.split('.') {
        assert!(!text.contains(part), "a part of the token is in a span");
    }

    // The trace id is in the audit event of the same request.
    let audit = support::eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(h.dir().join("audit.jsonl")).ok()?;
        let events: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (events.len() >= 2).then_some(events)
    })
    .await;
    assert!(audit.iter().all(|e| e["trace_id"] == CLIENT_TRACE), "{audit:#?}");
}

#[tokio::test]
async fn an_untrusted_callers_trace_is_linked_not_continued_and_sampled_at_the_ratio() {
    let mut r = Receiver::start("").await;
    let endpoint = format!("http://127.0.0.1:{}", r.http);
    let h = Harness::start_with(traced(endpoint, "http", 0.2), |_| {}).await;
    let auth = format!("Bearer {}", reader_token(&h));

    // Not continued: each request begins a trace of its own, sampled at
    // the ratio, and linked to the one the client named.
    let n = 500;
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    for _ in 0..n {
        let resp = h
            .get(
                "/users/current/accounts/a1",
                &[("Authorization", &auth), ("traceparent", &parent), ("tracestate", "vendor=opaque")],
            )
            .await;
        assert_eq!(resp.status, 200);
    }
    let got = h.upstream_received();
    assert_eq!(got.len(), n);
    let mut sampled_upstream = 0;
    for g in &got {
        let tp = g.header("traceparent").expect("a traceparent upstream");
        assert!(!tp.contains(CLIENT_TRACE), "an untrusted client's trace is not continued: {tp}");
        assert_eq!(g.header("tracestate"), None, "nor its trace state passed on");
        sampled_upstream += usize::from(tp.ends_with("-01"));
    }
    // 100 expected; 5 standard deviations either way.
    assert!((55..=145).contains(&sampled_upstream), "{sampled_upstream} of {n} sampled at 0.2");
    r.until(|s| s.iter().filter(|s| s["name"] == "request").count() >= sampled_upstream).await;
    let spans = r.settle(Duration::from_millis(500)).await;
    let requests: Vec<&Value> = spans.iter().filter(|s| s["name"] == "request").collect();
    assert_eq!(requests.len(), sampled_upstream, "exactly the requests forwarded as sampled are exported");
    for s in &requests {
        assert_eq!(s["parent_span_id"], "", "a trace of its own");
        assert_eq!(
            s["links"],
            json!([{ "trace_id": CLIENT_TRACE, "span_id": CLIENT_SPAN }]),
            "linked to the named one"
        );
    }
}

#[tokio::test]
async fn token_service_operations_are_spans_with_their_store_writes_over_grpc() {
    let mut r = Receiver::start("").await;
    let endpoint = format!("http://127.0.0.1:{}", r.grpc);
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(
        |doc| {
            traced(endpoint, "grpc", 1.0)(doc);
        },
        sqlite_store(dir.path().join("tokens.db")),
    )
    .await;
    let body = json!({
        "name": "traced", "application": "metastats-api", "lifetime": "1h",
        "accessRules": [{"application": "trading-account-management-api", "service": "rest",
            "methodGroups": [{"group": "account-management", "methods": [{"method": "*"}]}],
            "roles": ["reader"], "resources": [{"entity": "*", "id": "*"}]}]
    })
    .to_string();
    let minted = h.api_post("/v1/tokens", &[("Authorization", &master(&h))], &body).await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    let id = minted.json()["id"].as_str().expect("id").to_string();
    // Narrowed by its holder: a span of its own, with its store write.
    let holder = format!("Bearer {}", minted.json()["token"].as_str().expect("token"));
    let narrow = r#"{"applications":["trading-account-management-api"],"roles":["reader"],"resources":[{"entity":"account","id":"a1"}],"validityInHours":0.5}"#;
    let narrowed = h.api_post("/v1/tokens/narrow", &[("Authorization", &holder)], narrow).await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    let revoked = h.api_request("DELETE", &format!("/v1/tokens/{id}"), &[("Authorization", &master(&h))]).await;
    assert!(revoked.status < 300, "{}", revoked.body);

    r.until(|s| s.iter().filter(|s| s["name"] == "store.write").count() >= 3).await;
    let spans = r.settle(Duration::from_millis(300)).await;
    assert!(spans.iter().all(|s| s["transport"] == "grpc"));
    let narrow_span = span(&spans, "token.narrow");
    assert!(narrow_span["attributes"]["narrowgate.token_id"].as_str().is_some_and(|t| !t.is_empty() && t != id));
    let narrow_request = spans.iter().find(|s| s["span_id"] == narrow_span["parent_span_id"]).expect("its request");
    assert_eq!(narrow_request["attributes"]["http.route"], "/v1/tokens/narrow");
    assert!(
        spans.iter().any(|s| s["name"] == "store.write" && s["parent_span_id"] == narrow_span["span_id"]),
        "the narrowed token's store write"
    );
    let child = narrowed.json()["token"].as_str().expect("the narrowed token").to_string();
    for part in child.split('.') {
        assert!(!attribute_text(&spans).contains(part), "a part of the narrowed token is in a span");
    }
    for (op, method) in [("token.create", "POST"), ("token.revoke", "DELETE")] {
        let op_span = span(&spans, op);
        assert_eq!(op_span["attributes"]["narrowgate.token_id"], id.as_str());
        let request = spans
            .iter()
            .find(|s| s["span_id"] == op_span["parent_span_id"])
            .unwrap_or_else(|| panic!("{op}'s parent in {spans:#?}"));
        assert_eq!(request["attributes"]["http.request.method"], method);
        assert_eq!(request["kind"], 2);
        let write = spans
            .iter()
            .find(|s| s["name"] == "store.write" && s["parent_span_id"] == op_span["span_id"])
            .unwrap_or_else(|| panic!("{op}'s store write in {spans:#?}"));
        assert_eq!(write["trace_id"], op_span["trace_id"]);
    }
    let created = minted.json()["token"].as_str().expect("the minted token").to_string();
    let text = attribute_text(&spans);
    for part in created.split('.') {
        assert!(!text.contains(part), "a part of the minted token is in a span");
    }
}

#[tokio::test]
async fn a_collector_that_refuses_or_is_gone_costs_no_request_and_is_counted() {
    for gone in [false, true] {
        let mut r = Receiver::start("refuse").await;
        // Port 1: nothing listens there.
        let port = if gone { 1 } else { r.http };
        let h = Harness::start_with(traced(format!("http://127.0.0.1:{port}"), "http", 1.0), |_| {}).await;
        let auth = format!("Bearer {}", reader_token(&h));
        for _ in 0..20 {
            assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
        }
        let series = r#"narrowgate_trace_spans_dropped_total{cause="export_failed"}"#;
        let failed = support::eventually_async(Duration::from_secs(10), || async {
            support::metric(h.admin, series).await.filter(|n| *n >= 40.0)
        })
        .await;
        assert!(failed >= 40.0, "{failed}");
        assert_eq!(support::metric(h.admin, "narrowgate_trace_spans_exported_total").await, Some(0.0));
        if !gone {
            // The receiver saw the exports (the metric alone would also
            // count exports that never reached it); it accepted none.
            let seen = r.until(|s| !s.is_empty()).await;
            assert!(seen.iter().all(|l| l["refused"].as_u64().is_some_and(|n| n > 0)), "{seen:?}");
        }
        h.shutdown().await;
    }
}

#[test]
fn a_broken_tracing_section_is_a_config_error_with_its_path() {
    let errors = support::config_errors(&|doc| {
        doc.set(
            "tracing",
            json!({
                "endpoint": "ftp://collector", "protocol": "grpc", "sample_ratio": 1.5,
                "queue": 0, "batch": 10, "flush_interval": "0", "export_timeout": "soon", "colour": "red"
            }),
        );
    });
    assert!(errors.contains("tracing"), "{errors}");
    // Each field on its own: every problem named by its path.
    for (field, value, path) in [
        ("endpoint", json!("ftp://collector"), "tracing.endpoint"),
        ("endpoint", json!("not a url"), "tracing.endpoint"),
        ("sample_ratio", json!(1.5), "tracing.sample_ratio"),
        ("sample_ratio", json!(-0.1), "tracing.sample_ratio"),
        ("queue", json!(0), "tracing.queue"),
        ("batch", json!(5000), "tracing.batch"),
        ("flush_interval", json!("0"), "tracing.flush_interval"),
        ("export_timeout", json!("soon"), "tracing.export_timeout"),
        ("protocol", json!("carrier-pigeon"), "tracing.protocol"),
    ] {
        let errors = support::config_errors(&|doc| {
            doc.set("tracing", json!({ "endpoint": "http://collector:4318" }));
            doc.set(&format!("tracing.{field}"), value.clone());
        });
        assert!(errors.lines().any(|l| l.starts_with(path)), "{field}={value}: {errors}");
    }
    // gRPC to an https endpoint is refused (plaintext only).
    let errors = support::config_errors(&|doc| {
        doc.set("tracing", json!({ "endpoint": "https://collector:4317", "protocol": "grpc" }));
    });
    assert!(errors.contains("tracing.endpoint: OTLP over gRPC is plaintext"), "{errors}");
    // The least that works.
    assert_eq!(
        support::config_errors(&|doc| {
            doc.set("tracing", json!({ "endpoint": "http://collector:4318" }));
        }),
        ""
    );
}

/// The real binary, its log in JSON, exporting over gRPC: the request's
/// log line carries the trace id, the same the span is exported under;
/// and at shutdown (SIGTERM) what is queued is still exported.
#[tokio::test]
async fn the_binarys_log_line_names_the_trace_and_its_spans_are_exported_at_shutdown() {
    let mut r = Receiver::start("").await;
    let echo = narrowgate::echo::EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let dir = tempfile::tempdir().expect("tempdir");
    // A long flush interval: only the shutdown sends the spans.
    let extra = format!(
        "log: {{ format: json }}\ntrusted_proxies: [127.0.0.1/32]\n\
         tracing: {{ endpoint: \"http://127.0.0.1:{}\", protocol: grpc, flush_interval: 1h }}\n",
        r.grpc
    );
    let config = support::process_config(dir.path(), "traced", echo.addr, &extra);
    let mut g = support::serve_process(&config).await;
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let denied = support::send_raw(
        g.proxy,
        support::build_request("GET", "/users/current/accounts/a1", &[("traceparent", &parent)]).as_bytes(),
    )
    .await;
    assert_eq!(denied.status, 401);
    let log = std::fs::read_to_string(config.with_extension("err")).unwrap_or_default();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "denied" || l["message"] == "denied")
        .unwrap_or_else(|| panic!("no denied line in {log}"));
    let fields = if line.get("fields").is_some() { &line["fields"] } else { &line };
    assert_eq!(fields["trace_id"], CLIENT_TRACE, "{line}");
    assert!(r.settle(Duration::from_millis(300)).await.is_empty(), "nothing exported before the flush");

    // SIGTERM: drained, and the queued span exported on the way out.
    let pid = i32::try_from(g.child.id()).expect("pid");
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let spans = r.until(|s| s.iter().any(|s| s["name"] == "request")).await;
    let request = span(&spans, "request");
    assert_eq!((request["trace_id"].as_str(), request["transport"].as_str()), (Some(CLIENT_TRACE), Some("grpc")));
    assert_eq!(request["attributes"]["narrowgate.reason"], "missing_token");
    let _ = g.child.wait();
}
