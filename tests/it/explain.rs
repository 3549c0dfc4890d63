//! Why was I denied: the admin listener's `POST /explain` and the offline
//! `narrowgate explain` give the gateway's own decision and what led there,
//! and never repeat the token.

use crate::support;

use narrowgate::token::testkit::rule;
use serde_json::{Value, json};
use support::{BIN, Harness, send_raw};

async fn explain(h: &Harness, question: Value) -> (u16, Value) {
    let body = question.to_string();
    let req = support::raw_body_request("POST", "/explain", None, "application/json", &body);
    let r = send_raw(h.admin, req.as_bytes()).await;
    (r.status, r.json())
}

#[tokio::test]
async fn the_admin_listener_explains_a_denial_dimension_by_dimension() {
    let h = Harness::start().await;
    let token = h.token(
        "web",
        json!([
            rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"]),
            rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
        ]),
    );
    let (status, e) =
        explain(&h, json!({ "method": "GET", "path": "/users/current/accounts/a2?x=1", "token": token })).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(
        (e["decision"].as_str(), e["reason"].as_str(), e["status"].as_u64()),
        (Some("deny"), Some("resource_not_allowed"), Some(403))
    );
    assert_eq!(e["canonical_path"], "/users/current/accounts/a2");
    assert_eq!(e["route"]["template"], "GET /users/current/accounts/{accountId}");
    assert_eq!(e["route"]["resource"], json!(["account", "a2"]));
    assert_eq!(e["credential"], "bearer");
    assert_eq!(
        (e["verification"]["result"].as_str(), e["verification"]["subject"].as_str()),
        (Some("ok"), Some("web"))
    );
    assert_eq!(
        e["rules"],
        json!([
            { "id": "mt-manager-api", "result": "fails on application", "dimension": "application", "miss": "not_granted" },
            { "id": "trading-account-management-api", "result": "fails on resource", "dimension": "resource", "miss": "not_granted" },
        ])
    );
    assert!(!e.to_string().contains(&token), "the token is never repeated");
    // The proxy agrees.
    let proxied = h.get("/users/current/accounts/a2?x=1", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!((proxied.status, proxied.reason()), (403, "resource_not_allowed".to_string()));

    // A role and a scope; a credential in MetaApi's header.
    let (_, e) = explain(
        &h,
        json!({ "method": "POST", "path": "/mt-manager/accounts/a1/trade", "headers": [["auth-token", token]] }),
    )
    .await;
    assert_eq!(e["credential"], "header auth-token");
    assert_eq!(e["reason"], "insufficient_role");
    assert_eq!(e["rules"][0]["result"], "fails on role");
    assert_eq!(e["route"]["scopes"], json!(["dealing"]));

    // No route: the nearest ones; no token: what is missing.
    let (_, e) = explain(&h, json!({ "method": "DELETE", "path": "/users/current/accounts" })).await;
    assert_eq!((e["reason"].as_str(), e["status"].as_u64()), (Some("no_matching_route"), Some(403)));
    let nearest: Vec<&str> =
        e["nearest_routes"].as_array().expect("nearest").iter().filter_map(Value::as_str).collect();
    assert!(
        nearest.contains(&"GET /users/current/accounts") && nearest.contains(&"POST /users/current/accounts"),
        "{nearest:?}"
    );
    let (_, e) = explain(&h, json!({ "method": "GET", "path": "/users/current/accounts/a1" })).await;
    assert_eq!((e["reason"].as_str(), e["credential"].as_str()), (Some("missing_token"), Some("none")));
    let (_, e) = explain(&h, json!({ "method": "GET", "path": "/users/current/%2e%2e/%2fetc" })).await;
    assert_eq!(e["decision"], "deny");
    assert!(e["path_refused"].is_string() && e.get("canonical_path").is_none(), "{e}");
    let (status, _) = explain(&h, json!({ "path": 1 })).await;
    assert_eq!(status, 400);
    h.shutdown().await;
}

#[test]
fn narrowgate_explain_answers_offline_from_a_config_file() {
    let (_dir, key, config) = demo_config(|_| {});
    let now = narrowgate::token::now_unix();
    let token = key.sign(&narrowgate::token::testkit::payload(
        "web",
        now,
        3600,
        json!([rule("trading-account-management-api", &["writer"], &["account:$USER_ID$:*"])]),
    ));
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["explain", "--config", config.to_str().expect("utf8"), "--token", &token])
            .args(extra)
            .output()
            .expect("run explain");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["DELETE", "/users/current/accounts/a7"]);
    assert!(text.starts_with("DELETE /users/current/accounts/a7 → allow 200 allowed"), "{text}");
    assert!(text.contains("rule trading-account-management-api: allows"), "{text}");
    let text = run(&["GET", "/metastats/users/current/accounts/a7/metrics"]);
    assert!(text.contains("→ deny 403 application_not_allowed"), "{text}");
    assert!(text.contains("fails on application"), "{text}");
    let json: Value = serde_json::from_str(&run(&["--json", "GET", "/health"])).expect("JSON");
    assert_eq!((json["reason"].as_str(), json["route"]["public"].as_bool()), (Some("public"), Some(true)));
    assert!(!text.contains(&token));
}

/// config/demo.yaml in a directory of its own with a key of the test's
/// (kid `demo`), edited by `edit`: the directory, the key, the file.
fn demo_config(
    edit: impl FnOnce(&mut support::ConfigDoc),
) -> (tempfile::TempDir, narrowgate::token::testkit::TestKey, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = narrowgate::token::testkit::TestKey::es256("demo");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
    let mut doc = support::ConfigDoc::demo();
    edit(&mut doc);
    let config = dir.path().join("demo.yaml");
    doc.write(&config);
    (dir, key, config)
}

/// A file only its owner may read, as the config wants secrets and stores.
fn private_file(path: &std::path::Path, contents: &str) {
    std::fs::write(path, contents).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// `narrowgate explain --config FILE ARGS…`: whether it succeeded, its
/// stdout and its stderr.
fn explain_cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(["explain", "--config", config.to_str().expect("utf8")])
        .args(args)
        .output()
        .expect("run narrowgate explain");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The offline answer as JSON, and its text form, for a request with
/// these credential headers.
fn offline(config: &std::path::Path, method: &str, target: &str, headers: &[(&str, String)]) -> (Value, String) {
    let mut args: Vec<String> = Vec::new();
    for (k, v) in headers {
        args.extend(["-H".to_string(), format!("{k}: {v}")]);
    }
    args.extend([method.to_string(), target.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text, err) = explain_cli(config, &args);
    assert!(ok, "{method} {target}: {err}");
    assert!(err.is_empty(), "{method} {target}: stderr {err}");
    let json_args: Vec<&str> = ["--json"].into_iter().chain(args.iter().copied()).collect();
    let (ok, json, err) = explain_cli(config, &json_args);
    assert!(ok, "{method} {target}: {err}");
    (serde_json::from_str(&json).expect("explain --json prints JSON"), text)
}

/// The key test of issue 20 item 11: every case of the proxy matrix, sent
/// to the live gateway and explained offline by the CLI from the same
/// config file and keys, gets the same status and reason — and neither the
/// offline answer nor its request line repeats the token, wherever the
/// request carried it (bearer, `auth-token`, the query in either
/// spelling).
#[tokio::test]
async fn offline_explain_reaches_the_live_verdict_on_every_matrix_case() {
    let h = Harness::start().await;
    let tokens = support::matrix::tokens(&h);
    for c in support::matrix::cases() {
        let (target, headers) = c.request(&tokens);
        let sent: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let live = h.request(c.method, &target, &sent).await;
        let seen = h.upstream_received();
        let (e, text) = offline(&h.config_path, c.method, &target, &headers);

        // What the client got, live and offline, against the table.
        assert_eq!(live.status, c.status, "{}: live {}", c.name, live.body);
        assert_eq!(e["status"].as_u64(), Some(u64::from(c.status)), "{}: offline {e}", c.name);
        if c.status == 200 {
            assert_eq!(seen.len(), 1, "{}: the upstream got it", c.name);
            assert_eq!(seen[0].target, c.target, "{}: without the credential", c.name);
            let want = if c.token.is_some() { "allowed" } else { "public" };
            assert_eq!((e["decision"].as_str(), e["reason"].as_str()), (Some("allow"), Some(want)), "{}", c.name);
            if c.token.is_some() {
                assert_eq!(seen[0].header("x-narrowgate-application"), Some(c.reason), "{}", c.name);
                assert_eq!(e["route"]["application"].as_str(), Some(c.reason), "{}", c.name);
            }
        } else {
            assert!(seen.is_empty(), "{}: the upstream got {seen:?}", c.name);
            assert_eq!(live.reason(), c.reason, "{}: live", c.name);
            assert_eq!((e["decision"].as_str(), e["reason"].as_str()), (Some("deny"), Some(c.reason)), "{}", c.name);
        }
        assert!(e.get("not_known").is_none(), "{}: nothing of this gateway lives elsewhere: {e}", c.name);

        // The token is never repeated; a query credential is shown redacted.
        if let Some(t) = c.token(&tokens) {
            assert!(!text.contains(t) && !e.to_string().contains(t), "{}: the token was repeated:\n{text}", c.name);
            if let Some((_, support::matrix::Via::Query(param))) = c.token {
                let line = text.lines().next().unwrap_or_default();
                assert!(line.contains(&format!("{param}=…")), "{}: {line}", c.name);
                assert_eq!(e["target"].as_str(), Some(target.replace(t, "…").as_str()), "{}", c.name);
            }
        }
    }
    h.shutdown().await;
}

/// The gateway on a SQLite store (created at its start), written to the
/// config file so offline explain finds the same store.
async fn with_store() -> (Harness, String) {
    let mut h = Harness::start_with(
        |doc| {
            doc.merge_yaml("store:\n  sqlite:\n    path: data/ng.db\n    create_if_missing: true");
        },
        |_| {},
    )
    .await;
    let root = h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("the store was created");
    (h, format!("Bearer {root}"))
}

/// A token the token service minted: its secret and id.
async fn mint(h: &Harness, auth: &str, path: &str, body: Value) -> (String, String) {
    let r = h.api_post(path, &[("Authorization", auth)], &body.to_string()).await;
    assert!(r.status == 200 || r.status == 201, "{path}: {} {}", r.status, r.body);
    let j = r.json();
    (j["token"].as_str().expect("token").to_string(), j["id"].as_str().unwrap_or_default().to_string())
}

fn account_rule(id: &str) -> Value {
    json!([{
        "application": "trading-account-management-api", "service": "*",
        "methodGroups": [{"group": "*", "methods": [{"method": "*"}]}],
        "roles": ["reader"], "resources": [{"entity": "account", "id": id}]
    }])
}

/// The gateway's store holds what decides these: reference tokens (live
/// and revoked) and revocations (of a JWT, of a parent whose child is
/// presented, of a jti with no record). Offline explain opens that store
/// read-only and reaches the gateway's verdict on each; without it, it
/// says what it could not know.
#[tokio::test]
async fn reference_and_revoked_tokens_get_the_live_verdict_offline() {
    let (h, root) = with_store().await;
    let body = |name: &str, form: &str| json!({"name": name, "form": form, "lifetime": "1h", "accessRules": account_rule("a1")});
    let (reference, _) = mint(
        &h,
        &root,
        "/v1/tokens",
        json!({"name": "ml-worker", "form": "reference", "accessRules": account_rule("a1")}),
    )
    .await;
    let (gone, _) =
        mint(&h, &root, "/v1/tokens", json!({"name": "gone", "form": "reference", "accessRules": account_rule("a1")}))
            .await;
    let (doomed, _) = mint(&h, &root, "/v1/tokens", body("doomed", "jwt")).await;
    let doomed_auth = format!("Bearer {doomed}");
    let (child, _) =
        mint(&h, &doomed_auth, "/v1/tokens/narrow", json!({"resources": [{"entity": "account", "id": "a1"}]})).await;
    let (parent, _) = mint(&h, &root, "/v1/tokens", body("parent", "jwt")).await;
    let (live_child, _) = mint(
        &h,
        &format!("Bearer {parent}"),
        "/v1/tokens/narrow",
        json!({"resources": [{"entity": "account", "id": "a1"}]}),
    )
    .await;
    // A JWT the store has no record of, revoked by its jti.
    let mut claims = narrowgate::token::testkit::payload(
        "outsider",
        narrowgate::token::now_unix(),
        3600,
        json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]),
    );
    claims["jti"] = json!("outsider-1");
    let outsider = h.sign(&claims);
    for name in ["gone", "doomed"] {
        let r = h.api_request("DELETE", &format!("/v1/tokens?name={name}"), &[("Authorization", &root)]).await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let revocation = json!({"jti": "outsider-1", "issuer": "narrowgate"}).to_string();
    let r = h.api_post("/v1/revocations", &[("Authorization", &root)], &revocation).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let unknown = format!("ngr_{}", "A".repeat(43));

    let cases: [(&str, &str, &str, u16, &str); 8] = [
        ("a reference token reads its account", &reference, "/users/current/accounts/a1", 200, "allowed"),
        ("a reference token reads another", &reference, "/users/current/accounts/a2", 403, "resource_not_allowed"),
        ("a revoked reference token", &gone, "/users/current/accounts/a1", 401, "revoked"),
        ("an unknown reference token", &unknown, "/users/current/accounts/a1", 401, "invalid_token"),
        ("a revoked JWT", &doomed, "/users/current/accounts/a1", 401, "revoked"),
        ("the child of a revoked parent", &child, "/users/current/accounts/a1", 401, "revoked"),
        ("the child of a live parent", &live_child, "/users/current/accounts/a1", 200, "allowed"),
        ("a jti revoked with no record", &outsider, "/users/current/accounts/a1", 401, "revoked"),
    ];
    for (name, token, target, status, reason) in cases {
        let auth = format!("Bearer {token}");
        let live = h.get(target, &[("Authorization", &auth)]).await;
        let seen = h.upstream_received();
        assert_eq!(live.status, status, "{name}: live {}", live.body);
        assert_eq!(seen.len(), usize::from(status == 200), "{name}: what the upstream got");
        if status != 200 {
            assert_eq!(live.reason(), reason, "{name}: live");
        }
        let (e, text) = offline(&h.config_path, "GET", target, &[("authorization", auth.clone())]);
        assert_eq!(
            (e["status"].as_u64(), e["reason"].as_str()),
            (Some(u64::from(status)), Some(reason)),
            "{name}: {e}"
        );
        assert!(e.get("not_known").is_none(), "{name}: {e}");
        assert!(!text.contains(token) && !e.to_string().contains(token), "{name}: the token was repeated");
    }

    // Without the store: the reference token is unknown, and it says so.
    let auth = format!("Bearer {reference}");
    let (ok, out, err) = explain_cli(
        &h.config_path,
        &["--json", "--without-store", "-H", &format!("authorization: {auth}"), "GET", "/users/current/accounts/a1"],
    );
    assert!(ok, "{err}");
    let e: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(e["reason"], "invalid_token");
    assert!(
        e["not_known"][0].as_str().is_some_and(|l| l.contains("--without-store") && l.contains("reference token")),
        "{e}"
    );
    assert!(!out.contains(&reference));
    h.shutdown().await;
}

/// Explain never creates or changes a store: where the config names one
/// that does not exist (or a file that holds none), it is an error that
/// says so, and nothing appears.
#[test]
fn a_missing_store_is_an_error_offline_and_is_never_created() {
    let (dir, key, config) = demo_config(|doc| {
        doc.merge_yaml("store:\n  sqlite:\n    path: data/ng.db");
    });
    let token = key.sign(&narrowgate::token::testkit::payload("web", narrowgate::token::now_unix(), 3600, json!([])));
    let (ok, out, err) = explain_cli(&config, &["--token", &token, "GET", "/users/current/accounts/a1"]);
    assert!(!ok, "explained without its store: {out}");
    assert!(err.contains("no store at") && err.contains("never creates"), "{err}");
    assert!(!dir.path().join("data").exists(), "explain created something");
    assert!(!err.contains(&token) && !out.contains(&token));

    // A file that holds no store: refused, and left as it was.
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    private_file(&dir.path().join("data/ng.db"), "");
    let (ok, _, err) = explain_cli(&config, &["--token", &token, "GET", "/users/current/accounts/a1"]);
    assert!(!ok && err.contains("holds no narrowgate store"), "{err}");
    assert_eq!(std::fs::metadata(dir.path().join("data/ng.db")).expect("file").len(), 0);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // A store that cannot be reached: said, with the way to go on without
    // it, which then says what it could not know.
    let (_held, closed) = support::refusing_address();
    let (_dir, _key, config) = demo_config(|doc| {
        doc.merge_yaml(&format!("store:\n  postgres:\n    url: \"postgres://ng@{closed}/ng\"\n    timeout: 200ms"));
    });
    let (ok, _, err) = explain_cli(&config, &["--token", &token, "GET", "/users/current/accounts/a1"]);
    assert!(!ok && err.contains("cannot be read") && err.contains("--without-store"), "{err}");
    let (ok, out, err) =
        explain_cli(&config, &["--without-store", "--token", &token, "GET", "/users/current/accounts/a1"]);
    assert!(ok, "{err}");
    assert!(out.contains("→ deny 401") && out.contains("not known here: the store was not read"), "{out}");
}

/// What explain cannot know offline is said in a line of its own, never
/// passed off as a reason: an issuer's JWKS URL it cannot reach, an
/// issuer's revocation feed it does not follow.
#[test]
fn what_cannot_be_known_offline_is_said_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that refuses connections.
    let (_held, closed) = support::refusing_address();
    private_file(&dir.path().join("feed.token"), "feed-reader-token");
    let config = support::enforcer_config(
        dir.path(),
        "sidecar",
        closed,
        &format!("http://{closed}/.well-known/jwks.json"),
        &[format!("http://{closed}/v1/revocations")],
        "feed.token",
        "",
    );
    let stranger = narrowgate::token::testkit::TestKey::es256("issuer-1");
    let token =
        stranger.sign(&narrowgate::token::testkit::payload("web", narrowgate::token::now_unix(), 3600, json!([])));
    let (ok, text, err) = explain_cli(&config, &["--token", &token, "GET", "/users/current/accounts/a1"]);
    assert!(ok, "{err}");
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("deny 503 keys_unavailable"),
        "the verdict of a gateway that cannot reach the JWKS: {text}"
    );
    assert!(text.contains("not known here: the keys at the JWKS URL of narrowgate could not all be fetched"), "{text}");
    assert!(text.contains("not known here: revocations: this gateway follows an issuer's revocation feed"), "{text}");
    assert!(!text.contains(&token) && !err.contains(&token));
    // Nothing to know about where no token is checked.
    let (ok, text, _) = explain_cli(&config, &["GET", "/health"]);
    assert!(ok && !text.contains("not known here"), "{text}");
}

/// A token signed with a key the config does not have (another gateway's,
/// or a past demo run's) is `unknown_key`, as on the gateway, and the
/// explanation says which keys the config has — never the token's own
/// claims.
#[tokio::test]
async fn a_token_from_a_key_the_config_lacks_is_named_as_such() {
    let h = Harness::start().await;
    let stranger = narrowgate::token::testkit::TestKey::es256("demo-signer");
    let token =
        stranger.sign(&narrowgate::token::testkit::payload("web", narrowgate::token::now_unix(), 3600, json!([])));
    let live = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!((live.status, live.reason().as_str()), (401, "unknown_key"));
    let (e, text) =
        offline(&h.config_path, "GET", "/users/current/accounts/a1", &[("authorization", format!("Bearer {token}"))]);
    assert_eq!((e["status"].as_u64(), e["reason"].as_str()), (Some(401), Some("unknown_key")));
    let detail = e["verification"]["detail"].as_str().expect("a detail");
    assert!(detail.contains("a key this config does not have") && detail.contains("signer, demo"), "{detail}");
    assert!(detail.contains("NG_CONFIG"), "{detail}");
    assert!(text.contains(detail), "{text}");
    h.shutdown().await;
}

/// A route that names no resource is not said to "fail on resource": the
/// rule is told apart from one granting another resource, and from one
/// granting none at all (the same for roles, groups, methods, scopes:
/// `policy::rules`' table).
#[tokio::test]
async fn a_route_without_a_resource_is_not_said_to_fail_on_resource() {
    let h = Harness::start().await;
    let token = h.token(
        "web",
        json!([
            rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
            rule("trading-account-management-api", &[], &["*:$USER_ID$:*"]),
        ]),
    );
    let (_, e) = explain(&h, json!({ "method": "GET", "path": "/users/current/accounts", "token": token })).await;
    // The closest miss names the denial, as on the gateway.
    assert_eq!(e["reason"], "insufficient_role");
    assert!(e["route"].get("resource").is_none(), "{e}");
    let rules = e["rules"].as_array().expect("rules");
    assert_eq!(
        (rules[0]["dimension"].as_str(), rules[0]["miss"].as_str()),
        (Some("resource"), Some("route_names_none"))
    );
    let words = rules[0]["result"].as_str().expect("result");
    assert!(!words.contains("fails on") && words.contains("names no single resource"), "{words}");
    assert_eq!((rules[1]["dimension"].as_str(), rules[1]["miss"].as_str()), (Some("role"), Some("rule_grants_none")));
    assert_eq!(rules[1]["result"], "grants no role at all");
    let live = h.get("/users/current/accounts", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!((live.status, live.reason().as_str()), (403, "insufficient_role"));
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

/// The same on PostgreSQL (run by `scripts/test`, which starts a server):
/// the gateway's store read in read-only sessions — a reference token and
/// a revoked JWT get the live verdicts — and a database without a store
/// is refused and left without one.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one"]
async fn offline_explain_reads_a_postgres_store_and_never_makes_one() {
    let url = support::fresh_postgres_database().await;
    let store = format!("store:\n  postgres:\n    url: \"{url}\"\n    create_if_missing: true");
    let mut h = Harness::start_with(
        |doc| {
            doc.merge_yaml(&store);
        },
        |_| {},
    )
    .await;
    let root = format!("Bearer {}", h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("created"));
    let (reference, _) = mint(
        &h,
        &root,
        "/v1/tokens",
        json!({"name": "worker", "form": "reference", "accessRules": account_rule("a1")}),
    )
    .await;
    let (doomed, _) =
        mint(&h, &root, "/v1/tokens", json!({"name": "doomed", "lifetime": "1h", "accessRules": account_rule("a1")}))
            .await;
    let r = h.api_request("DELETE", "/v1/tokens?name=doomed", &[("Authorization", &root)]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    for (token, status, reason) in [(&reference, 200, "allowed"), (&doomed, 401, "revoked")] {
        let auth = format!("Bearer {token}");
        let live = h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await;
        assert_eq!(live.status, status, "{}", live.body);
        assert_eq!(h.upstream_received().len(), usize::from(status == 200));
        let (e, _) = offline(&h.config_path, "GET", "/users/current/accounts/a1", &[("authorization", auth)]);
        assert_eq!((e["status"].as_u64(), e["reason"].as_str()), (Some(u64::from(status)), Some(reason)), "{e}");
    }
    h.shutdown().await;

    // An empty database: refused, and still empty.
    let empty = support::fresh_postgres_database().await;
    let (_dir, _key, config) = demo_config(|doc| {
        doc.merge_yaml(&format!("store:\n  postgres:\n    url: \"{empty}\""));
    });
    let (ok, _, err) = explain_cli(&config, &["GET", "/users/current/accounts/a1"]);
    assert!(!ok && err.contains("holds no narrowgate store"), "{err}");
    let pool = sqlx::AnyPool::connect(&empty).await.expect("connect");
    let tables: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema()")
            .fetch_one(&pool)
            .await
            .expect("count"),
        "n",
    );
    assert_eq!(tables, 0, "explain made something");
    pool.close().await;
}
