//! An enforce-only gateway that loads its keys from an issuer's JWKS URL,
//! against a real narrowgate issuer publishing `/.well-known/jwks.json`:
//! readiness waits for the keys, a key rotated in on the issuer is picked up
//! by the first request that uses it, and while the issuer is down known
//! keys keep working and new kids get 503 `keys_unavailable`.

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;

use narrowgate::app::{self, Running};
use narrowgate::config::Config;
use narrowgate::token::now_unix;
use narrowgate::token::testkit::{TestKey, payload, rule};
use serde_json::json;
use support::{ConfigDoc, Harness, eventually_async};

/// A narrowgate that only issues: an api listener, signing with `keys`, the
/// last one active.
async fn start_issuer(dir: &std::path::Path, keys: &[&TestKey]) -> Running {
    let mut signing = Vec::new();
    for k in keys {
        std::fs::write(dir.join(format!("{}.pem", k.kid)), &k.private_pem).expect("write key");
        signing.push(json!({ "kid": k.kid, "private_key_file": format!("{}.pem", k.kid) }));
    }
    let active = &keys.last().expect("a key").kid;
    let mut doc = ConfigDoc::parse(include_str!("../../config/minimal.yaml"));
    doc.0.as_object_mut().expect("a mapping").retain(|k, _| k == "applications");
    doc.set("listeners", json!({ "proxy": "127.0.0.1:0", "api": "127.0.0.1:0" }))
        .set("upstream", json!({ "addresses": ["127.0.0.1:9"] }))
        .set(
            "issuers",
            json!([{
                "name": "narrowgate", "issuer": "narrowgate", "algorithms": ["ES256"],
                "active_signing_key": active, "signing_keys": signing,
            }]),
        );
    let path = dir.join("issuer.yaml");
    doc.write(&path);
    app::start(Config::load(&path).expect("issuer config")).await.expect("issuer starts")
}

/// The issuer's JWKS URL as the gateway knows it: a relay on an address of
/// its own to whichever issuer runs now (502 while none does), so the
/// issuer can stop and come back on a new port.
struct Relay {
    url: String,
    target: Arc<Mutex<Option<SocketAddr>>>,
}

impl Relay {
    async fn start() -> Relay {
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let t = target.clone();
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let t = t.clone();
                async move {
                    let Some(addr) = *t.lock().expect("lock") else {
                        return (StatusCode::BAD_GATEWAY, String::new());
                    };
                    match reqwest::get(format!("http://{addr}/.well-known/jwks.json")).await {
                        Ok(r) => (StatusCode::OK, r.text().await.unwrap_or_default()),
                        Err(_) => (StatusCode::BAD_GATEWAY, String::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Relay { url, target }
    }

    /// Relay to `issuer` from now on (`None`: the issuer is down).
    fn point(&self, issuer: Option<&Running>) {
        *self.target.lock().expect("lock") = issuer.map(|i| i.api_addr.expect("the issuer's api listener"));
    }
}

#[tokio::test]
async fn enforce_only_gateway_follows_the_issuers_jwks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start().await;
    let (k1, k2, stranger) = (TestKey::es256("k1"), TestKey::es256("k2"), TestKey::es256("k3"));
    let rules = json!([rule("*", &["*"], &["*:$USER_ID$:*"])]);
    let token =
        |key: &TestKey, sub: &str| format!("Bearer {}", key.sign(&payload(sub, now_unix(), 3600, rules.clone())));
    let url = relay.url.clone();
    let mut h = Harness::start_with(
        |d| {
            d.remove("issuers.0.keys");
            d.set("issuers.0.jwks_url", url.as_str())
                .set("issuers.0.jwks_refresh", "1h")
                .set("issuers.0.jwks_min_refetch", "200ms");
        },
        |_| {},
    )
    .await;
    let path = "/users/current/accounts/a1";

    // No issuer yet: not ready, and a token cannot be decided.
    assert_eq!(h.admin_get("/readyz").await.status, 503);
    let resp = h.get(path, &[("Authorization", &token(&k1, "early"))]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (503, "keys_unavailable"), "{}", resp.body);
    assert!(h.upstream_received().is_empty());

    // The issuer comes up: the gateway loads its keys and becomes ready.
    let issuer = start_issuer(dir.path(), &[&k1]).await;
    relay.point(Some(&issuer));
    eventually_async(Duration::from_secs(5), || async { (h.admin_get("/readyz").await.status == 200).then_some(()) })
        .await;
    let alice = token(&k1, "alice");
    assert_eq!(h.get(path, &[("Authorization", &alice)]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    // A kid nobody publishes is refused as such, not as an outage.
    let resp = h.get(path, &[("Authorization", &token(&stranger, "mallory"))]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "unknown_key"));

    // The issuer rotates k2 in. Past the refetch interval, the first request
    // carrying k2 makes the gateway fetch the keys again, and is allowed.
    relay.point(None);
    issuer.shutdown().await;
    let issuer = start_issuer(dir.path(), &[&k1, &k2]).await;
    relay.point(Some(&issuer));
    h.advance(Duration::from_millis(250));
    let resp = h.get(path, &[("Authorization", &token(&k2, "bob"))]).await;
    assert_eq!(resp.status, 200, "a rotated-in key is picked up on first use: {}", resp.body);
    let got = h.upstream_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-narrowgate-subject"), Some("bob"));

    // The issuer goes away: known keys keep working (tokens never seen
    // before, so not from the cache); a new kid cannot be decided.
    relay.point(None);
    issuer.shutdown().await;
    h.advance(Duration::from_millis(250));
    assert_eq!(h.get(path, &[("Authorization", &token(&k1, "carol"))]).await.status, 200);
    assert_eq!(h.get(path, &[("Authorization", &token(&k2, "dave"))]).await.status, 200);
    let resp = h.get(path, &[("Authorization", &token(&stranger, "erin"))]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (503, "keys_unavailable"));
    assert_eq!(h.upstream_received().len(), 2);
    assert_eq!(h.admin_get("/readyz").await.status, 200, "still ready on the last good keys");

    // A reload that changes the issuer (not its URL) while it is down keeps
    // the last good keys: nothing becomes undecidable.
    h.rewrite(|d| {
        d.set("issuers.0.jwks_refresh", "2h");
    });
    let reloaded = h.running().runtime.reload().await.expect("reloads");
    assert!(matches!(reloaded, narrowgate::runtime::Reloaded::Applied { .. }), "{reloaded:?}");
    assert_eq!(h.get(path, &[("Authorization", &token(&k2, "dave-again"))]).await.status, 200);
    assert_eq!(h.admin_get("/readyz").await.status, 200, "still ready after the reload");
    h.upstream_received();

    // The issuer returns without k1 (withdrawn). Once the gateway fetches
    // again, k1 stops working at once, even for a token it had cached.
    let issuer = start_issuer(dir.path(), &[&k2]).await;
    relay.point(Some(&issuer));
    h.advance(Duration::from_millis(250));
    let resp = h.get(path, &[("Authorization", &token(&stranger, "frank"))]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "unknown_key"), "fetched again, the issuer is back");
    let resp = h.get(path, &[("Authorization", &alice)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "unknown_key"), "a withdrawn key, even cached");
    assert_eq!(h.get(path, &[("Authorization", &token(&k2, "grace"))]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    issuer.shutdown().await;
    h.shutdown().await;
}

/// A JWKS endpoint on loopback serving whatever `doc` holds.
async fn jwks_server(doc: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { doc.lock().expect("lock").clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

fn jwk(key: &TestKey, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key.encoding, key.alg).expect("jwk"))
        .expect("json");
    v["kid"] = key.kid.clone().into();
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

#[tokio::test]
async fn an_unusable_key_in_a_jwks_is_skipped_and_a_key_rotated_in_beside_it_works_at_once() {
    let (k1, k2, enc, ops) = (TestKey::es256("k1"), TestKey::es256("k2"), TestKey::es256("enc"), TestKey::es256("ops"));
    // An RSA key (the issuer allows ES256 only), a key published for
    // encryption, one whose key_ops exclude verify, a key type narrowgate
    // does not know: none of them may spoil k1.
    let rsa = json!({ "kty": "RSA", "kid": "rsa", "alg": "RS256", "e": "AQAB",
        "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xC5u8; 256]) });
    let unknown = json!({ "kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA" });
    let doc = std::sync::Arc::new(std::sync::Mutex::new(
        json!({ "keys": [rsa, jwk(&enc, json!({"use": "enc"})), jwk(&ops, json!({"key_ops": ["sign"]})), unknown, jwk(&k1, json!({}))] })
            .to_string(),
    ));
    let url = jwks_server(doc.clone()).await;
    let h = Harness::start_with(
        |_| {},
        |c| {
            c.jwks_sources = vec![narrowgate::token::JwksSource {
                issuer: 0,
                name: "narrowgate".into(),
                url: url.clone(),
                ca: None,
                algorithms: vec![jsonwebtoken::Algorithm::ES256],
                discovery: false,
                refresh: Duration::from_secs(3600),
                min_refetch: Duration::from_millis(100),
            }]
        },
    )
    .await;
    eventually_async(Duration::from_secs(5), || async { (h.admin_get("/readyz").await.status == 200).then_some(()) })
        .await;
    let rules = json!([rule("*", &["*"], &["*:$USER_ID$:*"])]);
    let token =
        |key: &TestKey, sub: &str| format!("Bearer {}", key.sign(&payload(sub, now_unix(), 3600, rules.clone())));
    let path = "/users/current/accounts/a1";

    let resp = h.get(path, &[("Authorization", &token(&k1, "alice"))]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(h.upstream_received()[0].header("x-narrowgate-subject"), Some("alice"));
    // Keys published for something else never verify, though they sign.
    for (key, who) in [(&enc, "enc"), (&ops, "ops")] {
        let resp = h.get(path, &[("Authorization", &token(key, who))]).await;
        assert_eq!((resp.status, resp.reason().as_str()), (401, "unknown_key"), "{who}");
    }
    assert!(h.upstream_received().is_empty());
    let metrics = h.admin_get("/metrics").await.body;
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"narrowgate_jwks_keys_skipped_total{issuer="narrowgate"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(skipped >= 4, "every unusable key is counted: {metrics}");

    // k2 rotates in beside the same unusable keys: its first token works.
    let mut next: serde_json::Value = serde_json::from_str(&doc.lock().expect("lock")).expect("json");
    next["keys"].as_array_mut().expect("keys").push(jwk(&k2, json!({"use": "sig", "key_ops": ["verify"]})));
    *doc.lock().expect("lock") = next.to_string();
    h.advance(Duration::from_millis(150));
    let resp = h.get(path, &[("Authorization", &token(&k2, "bob"))]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(h.upstream_received()[0].header("x-narrowgate-subject"), Some("bob"));
    h.shutdown().await;
}
