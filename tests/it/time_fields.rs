//! Every time a client sends — in every field of every endpoint and
//! facade — is one checked Unix time from the wire to the store: 0 to
//! 253402207200 (9999-12-30T22:00:00Z). A value out of it (−1, 2^53, 2^63,
//! 2^64−1, a date past 9999 or before 1970, a duration that ends past it)
//! is refused with 400 naming the field and changes nothing in the store;
//! what is accepted is held as sent, across a restart.

use crate::support;

use narrowgate::echo::EchoUpstream;
use narrowgate::token::testkit::{TestKey, payload, rule};
use serde_json::json;
use support::{GatewayProcess, Harness, master, process_config, send_raw, serve_process};

/// The values every numeric time field is tried with, as JSON.
const EDGES: [&str; 5] = ["0", "-1", "9007199254740992", "9223372036854775808", "18446744073709551615"];
/// The last second a time may be (the type says it; never written twice).
const MAX: u64 = narrowgate::time::UnixTime::MAX.secs();

/// A request body with `value` spliced in raw (so 2^64−1 reaches the
/// server as the client wrote it).
fn body(template: &str, value: &str) -> String {
    template.replace("$V", value)
}

/// How many tokens the store lists.
async fn tokens(h: &Harness, auth: &str) -> usize {
    let r = h.api_request("GET", "/v1/tokens?limit=1000", &[("Authorization", auth)]).await;
    r.json()["tokens"].as_array().map_or(0, Vec::len)
}

/// 400 with the field named first in the message (never the value).
fn names(r: &support::Response, field: &str, value: &str) {
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"), "{field} = {value}: {}", r.body);
    let message = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with(field), "{field} = {value}: {message}");
    if value.len() > 2 {
        assert!(!r.body.contains(value), "{field} = {value}: the value is echoed: {}", r.body);
    }
}

#[tokio::test]
async fn the_native_api_refuses_every_time_out_of_range_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    let root = master(&h);
    let before = tokens(&h, &root).await;
    // (endpoint, body with $V, field, whether 0 is accepted)
    let cases: [(&str, &str, &str, bool); 3] = [
        ("/v1/tokens", r#"{"name":"nb-$V","form":"reference","lifetime":"1h","notBefore":$V}"#, "notBefore", true),
        ("/v1/tokens", r#"{"name":"exp-$V","form":"reference","expiresAt":$V}"#, "expiresAt", false),
        ("/v1/revocations", r#"{"jti":"ext-$V","issuer":"narrowgate","expiresAt":$V}"#, "expiresAt", true),
    ];
    let mut accepted_tokens = 0;
    for (path, template, field, zero_ok) in cases {
        for value in EDGES {
            let r = h.api_post(path, &[("Authorization", &root)], &body(template, value)).await;
            if value == "0" && zero_ok {
                assert_eq!(r.status, 201, "{path} {field} = 0: {}", r.body);
                accepted_tokens += usize::from(path == "/v1/tokens");
            } else {
                names(&r, field, value);
            }
        }
        // The last second of the range is a time like any other; past it not.
        let r = h.api_post(path, &[("Authorization", &root)], &body(template, &MAX.to_string())).await;
        assert_eq!(r.status, 201, "{path} {field} = MAX: {}", r.body);
        accepted_tokens += usize::from(path == "/v1/tokens");
        let r = h.api_post(path, &[("Authorization", &root)], &body(template, &(MAX + 1).to_string())).await;
        names(&r, field, &(MAX + 1).to_string());
        // RFC 3339, before 1970 and past 9999.
        for text in ["\"1969-12-31T23:59:59Z\"", "\"+10000-01-01T00:00:00Z\"", "1.5", "true"] {
            let r = h.api_post(path, &[("Authorization", &root)], &body(template, text)).await;
            assert_eq!(r.status, 400, "{path} {field} = {text}: {}", r.body);
        }
    }
    // Durations that would end past the range: refused, named.
    for (path, template, field) in [
        ("/v1/tokens", r#"{"name":"long","form":"reference","lifetime":"$V"}"#, "lifetime"),
        ("/v1/registration-tokens", r#"{"name":"dev","role":"User","ttl":"1h","lifetime":"$V"}"#, "lifetime"),
    ] {
        for value in ["99999999999h", "18446744073709551615s"] {
            let r = h.api_post(path, &[("Authorization", &root)], &body(template, value)).await;
            names(&r, field, value);
        }
    }
    for value in ["-1", "0", "9007199254740992", "1e300"] {
        let template = r#"{"roles":["reader"],"validityInHours":$V}"#;
        let r = h.api_post("/v1/tokens/narrow", &[("Authorization", &root)], &body(template, value)).await;
        names(&r, "validityInHours", value);
    }
    // The store holds the accepted tokens only.
    assert_eq!(tokens(&h, &root).await, before + accepted_tokens);
    h.shutdown().await;
}

#[tokio::test]
async fn the_facades_refuse_every_time_out_of_range_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    let root = master(&h);
    let before = tokens(&h, &root).await;
    // Crafter: `expiresOn` in epoch milliseconds or dates.
    let caller = root.trim_start_matches("Bearer ");
    let target = format!("/api/1/access_token/create.json?accessTokenId={caller}");
    let crafter = |v: &str| {
        let body = format!(r#"{{"id":"c-{}","application":"x","expiresOn":{v}}}"#, v.len());
        let (api, target) = (h.api, target.clone());
        async move {
            send_raw(api, support::raw_body_request("POST", &target, None, "application/json", &body).as_bytes()).await
        }
    };
    let past_9999 = ((MAX + 1) * 1000).to_string();
    for value in
        EDGES.iter().copied().chain([past_9999.as_str(), "\"12/31/10000 00:00:00\"", "\"1969-12-31T23:59:59Z\""])
    {
        let r = crafter(value).await;
        assert_eq!(r.status, 400, "expiresOn = {value}: {}", r.body);
        assert!(r.json()["message"].as_str().unwrap_or_default().starts_with("expiresOn"), "{value}: {}", r.body);
    }
    let r = crafter(&(MAX * 1000).to_string()).await;
    assert_eq!(r.status, 200, "the last millisecond of the range: {}", r.body);
    assert_eq!(r.json()["expiresOn"], json!(MAX * 1000));
    // ProdManager: dates as its clients send them.
    for (field, value) in [
        ("expiration_date", "1969-12-31T23:59"),
        ("expiration_date", "10000-01-01T00:00"),
        ("not_before_date", "1969-12-31T23:59"),
        ("not_before_date", "99999-01-01T00:00"),
    ] {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("name", "time-edge"),
                ("description", "dates at the edge"),
                ("secret", "wrong-secret-for-time"),
                ("permissions", "read"),
                (field, value),
            ])
            .finish();
        let req =
            support::raw_body_request("POST", "/api/token/create", None, "application/x-www-form-urlencoded", &body);
        let r = send_raw(h.api, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{field} = {value}: {}", r.body);
        assert!(r.json()["reasons"][field].is_array(), "{field} = {value} is named: {}", r.body);
    }
    // MetaApi: the validity in the query.
    for value in ["-1", "9007199254740992", "1e300", "NaN"] {
        let target = format!("/users/current/narrow-down-auth-token?validity-in-hours={value}");
        let r = h.api_post(&target, &[("auth-token", caller)], r#"{"applications":["*"]}"#).await;
        assert_eq!(r.status, 400, "validity-in-hours = {value}: {}", r.body);
    }
    assert_eq!(tokens(&h, &root).await, before + 1, "only the token within range was stored");
    h.shutdown().await;
}

/// A gateway process on a store in `dir` with a key the test holds: the
/// same key and store after a restart.
async fn gateway(dir: &std::path::Path, key: &TestKey, echo: std::net::SocketAddr) -> GatewayProcess {
    std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
    std::fs::write(dir.join("keys/demo.pub.pem"), &key.public).expect("key");
    if !dir.join("keys/signer.pem").exists() {
        std::fs::write(dir.join("keys/signer.pem"), &TestKey::es256("signer").private_pem).expect("signer");
    }
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true";
    serve_process(&process_config(dir, "ng", echo, store)).await
}

/// Across a restart: a revocation held until the last second of the range
/// is still in force, a token not valid before then is still not valid,
/// and what was refused was never stored (the old cast kept neither).
#[tokio::test]
async fn what_was_accepted_is_held_across_a_restart_and_what_was_refused_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let key = TestKey::es256("demo");
    let token = |jti: &str| {
        let mut p = payload("ext", narrowgate::token::now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
        p["jti"] = jti.into();
        key.sign(&p)
    };
    let g = gateway(dir.path(), &key, echo.addr).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("token").trim().to_string();
    let post = |g: &GatewayProcess, path: &'static str, body: String| {
        let (g_api, root) = (g.api.expect("api"), root.clone());
        async move {
            let auth = format!("Bearer {root}");
            send_raw(g_api, support::raw_body_request("POST", path, Some(&auth), "application/json", &body).as_bytes())
                .await
        }
    };
    let held =
        post(&g, "/v1/revocations", json!({"jti": "held", "issuer": "narrowgate", "expiresAt": MAX}).to_string()).await;
    assert_eq!(held.status, 201, "{}", held.body);
    for v in ["9223372036854775808", "18446744073709551615"] {
        let r = post(
            &g,
            "/v1/revocations",
            format!(r#"{{"jti":"refused-{}","issuer":"narrowgate","expiresAt":{v}}}"#, v.len()),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let later = post(
        &g,
        "/v1/tokens",
        json!({"name": "later", "form": "reference", "notBefore": MAX, "lifetime": "none"}).to_string(),
    )
    .await;
    assert_eq!(later.status, 201, "{}", later.body);
    let later = later.json()["token"].as_str().expect("secret").to_string();
    drop(g);

    let g = gateway(dir.path(), &key, echo.addr).await;
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &token("held")).await.reason(), "revoked", "held till 9999");
    for v in ["9223372036854775808", "18446744073709551615"] {
        let r = g.call("GET", "/users/current/accounts/a1", &token(&format!("refused-{}", v.len()))).await;
        assert_eq!(r.status, 200, "a refused revocation revoked nothing: {}", r.body);
    }
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &later).await.reason(), "not_yet_valid");
    assert_eq!(echo.received().len(), 2, "only the tokens whose revocation was refused reached the upstream");
}

/// A store written before times were checked — values of 2^63 and more
/// cast into negative numbers — is brought back to the far future they
/// meant when it is opened: revocations held, not-before in the future.
#[tokio::test]
async fn a_store_with_times_written_by_the_old_cast_is_repaired_when_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    // The schema before the repair: every migration but the last.
    let old = dir.path().join("migrations");
    std::fs::create_dir_all(&old).expect("mkdir");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).expect("migrations") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("0006") {
            std::fs::copy(entry.path(), old.join(&name)).expect("copy");
        }
    }
    sqlx::any::install_default_drivers();
    {
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.expect("connect");
        sqlx::migrate::Migrator::new(old.as_path()).await.expect("old migrations").run(&pool).await.expect("migrate");
        for stmt in [
            "INSERT INTO revoked_jtis (jti, issuer, expires_at, revoked_at) VALUES ('wrapped', 'narrowgate', -9223372036854775808, 1)",
            "INSERT INTO tokens (id, name, kind, role, subject, grants, form, not_before, expires_at, created_at) VALUES ('t-late', 'late', 'access', 'user', 's', '[]', 'reference', -1, -2, 1)",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&pool).await.expect("old data");
        }
        pool.close().await;
    }
    let s =
        narrowgate::store::Store::from(narrowgate::store::SqliteStore::open(&path, false).await.expect("upgrade").0);
    let ids = s.revoked_ids(narrowgate::time::UnixTime::clamped(narrowgate::clock::now_unix())).await.expect("ids");
    assert!(ids.iter().any(|(id, exp)| id == "wrapped" && exp.map(|e| e.secs()) == Some(MAX)), "{ids:?}");
    let late = s.token("t-late").await.expect("read").expect("kept");
    assert_eq!((late.not_before.map(|t| t.secs()), late.expires_at.map(|t| t.secs())), (Some(MAX), Some(MAX)));
}
