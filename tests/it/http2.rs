//! HTTP/2 downstream, against real clients: curl over TLS (ALPN `h2`) and
//! with prior knowledge on a plaintext listener that speaks h2c, several
//! streams on one connection each decided on its own; and hostile HTTP/2
//! built frame by frame with Python's `h2` — connection-specific headers,
//! a `:path` that canonicalizes differently than it looks, `:authority`
//! and `Host` that disagree, rapid reset, a CONTINUATION flood, oversized
//! header lists — each refused while a well-behaved client on another
//! connection is served. What the client got and what the upstream
//! received.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Harness, web_rules};
use crate::tls::{Pki, run, tls_harness, write_pair};

/// curl with `args`, printing `%{http_version} %{http_code}` after each
/// response's body.
async fn curl(args: &[&str]) -> (String, String) {
    let out =
        run(tokio::process::Command::new("curl").args(["-sS", "-w", " %{http_version} %{http_code}\n"]).args(args))
            .await;
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn over_tls_a_client_that_offers_h2_speaks_it_and_each_stream_is_decided_on_its_own() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "gateway", &pki.ca.server(&["gateway.test"]));
    let h = tls_harness(&pki, &["gateway"], "off", |_| {}).await;
    let auth = format!("Authorization: Bearer {}", h.token("web", web_rules()));
    let port = h.proxy.port();
    let base = format!("https://gateway.test:{port}");
    let (ca, resolve) = (pki.s("ca.pem"), format!("gateway.test:{port}:127.0.0.1"));

    let tls = |version: &'static str| vec![version, "--cacert", &ca, "--resolve", &resolve, "-H", &auth];
    // One connection, three streams: allowed, denied by the rules, no route.
    let urls = ["/users/current/accounts/a1", "/users/current/accounts/a2", "/nowhere"].map(|p| format!("{base}{p}"));
    let (out, err) = curl(&[tls("--http2"), urls.iter().map(String::as_str).collect()].concat()).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}{err}");
    assert!(lines[0].ends_with(" 2 200"), "{out}");
    assert!(lines[1].contains("resource_not_allowed") && lines[1].ends_with(" 2 403"), "{out}");
    assert!(lines[2].contains("no_matching_route") && lines[2].ends_with(" 2 403"), "{out}");
    assert!(err.is_empty() || !err.contains("rror"), "{err}");

    // The upstream got the allowed one alone, over HTTP/1.1, with the
    // authority as its Host and the gateway's identity headers.
    let got = h.upstream_received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].target, "/users/current/accounts/a1");
    assert_eq!(got[0].header("host"), Some(format!("gateway.test:{port}").as_str()));
    assert_eq!(got[0].header("x-narrowgate-subject"), Some("web"));
    assert_eq!(got[0].header("authorization"), None, "the credential is not forwarded");
    assert_eq!(got[0].header("x-forwarded-proto"), Some("https"));

    // A client that offers HTTP/1.1 alone still gets it.
    let (out, _) = curl(&[tls("--http1.1"), vec![urls[0].as_str()]].concat()).await;
    assert!(out.ends_with(" 1.1 200\n"), "{out}");
    h.shutdown().await;
}

#[tokio::test]
async fn h2c_with_prior_knowledge_only_where_configured_and_upgrade_h2c_stays_refused() {
    let h = Harness::start_with(h2c, |_| {}).await;
    let auth = format!("Authorization: Bearer {}", h.token("web", web_rules()));
    let url = format!("http://{}/users/current/accounts/a1", h.proxy);
    let (out, err) = curl(&["--http2-prior-knowledge", "-H", &auth, &url]).await;
    assert!(out.ends_with(" 2 200\n"), "{out}{err}");
    let (out, _) = curl(&["--http2-prior-knowledge", &url]).await;
    assert!(out.contains("missing_token") && out.ends_with(" 2 401\n"), "{out}");
    // HTTP/1.1 on the same listener, as before.
    let (out, _) = curl(&["--http1.1", "-H", &auth, &url]).await;
    assert!(out.ends_with(" 1.1 200\n"), "{out}");
    // `Upgrade: h2c` (what `curl --http2` sends over plaintext) is refused:
    // no protocol switch past the decision.
    let (out, _) = curl(&["--http2", "-H", &auth, &url]).await;
    assert!(out.contains("upgrade_not_allowed") && out.ends_with(" 1.1 400\n"), "{out}");
    assert_eq!(h.upstream_received().len(), 2);
    h.shutdown().await;

    // Off by default: the preface is not HTTP/1.1, and nothing is sent on.
    let h = Harness::start().await;
    let (out, _) = curl(&["--http2-prior-knowledge", &format!("http://{}/health", h.proxy)]).await;
    assert!(!out.ends_with(" 2 200\n"), "{out}");
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

/// The demo config with prior-knowledge HTTP/2 on the plaintext listeners.
fn h2c(doc: &mut crate::support::ConfigDoc) {
    doc.set("server.http2", json!({ "cleartext": true }));
}

/// `tests/python/h2_hostile.py CASE` against `h`'s proxy (plaintext, h2c on).
async fn hostile(h: &Harness, case: &str, token: &str) -> Value {
    let python = std::env::var("NARROWGATE_TEST_PYTHON")
        .expect("NARROWGATE_TEST_PYTHON is not set: scripts/test makes the Python environment and sets it");
    let out = run(tokio::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/h2_hostile.py"))
        .args(["127.0.0.1", &h.proxy.port().to_string(), case, token]))
    .await;
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{case}: {e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// The reason code of a JSON error body.
fn reason(stream: &Value) -> String {
    let body: Value = serde_json::from_str(stream["body"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
    body["error"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
#[ignore = "needs the Python environment (h2): scripts/test makes it"]
async fn hostile_http2_is_refused_and_a_well_behaved_client_is_served_meanwhile() {
    let h = Harness::start_with(h2c, |_| {}).await;
    let token = h.token("web", web_rules());

    // The frames work: an allowed stream.
    let out = hostile(&h, "allowed", &token).await;
    assert_eq!(out["stream"]["status"], 200, "{out}");
    // A `:path` whose dot segments lead elsewhere than it reads: decided
    // (and forwarded) as where it leads.
    let out = hostile(&h, "dot-segments", &token).await;
    assert_eq!(out["stream"]["status"], 200, "{out}");
    // An encoded slash is ambiguous: refused.
    let out = hostile(&h, "encoded-slash", &token).await;
    assert_eq!(
        (out["stream"]["status"].as_u64(), reason(&out["stream"])),
        (Some(400), "ambiguous_path".into()),
        "{out}"
    );
    // `:authority` and a `Host` naming another: ambiguous, refused.
    let out = hostile(&h, "authority-and-host", &token).await;
    assert_eq!((out["stream"]["status"].as_u64(), reason(&out["stream"])), (Some(400), "bad_request".into()), "{out}");
    // No `:authority`, a `Host`: as over HTTP/1.1.
    let out = hostile(&h, "host-only", &token).await;
    assert_eq!(out["stream"]["status"], 200, "{out}");
    let got = h.upstream_received();
    assert_eq!(got.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), vec!["/users/current/accounts/a1"; 3]);
    h.echo.clear();

    // Malformed requests (RFC 9113 §8.2): the stream is reset, or the
    // connection closed; never answered, never forwarded.
    for case in ["connection-header", "transfer-encoding", "upper-case-name", "unknown-pseudo"] {
        let out = hostile(&h, case, &token).await;
        assert!(out["stream"].get("status").is_none(), "{case}: {out}");
        assert!(
            out["stream"].get("reset").is_some() || !out["goaway"].is_null() || out["closed"] == true,
            "{case}: {out}"
        );
    }
    // A header list over the limit: refused (431, the stream reset, or
    // the connection closed: the h2 crate stops decoding it).
    let out = hostile(&h, "oversized-headers", &token).await;
    assert!(
        out["stream"]["status"] == 431 || out["stream"].get("reset").is_some() || !out["goaway"].is_null(),
        "{out}"
    );
    assert!(h.upstream_received().is_empty(), "{:?}", h.upstream_received());

    // Rapid reset and a CONTINUATION flood, while a well-behaved client
    // keeps being served on its own connection.
    let auth = format!("Bearer {token}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = {
        let (proxy, stop, auth) = (h.proxy, stop.clone(), auth.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req =
                    crate::support::build_request("GET", "/users/current/accounts/a1", &[("Authorization", &auth)]);
                let resp =
                    tokio::time::timeout(Duration::from_secs(5), crate::support::send_raw(proxy, req.as_bytes()))
                        .await
                        .expect("the well-behaved client is answered within 5 s");
                assert_eq!(resp.status, 200);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    // Streams cancelled before the gateway took them: the h2 crate's
    // bound (20 pending) answers with GOAWAY ENHANCE_YOUR_CALM.
    let out = hostile(&h, "rapid-reset", &token).await;
    let opened = out["opened"].as_u64().unwrap_or(u64::MAX);
    assert!(out["closed"] == true || !out["goaway"].is_null(), "{out}");
    assert!(opened < 1_000, "closed long before the script's 100,000 streams: {out}");
    // Streams cancelled while the gateway waits for the upstream's answer:
    // closed once they reach `max_cancelled_streams` (100).
    let out = hostile(&h, "reset-after-accept", &token).await;
    let opened = out["opened"].as_u64().unwrap_or(u64::MAX);
    assert!(out["closed"] == true || out["goaway"] == 0, "GOAWAY (NO_ERROR), then closed: {out}");
    // (A few more may be sent before the client reads the GOAWAY.)
    assert!((100..=150).contains(&opened), "{out}");
    let received = h.upstream_received();
    let forwarded = received.iter().filter(|r| r.header("x-echo-delay-ms").is_some()).count();
    assert!(forwarded <= 150, "{forwarded} forwarded");
    let out = hostile(&h, "continuation-flood", &token).await;
    assert!(out["closed"] == true || !out["goaway"].is_null(), "{out}");
    assert!(out["frames"].as_u64().unwrap_or(u64::MAX) < 1_000, "{out}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = served.await.expect("the well-behaved client");
    assert!(n > 0);
    // The well-behaved client's requests all reached the upstream.
    let theirs = received.len() - forwarded + h.upstream_received().len();
    assert!(theirs >= n, "{theirs} < {n}");
    h.shutdown().await;
}
