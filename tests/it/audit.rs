//! The audit log, through the real binary: one JSON event per decision and
//! per token-service action, written to its own file, and never a token, a
//! secret, a key or a Crafter id — anywhere the process writes.

use crate::support;

use std::time::Duration;

use narrowgate::echo::EchoUpstream;
use serde_json::{Value, json};
use support::{BIN, GatewayProcess, build_request, eventually_async, process_config, send_raw, serve_process};

const SECRET: &str = "prodmanager-application-secret-for-the-audit-test";

/// `narrowgate store init --print-secrets`'s output (stdout is not a
/// terminal here): the bootstrap token and Crafter's ids.
fn init(config: &std::path::Path) -> (String, Vec<String>) {
    let out = std::process::Command::new(BIN)
        .args(["store", "init", "--print-secrets", "--config", config.to_str().expect("utf8")])
        .output()
        .expect("store init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = |l: &str| l.rsplit(": ").next().expect("a secret").trim().to_string();
    let root = text.lines().find(|l| l.contains("bootstrap admin token")).map(after).expect("root");
    let crafter = text.lines().filter(|l| l.contains("Crafter Profile access token")).map(after).collect();
    (root, crafter)
}

async fn api(
    g: &GatewayProcess,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> support::Response {
    g.api_call(method, path, token, body).await
}

fn minted(r: &support::Response) -> (String, String) {
    assert!(r.status == 200 || r.status == 201, "{} {}", r.status, r.body);
    let j = r.json();
    (j["token"].as_str().expect("token").to_string(), j["id"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn every_decision_and_action_is_audited_and_no_secret_is_written_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, SECRET.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let extra = format!(
        "store:\n  sqlite:\n    path: data/ng.db\n\
         audit:\n  sink:\n    file:\n      path: audit.jsonl\n\
         server:\n  drain_delay: 100ms\n\
         facades:\n  prodmanager:\n    applications:\n      - application: trading-account-management-api\n        \
         secret_sha256: \"{hex}\"\n        permissions:\n          read: {{ method_groups: [account-management], roles: [reader] }}"
    );
    let config = process_config(dir.path(), "ng", echo.addr, &extra);
    let (root, crafter) = init(&config);
    assert!(!crafter.is_empty(), "the demo manifest has Crafter's facade");
    let g = serve_process(&config).await;

    // Token-service actions of every kind.
    let created = api(&g, "POST", "/v1/tokens", Some(&root), Some(r#"{"name":"web","lifetime":"1h"}"#)).await;
    let (web, web_id) = minted(&created);
    let narrow = r#"{"applications":["trading-account-management-api"],"roles":["reader"],"resources":[{"entity":"account","id":"a1"}]}"#;
    let (narrowed, _) = minted(&api(&g, "POST", "/v1/tokens/narrow", Some(&web), Some(narrow)).await);
    let reg_body = r#"{"name":"device-1","role":"User","ttl":"1h"}"#;
    let (registration, _) = minted(&api(&g, "POST", "/v1/registration-tokens", Some(&root), Some(reg_body)).await);
    let redeem = json!({ "token": registration }).to_string();
    let (redeemed, redeemed_id) = minted(&api(&g, "POST", "/v1/registration-tokens/redeem", None, Some(&redeem)).await);
    let form = format!("secret={SECRET}&name=reporter&description=nightly+reports&permission=read");
    let req = support::raw_body_request("POST", "/api/token/create", None, "application/x-www-form-urlencoded", &form);
    let pm = send_raw(g.api.expect("api"), req.as_bytes()).await;
    assert_eq!(pm.status, 200, "{}", pm.body);
    let pm_token: String = serde_json::from_str(&pm.body).expect("a JSON string");
    let refused = api(&g, "GET", "/v1/tokens", Some("not-a-token"), None).await;
    assert_eq!(refused.status, 401);
    let widen = api(&g, "POST", "/v1/tokens", Some(&narrowed), Some(r#"{"name":"x","lifetime":"1h"}"#)).await;
    assert_eq!(widen.status, 403);

    // Proxy decisions: allowed, denied for the resource, no route, a
    // credential in the query (a Crafter id), a tenant route.
    let call = |path: &str, token: &str| {
        let req = build_request("GET", path, &[("Authorization", &format!("Bearer {token}"))]);
        let proxy = g.proxy;
        async move { send_raw(proxy, req.as_bytes()).await }
    };
    assert_eq!(call("/users/current/accounts/a1", &narrowed).await.status, 200);
    assert_eq!(call("/users/current/accounts/a2", &narrowed).await.status, 403);
    assert_eq!(call("/nowhere/at/all", &narrowed).await.status, 403);
    let engine = &crafter[0];
    let r = send_raw(
        g.proxy,
        build_request("GET", &format!("/profile/api/1/tenant/acme?accessTokenId={engine}"), &[]).as_bytes(),
    )
    .await;
    assert!(r.status == 200 || r.status == 403, "{} {}", r.status, r.body);

    // Revocations; a reload by SIGHUP.
    assert_eq!(api(&g, "DELETE", &format!("/v1/tokens/{web_id}"), Some(&root), None).await.status, 204);
    assert_eq!(api(&g, "DELETE", "/v1/tokens?name=reporter", Some(&root), None).await.status, 204);
    // Rotation: the file is moved away, SIGHUP reopens it.
    let audit_file = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    eventually_async(Duration::from_secs(5), || async {
        std::fs::read_to_string(&audit_file).is_ok_and(|t| t.contains("\"revoke\"")).then_some(())
    })
    .await;
    std::fs::rename(&audit_file, &rotated).expect("rotate");
    let ok = std::process::Command::new("kill").args(["-HUP", &g.child.id().to_string()]).status();
    assert!(ok.expect("kill").success());
    let read = |f: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    };
    eventually_async(Duration::from_secs(5), || async {
        read(&audit_file).iter().any(|e| e["action"] == "reload").then_some(())
    })
    .await;
    assert_eq!(call("/users/current/accounts/a3", &root).await.status, 200);
    let events = || -> Vec<Value> { read(&rotated).into_iter().chain(read(&audit_file)).collect() };
    let hash = support::metric_label(g.admin, "narrowgate_config_info", "hash").await.expect("the config hash");

    // Stop: what was queued is written.
    let mut g = g;
    assert!(
        std::process::Command::new("kill").args(["-TERM", &g.child.id().to_string()]).status().expect("kill").success()
    );
    let _ = tokio::task::spawn_blocking(move || {
        let _ = g.child.wait();
        g
    })
    .await;

    let events = events();
    let decisions: Vec<&Value> = events.iter().filter(|e| e["event"] == "decision").collect();
    let actions: Vec<&Value> = events.iter().filter(|e| e["event"] == "action").collect();
    let allowed = decisions
        .iter()
        .find(|e| {
            e["reason"] == "allowed"
                && e["resource_id"] == "a1"
                && e["route"] == "GET /users/current/accounts/{accountId}"
        })
        .unwrap_or_else(|| panic!("{decisions:#?}"));
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["application"], "trading-account-management-api");
    assert_eq!(
        (allowed["group"].as_str(), allowed["api_method"].as_str()),
        (Some("account-management"), Some("getAccount"))
    );
    assert_eq!(allowed["resource_entity"], "account");
    assert_eq!((allowed["kind"].as_str(), allowed["lineage_depth"].as_u64()), (Some("narrowed"), Some(1)));
    assert_eq!(allowed["kid"], "signer");
    assert_eq!(allowed["rule"], "trading-account-management-api");
    assert_eq!((allowed["status"].as_u64(), allowed["upstream_status"].as_u64()), (Some(200), Some(200)));
    assert_eq!(allowed["config_hash"], hash.as_str());
    assert!(allowed["request_id"].as_str().is_some_and(|r| !r.is_empty()) && allowed["latency_us"].is_u64());
    let denied = decisions.iter().find(|e| e["resource_id"] == "a2").expect("the denial");
    assert_eq!((denied["decision"].as_str(), denied["reason"].as_str()), (Some("deny"), Some("resource_not_allowed")));
    assert_eq!(denied["rule"], "trading-account-management-api", "the closest miss");
    assert!(denied.get("upstream_status").is_none());
    let lost = decisions.iter().find(|e| e["reason"] == "no_matching_route").expect("no route");
    assert!(lost.get("route").is_none() && lost.get("jti").is_none());

    let action = |a: &str, k: &str| actions.iter().find(|e| e["action"] == a && e["kind"] == k).copied();
    let create = action("mint", "create").expect("create");
    assert_eq!((create["result"].as_str(), create["target"].as_str()), (Some("ok"), Some(web_id.as_str())));
    assert!(create["by"].as_str().is_some_and(|b| !b.is_empty()));
    assert_eq!(action("mint", "narrow").expect("narrow")["by"], web_id.as_str());
    assert_eq!(action("mint", "registration").expect("registration")["result"], "ok");
    assert_eq!(action("redeem", "registration").expect("redeem")["target"], redeemed_id.as_str());
    assert_eq!(action("mint", "application").expect("prodmanager")["by"], "prodmanager:trading-account-management-api");
    assert_eq!(action("revoke", "id").expect("revoke")["target"], web_id.as_str());
    assert_eq!(action("revoke", "name").expect("revoke by name")["result"], "ok");
    let widened = actions.iter().find(|e| e["action"] == "manage" && e["result"] == "admin_required");
    assert!(widened.is_some(), "a refused management call: {actions:#?}");
    assert!(actions.iter().any(|e| e["action"] == "authenticate" && e["result"] == "invalid_token"));
    let reload = actions.iter().find(|e| e["action"] == "reload").expect("reload");
    assert_eq!((reload["by"].as_str(), reload["result"].as_str()), (Some("sighup"), Some("unchanged")));

    // No secret anywhere the process wrote: the audit log, its stdout and
    // stderr.
    let signer = std::fs::read_to_string(dir.path().join("keys/signer.pem")).expect("key");
    let key_body: String = signer.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut secrets = vec![root.clone(), web, narrowed, registration, redeemed, pm_token, SECRET.to_string(), key_body];
    secrets.extend(crafter);
    assert!(read(&audit_file).iter().any(|e| e["event"] == "decision"), "decisions go to the reopened file");
    let written = [
        std::fs::read_to_string(&rotated).expect("audit") + &std::fs::read_to_string(&audit_file).expect("audit"),
        std::fs::read_to_string(config.with_extension("out")).expect("stdout"),
        std::fs::read_to_string(config.with_extension("err")).expect("stderr"),
    ];
    for (i, text) in written.iter().enumerate() {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "output {i} holds a secret ({} bytes)", s.len());
        }
        assert!(!text.contains("/users/current/accounts/a1"), "output {i} holds a raw path");
        assert!(!text.contains("accessTokenId="), "output {i} holds a query");
    }
}
