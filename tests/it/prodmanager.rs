//! The ProdManager facade: tokens created from an application secret with
//! raw urlencoded and multipart requests (as ProdManager's clients send
//! them), `whoami` through the real `prod-manager` Python client, and the
//! tokens enforced and revoked on the proxy like native ones.

use crate::support;

use std::time::Duration;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::{Value, json};
use support::{Harness, send_raw};

const SECRET: &str = "app-secret-for-the-prodmanager-tests";

async fn gateway(dir: &tempfile::TempDir) -> Harness {
    let store = support::sqlite_store(dir.path().join("ng.db"));
    Harness::start_with(
        |_| {},
        move |c| {
            store(c);
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, SECRET.as_bytes());
            for app in c.facades.prodmanager.as_mut().expect("the demo config enables prodmanager") {
                app.secret_sha256.copy_from_slice(digest.as_ref());
            }
        },
    )
    .await
}

async fn post_form(h: &Harness, content_type: &str, body: &[u8]) -> support::Response {
    let len = body.len().to_string();
    let headers =
        [("Host", "t"), ("Content-Type", content_type), ("Content-Length", len.as_str()), ("Connection", "close")];
    // The head as text; the body as given (bytes).
    let mut req = support::raw_request("POST", "/api/token/create", &headers, "").into_bytes();
    req.extend_from_slice(body);
    send_raw(h.api, &req).await
}

async fn urlencoded(h: &Harness, fields: &[(&str, &str)]) -> support::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    post_form(h, "application/x-www-form-urlencoded", body.as_bytes()).await
}

async fn multipart(h: &Harness, fields: &[(&str, &str)]) -> support::Response {
    let boundary = "----narrowgate-test-boundary";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    post_form(h, &format!("multipart/form-data; boundary={boundary}"), body.as_bytes()).await
}

fn claims(token: &str) -> Value {
    let p = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&narrowgate::token::encoding::b64_decode(p).expect("base64url")).expect("json")
}

#[tokio::test]
#[ignore = "needs the real Python clients: scripts/test makes their environment"]
async fn application_secrets_create_tokens_that_the_proxy_enforces_and_revokes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = gateway(&dir).await;
    // Defaults are computed per request, not when the gateway started.
    h.advance(Duration::from_secs(90));
    let before = h.now();
    let reader = urlencoded(
        &h,
        &[("secret", SECRET), ("name", "reporter1"), ("description", "nightly reports"), ("permission", "read")],
    )
    .await;
    assert_eq!((reader.status, reader.header("content-type")), (200, Some("application/json")), "{}", reader.body);
    let reader: String = serde_json::from_str(&reader.body).expect("the JWT as a JSON string literal");
    let c = claims(&reader);
    let nbf = c["nbf"].as_u64().expect("nbf");
    assert!(nbf >= before && nbf <= h.now(), "not_before defaults to the request's time");
    assert_eq!(c["exp"].as_u64(), Some(nbf + 3600), "expiration defaults to an hour later");
    assert_eq!((c["permissions"].clone(), c["description"].as_str()), (json!(["read"]), Some("nightly reports")));
    let mut segments = reader.split('.');
    for part in [segments.next(), segments.next()] {
        assert!(!part.expect("segment").contains('-'), "no '-' in header or payload");
    }

    let writer = multipart(
        &h,
        &[
            ("secret", SECRET),
            ("name", "deployer22"),
            ("description", "deploys accounts"),
            ("permission", "read"),
            ("permission", "write"),
        ],
    )
    .await;
    assert_eq!(writer.status, 200, "{}", writer.body);
    let writer: String = serde_json::from_str(&writer.body).expect("string literal");
    assert_eq!(claims(&writer)["permissions"], json!(["read", "write"]));

    // On the proxy, both sides.
    let path = "/users/current/accounts/a1";
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(h.get(path, &[("Authorization", &bearer(&reader))]).await.status, 200);
    assert_eq!(h.request("PUT", path, &[("Authorization", &bearer(&reader))]).await.status, 403);
    assert_eq!(h.request("PUT", path, &[("Authorization", &bearer(&writer))]).await.status, 200);
    assert_eq!(
        h.get("/metastats/users/current/accounts/a1/metrics", &[("Authorization", &bearer(&writer))]).await.status,
        403,
        "another application"
    );
    let got = h.upstream_received();
    assert_eq!(got.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["GET", "PUT"]);
    assert_eq!(got[0].header("x-narrowgate-subject"), Some("reporter1"));

    // Revoked through the native API like any token.
    let mut m = payload("root", now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
    m["role"] = json!("admin");
    m["master"] = json!(true);
    let master = bearer(&h.sign(&m));
    let listed = h.api_request("GET", "/v1/tokens?name=reporter1", &[("Authorization", &master)]).await.json();
    assert_eq!(listed["tokens"][0]["application"], "trading-account-management-api");
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=reporter1", &[("Authorization", &master)]).await.status, 204);
    let r = h.get(path, &[("Authorization", &bearer(&reader))]).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "revoked"));

    // Explicit dates (UTC): not valid yet.
    let later = urlencoded(
        &h,
        &[
            ("secret", SECRET),
            ("name", "scheduled"),
            ("description", "runs in the future"),
            ("not_before_date", "2030-01-01T10:00"),
            ("expiration_date", "2030-01-01T11:00"),
        ],
    )
    .await;
    let later: String = serde_json::from_str(&later.body).expect("string literal");
    assert_eq!(
        (claims(&later)["nbf"].as_u64(), claims(&later)["exp"].as_u64()),
        (Some(1_893_492_000), Some(1_893_495_600))
    );
    let r = h.get(path, &[("Authorization", &bearer(&later))]).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "not_yet_valid"));

    // whoami through the real Python client.
    let python = std::env::var("NARROWGATE_TEST_PYTHON")
        .expect("NARROWGATE_TEST_PYTHON is not set: scripts/test makes the Python environment and sets it");
    let out = tokio::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/prodmanager_whoami.py"))
        .arg(format!("http://{}", h.api))
        .env("NG_TOKEN", &writer)
        .output()
        .await
        .expect("run the client");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let who: Value = serde_json::from_slice(&out.stdout).expect("json");
    let p = &who["with_token"];
    let wc = claims(&writer);
    assert_eq!((p["aud"].as_str(), p["sub"].as_str()), (Some("deployer22"), Some("deploys accounts")));
    assert_eq!(
        (p["jti"].clone(), p["exp"].clone(), p["nbf"].clone()),
        (wc["jti"].clone(), wc["exp"].clone(), wc["nbf"].clone())
    );
    assert_eq!(
        (p["permissions"].clone(), p["version"].as_i64(), p["iss"].as_str()),
        (json!(["read", "write"]), Some(1), Some("narrowgate"))
    );
    assert_eq!(who["without_token"], Value::Null);
    assert_eq!(who["bad_token"][0], 401);
    assert_eq!(who["bad_token"][1]["message"], "Token validation failed");
    assert!(who["bad_token"][1]["reasons"]["token"].is_array());

    // Any scheme word.
    for scheme in ["Token", "JWT", "bearer"] {
        let r = h.api_request("GET", "/api/token/whoami", &[("Authorization", &format!("{scheme} {writer}"))]).await;
        assert_eq!((r.status, r.json()["playload"]["aud"].as_str()), (200, Some("deployer22")), "{scheme}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = gateway(&dir).await;
    let good = [("secret", SECRET), ("name", "reporter1"), ("description", "nightly reports"), ("permission", "read")];
    let with = |k: &str, v: &str| -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> =
            good.iter().filter(|(n, _)| *n != k).map(|(a, b)| (a.to_string(), b.to_string())).collect();
        if !v.is_empty() {
            f.push((k.to_string(), v.to_string()));
        }
        f
    };
    let cases = [
        (with("secret", ""), "secret", "Missing data for required field."),
        (with("secret", "wrong-secret"), "secret", "Application secret invalid"),
        (with("name", "short"), "name", "Length must be between 8 and 16."),
        (with("name", "a-name-far-too-long"), "name", "Length must be between 8 and 16."),
        (with("description", "too short"), "description", "Length must be between 12 and 32."),
        (with("not_before_date", "2030-01-01 10:00"), "not_before_date", "Not a valid datetime"),
        (with("expiration_date", "2001-01-01T00:00"), "expiration_date", "Must be later"),
        (with("permission", "admin"), "permission", "Unknown permission"),
    ];
    for (fields, field, says) in cases {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let r = urlencoded(&h, &pairs).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
        let body = r.json();
        assert_eq!(body["message"], "Token creation failed");
        let reasons = body["reasons"][field].as_array().unwrap_or_else(|| panic!("{field}: {body}"));
        assert!(reasons.iter().any(|m| m.as_str().is_some_and(|m| m.starts_with(says))), "{field}: {body}");
        assert!(!r.body.contains(SECRET), "the secret is never echoed");
    }
    let json_body = post_form(&h, "application/json", br#"{"secret":"x"}"#).await;
    assert_eq!(json_body.status, 400);
    // A duplicate name is named too; the first stays.
    assert_eq!(urlencoded(&h, &good).await.status, 200);
    let dup = urlencoded(&h, &good).await;
    assert_eq!((dup.status, dup.json()["reasons"]["name"].is_array()), (400, true), "{}", dup.body);
    let store = h.gateway.as_ref().and_then(|g| g.store.clone()).expect("store");
    let all =
        store.list_tokens(&narrowgate::store::TokenFilter { limit: 100, ..Default::default() }).await.expect("list");
    assert_eq!(
        all.iter().filter(|t| t.created_by.as_deref().is_some_and(|c| c.starts_with("prodmanager:"))).count(),
        1
    );
    h.shutdown().await;
}
