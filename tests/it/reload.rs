//! Reloading the policy while requests run: the snapshot swaps whole, a
//! broken config never replaces a working one, and a Kubernetes ConfigMap
//! update (a `..data` symlink swapped to a new directory) is seen.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use narrowgate::app;
use narrowgate::config::Config;
use narrowgate::echo::EchoUpstream;
use narrowgate::token::now_unix;
use narrowgate::token::testkit::{TestKey, payload, rule};
use serde_json::json;
use support::{ConfigDoc, Harness, build_request, eventually_async, metric, send_raw};

const ACCOUNT: &str = "/users/current/accounts/a1";
const METRICS_ROUTE: &str = "GET /metastats/users/current/accounts/{accountId}/metrics";
const HISTORY: &str = "/users/current/accounts/a1/history";
const SUCCESS: &str = "narrowgate_config_reloads_total{result=\"success\"}";
const FAILURE: &str = "narrowgate_config_reloads_total{result=\"failure\"}";

/// The change under test, as one edit: a route added (`…/history`, for
/// readers), a role removed (readers may no longer read an account), and
/// the subject's identity header renamed, so the upstream can tell which
/// snapshot forwarded each request.
fn change(d: &mut ConfigDoc) {
    let routes = d.at("applications.0.routes").as_array_mut().expect("a list");
    routes.push(json!({
        "route": "GET /users/current/accounts/{accountId}/history",
        "group": "account-management",
        "method": "getAccount",
        "resource": { "entity": "account", "id": "{accountId}" },
        "roles": ["reader"],
    }));
    d.set("applications.0.routes.2.roles", json!(["writer"]));
    d.set("forwarding.identity_headers.subject", "x-narrowgate-user");
}

type Edit = dyn Fn(&mut ConfigDoc);

/// Which policy decided a response: 0 the old, 1 the new.
fn version(path: &str, r: &support::Response) -> u8 {
    match (path, r.status, r.reason().as_str()) {
        (ACCOUNT, 200, _) | (HISTORY, 403, "no_matching_route") => 0,
        (ACCOUNT, 403, "insufficient_role") | (HISTORY, 200, _) => 1,
        _ => panic!("{path}: a request failed during the reload: {} {}", r.status, r.body),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_request_and_splits_none() {
    let mut h = Harness::start().await;
    let token = h.token("reader-1", json!([rule("*", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = Arc::new(format!("Bearer {token}"));
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);

    // Three clients on new connections and one on a kept-alive connection,
    // each alternating the two requests until it has seen the new policy
    // forty times in a row.
    let mut clients = Vec::new();
    for client in 0..4 {
        let (auth, sent, proxy) = (auth.clone(), sent.clone(), h.proxy);
        clients.push(tokio::spawn(async move {
            let keep_alive = reqwest::Client::new();
            let mut seen = Vec::new();
            let mut new_in_a_row = 0;
            while new_in_a_row < 40 {
                assert!(Instant::now() < deadline, "the new policy never came into force");
                let path = if seen.len() % 2 == 0 { ACCOUNT } else { HISTORY };
                let r = if client == 3 {
                    let resp = keep_alive
                        .get(format!("http://{proxy}{path}"))
                        .header("Authorization", auth.as_str())
                        .send()
                        .await
                        .expect("a response on the kept-alive connection");
                    let status = resp.status().as_u16();
                    support::Response { status, headers: vec![], body: resp.text().await.expect("body") }
                } else {
                    send_raw(proxy, build_request("GET", path, &[("Authorization", auth.as_str())]).as_bytes()).await
                };
                let v = version(path, &r);
                new_in_a_row = if v == 1 { new_in_a_row + 1 } else { 0 };
                seen.push(v);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    eventually_async(Duration::from_secs(10), || async { (sent.load(Ordering::Relaxed) >= 80).then_some(()) }).await;
    h.rewrite(change);

    for c in clients {
        let seen = c.await.expect("client");
        // The decisions switch once, at the swap, and never back.
        let first_new = seen.iter().position(|v| *v == 1).expect("saw the new policy");
        assert!(first_new > 0, "the new policy was in force before the change");
        assert!(seen[first_new..].iter().all(|v| *v == 1), "a request was decided by the old policy after the new");
    }
    // Each request was decided and forwarded by one snapshot: what only the
    // old policy allows arrived with the old header, what only the new
    // allows with the new.
    let received = h.upstream_received();
    let (old, new): (Vec<_>, Vec<_>) = received.iter().partition(|r| r.target == ACCOUNT);
    assert!(!old.is_empty() && !new.is_empty());
    for r in &old {
        assert_eq!((r.header("x-narrowgate-subject"), r.header("x-narrowgate-user")), (Some("reader-1"), None));
    }
    for r in &new {
        assert_eq!(r.target, HISTORY);
        assert_eq!((r.header("x-narrowgate-user"), r.header("x-narrowgate-subject")), (Some("reader-1"), None));
    }
    assert_eq!(metric(h.admin, SUCCESS).await, Some(1.0));
    assert_eq!(metric(h.admin, FAILURE).await, Some(0.0));
    let hash = h.running().runtime.snapshot().hash.clone();
    assert_eq!(metric(h.admin, &format!("narrowgate_config_info{{hash=\"{hash}\"}}")).await, Some(1.0));
    h.shutdown().await;
}

/// POST /reload on the admin listener.
async fn reload(h: &Harness) -> (u16, serde_json::Value) {
    let r = send_raw(h.admin, build_request("POST", "/reload", &[("Content-Length", "0")]).as_bytes()).await;
    (r.status, r.json())
}

#[tokio::test]
async fn a_broken_config_leaves_the_policy_in_force_and_is_counted() {
    let mut h = Harness::start().await;
    let token = h.token("reader-1", json!([rule("*", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = format!("Bearer {token}");
    let in_force = h.running().runtime.snapshot().hash.clone();
    let good = h.doc.clone();

    // Each broken in its own way; each also carries the change, which must
    // not be applied.
    let overlapping = |d: &mut ConfigDoc| {
        change(d);
        let routes = d.at("applications.1.routes").as_array_mut().expect("a list");
        routes.push(json!({ "route": "GET /users/current/accounts/{id}", "group": "mt-manager", "method": "getUser",
                            "roles": ["reader"] }));
    };
    let missing_key = |d: &mut ConfigDoc| {
        change(d);
        d.set("issuers.0.keys.0.public_key_file", "keys/gone.pem");
    };
    let cases: [(&str, &Edit, &str); 2] =
        [("overlapping route", &overlapping, "applications[1].routes"), ("missing key file", &missing_key, "gone.pem")];
    let mut failures = 0.0;
    for (what, edit, named) in cases {
        h.doc = good.clone();
        h.rewrite(|d| edit(d));
        let (status, body) = reload(&h).await;
        assert_eq!((status, body["result"].as_str()), (422, Some("refused")), "{what}: {body}");
        let problems = body["problems"].to_string();
        assert!(problems.contains(named), "{what}: the problem names where it is: {problems}");
        failures += 1.0;
        assert_eq!(metric(h.admin, FAILURE).await, Some(failures), "{what}");
        assert_eq!(h.running().runtime.snapshot().hash, in_force, "{what}");
        assert_eq!(h.get(ACCOUNT, &[("Authorization", &auth)]).await.status, 200, "{what}: the old policy decides");
        assert_eq!(h.get(HISTORY, &[("Authorization", &auth)]).await.status, 403, "{what}");
    }
    // Not YAML at all.
    std::fs::write(&h.config_path, "listeners: [unclosed\n  proxy: {").expect("write");
    let (status, body) = reload(&h).await;
    assert_eq!((status, body["result"].as_str()), (422, Some("refused")), "{body}");
    assert!(body["problems"].to_string().contains("YAML"), "{body}");
    assert_eq!(metric(h.admin, FAILURE).await, Some(failures + 1.0));
    // The watcher tries the broken files too and keeps the policy.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.running().runtime.snapshot().hash, in_force);
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(metric(h.admin, SUCCESS).await, Some(0.0));

    // Fixed: the change applies, and a restart-only change is reported as such.
    h.doc = good.clone();
    h.rewrite(|d| {
        change(d);
        d.set("server.worker_threads", 2);
    });
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");
    // The watcher may have applied it first; either way it is in force,
    // and what it left to a restart is said.
    assert_eq!(body["needsRestart"], json!(["server.worker_threads"]), "{body}");
    eventually_async(Duration::from_secs(5), || async {
        (h.get(HISTORY, &[("Authorization", &auth)]).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &auth)]).await.status, 403);
    assert_eq!(metric(h.admin, SUCCESS).await, Some(1.0));
    let (status, body) = reload(&h).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("unchanged")), "{body}");
    assert_eq!(body["needsRestart"], json!(["server.worker_threads"]), "still waiting for a restart: {body}");
    assert_eq!(body["last"]["result"], "applied", "{body}");
    h.shutdown().await;
}

/// GET /reload on the admin listener.
async fn reload_state(h: &Harness) -> serde_json::Value {
    let r = h.admin_get("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Whichever trigger applied a change, POST /reload and GET /reload tell
/// what is in force and what waits for a restart.
#[tokio::test]
async fn a_reload_the_watcher_applied_is_reported_to_the_operator() {
    let mut h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("reader-1", json!([rule("*", &["reader"], &["account:$USER_ID$:a1"])])));
    let state = reload_state(&h).await;
    assert_eq!((state["last"].clone(), state["needsRestart"].clone()), (json!(null), json!([])), "{state}");
    h.rewrite(|d| {
        change(d);
        d.set("server.worker_threads", 2);
        d.set("listeners.admin", "127.0.0.1:1");
    });
    // Nobody asks: the watcher applies it.
    eventually_async(Duration::from_secs(5), || async {
        (h.get(HISTORY, &[("Authorization", &auth)]).await.status == 200).then_some(())
    })
    .await;
    let in_force = h.running().runtime.snapshot().hash.clone();
    let (status, body) = reload(&h).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("unchanged")), "{body}");
    assert_eq!(body["needsRestart"], json!(["listeners", "server.worker_threads"]), "{body}");
    assert_eq!(body["last"]["trigger"], "file", "{body}");
    assert_eq!(body["last"]["result"], "applied", "{body}");
    assert_eq!(body["last"]["hash"], in_force.as_str(), "{body}");
    let state = reload_state(&h).await;
    assert_eq!(state["hash"], in_force.as_str());
    assert_eq!(state["needsRestart"], body["needsRestart"]);
    assert_eq!(state["last"], body["last"]);
    // A refusal is the last word until something applies.
    std::fs::write(&h.config_path, "listeners: [unclosed").expect("write");
    let (status, _) = reload(&h).await;
    assert_eq!(status, 422);
    let state = reload_state(&h).await;
    assert_eq!((state["last"]["result"].as_str(), state["last"]["trigger"].as_str()), (Some("refused"), Some("admin")));
    assert!(state["last"]["problems"].to_string().contains("not valid YAML"), "{state}");
    assert_eq!(state["hash"], in_force.as_str(), "the config in force stays");
    h.shutdown().await;
}

/// A rollback — the file back to the config in force before the last
/// reload, as a ConfigMap rollback writes it — is a change like any other,
/// whichever trigger applied the config it rolls back from.
#[tokio::test]
async fn a_rollback_after_a_reload_is_applied() {
    let mut h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("reader-1", json!([rule("*", &["reader"], &["account:$USER_ID$:a1"])])));
    let first = h.running().runtime.snapshot().hash.clone();
    let good = h.doc.clone();
    for round in 0..3 {
        // The change, applied at once by POST /reload, then rolled back
        // before the watcher has looked at the files.
        h.rewrite(change);
        let (status, body) = reload(&h).await;
        assert_eq!((status, body["result"].as_str()), (200, Some("applied")), "round {round}: {body}");
        assert_eq!(h.get(HISTORY, &[("Authorization", &auth)]).await.status, 200, "round {round}");
        h.doc = good.clone();
        h.rewrite(|_| {});
        eventually_async(Duration::from_secs(5), || async {
            (h.get(HISTORY, &[("Authorization", &auth)]).await.status == 403).then_some(())
        })
        .await;
        assert_eq!(h.get(ACCOUNT, &[("Authorization", &auth)]).await.status, 200, "round {round}: rolled back");
        assert_eq!(h.running().runtime.snapshot().hash, first, "round {round}");
        let state = reload_state(&h).await;
        assert_eq!(state["last"]["trigger"], "file", "round {round}: {state}");
    }
    h.shutdown().await;
}

/// A ConfigMap volume: the files are symlinks through `..data`, itself a
/// symlink to a timestamped directory; an update writes a new directory
/// and renames a new `..data` link over the old one.
struct ConfigMap {
    root: std::path::PathBuf,
    generation: usize,
}

impl ConfigMap {
    fn create(root: &std::path::Path, files: &[(&str, Vec<u8>)]) -> ConfigMap {
        let mut cm = ConfigMap { root: root.to_path_buf(), generation: 0 };
        cm.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("symlink");
        }
        cm
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.generation += 1;
        let dir = format!("..2026_11_26_{:02}", self.generation);
        std::fs::create_dir(self.root.join(&dir)).expect("mkdir");
        for (name, bytes) in files {
            std::fs::write(self.root.join(&dir).join(name), bytes).expect("write");
        }
        std::os::unix::fs::symlink(&dir, self.root.join("..data_tmp")).expect("symlink");
        std::fs::rename(self.root.join("..data_tmp"), self.root.join("..data")).expect("swap ..data");
        if self.generation > 1 {
            let old = format!("..2026_11_26_{:02}", self.generation - 1);
            std::fs::remove_dir_all(self.root.join(old)).expect("remove the old generation");
        }
    }
}

#[tokio::test]
async fn a_configmap_update_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let key = TestKey::es256("demo");
    let mut doc = ConfigDoc::demo();
    doc.set("listeners", json!({ "proxy": "127.0.0.1:0", "admin": "127.0.0.1:0" }))
        .set("upstream.addresses", json!([echo.addr.to_string()]))
        .set("issuers.0.keys.0.public_key_file", "demo.pub.pem")
        .remove("facades");
    let files = |doc: &ConfigDoc| {
        vec![("config.yaml", serde_json::to_vec_pretty(&doc.0).expect("json")), ("demo.pub.pem", key.public.clone())]
    };
    let mut cm = ConfigMap::create(dir.path(), &files(&doc));
    let path = dir.path().join("config.yaml");
    let config = Config::load(&path).expect("valid");
    let g = app::start_from(config, Some(path)).await.expect("starts");
    let auth = format!(
        "Bearer {}",
        key.sign(&payload("reader-1", now_unix(), 3600, json!([rule("*", &["reader"], &["account:$USER_ID$:a1"])])))
    );
    let proxy = g.proxy_addr;
    let get = |path: &'static str| {
        let auth = auth.clone();
        async move { send_raw(proxy, build_request("GET", path, &[("Authorization", &auth)]).as_bytes()).await }
    };
    assert_eq!(get(ACCOUNT).await.status, 200);
    assert_eq!(get(HISTORY).await.status, 403);

    change(&mut doc);
    cm.update(&files(&doc));
    eventually_async(Duration::from_secs(5), || async { (get(HISTORY).await.status == 200).then_some(()) }).await;
    assert_eq!(get(ACCOUNT).await.status, 403);

    // A second update, through the directory watched afresh.
    doc.set("applications.0.routes.2.roles", json!(["reader", "writer"]));
    cm.update(&files(&doc));
    eventually_async(Duration::from_secs(5), || async { (get(ACCOUNT).await.status == 200).then_some(()) }).await;
    let admin = g.admin_addr.expect("admin");
    assert_eq!(metric(admin, SUCCESS).await, Some(2.0));
    g.shutdown().await;
}

#[tokio::test]
async fn the_metrics_follow_the_applications_in_force() {
    let mut h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("reader-1", json!([rule("*", &["*"], &["*:$USER_ID$:*"])])));
    let series = |app: &str| {
        format!(
            "narrowgate_requests_total{{application=\"{app}\",decision=\"allow\",reason=\"allowed\",route=\"{METRICS_ROUTE}\"}}"
        )
    };
    assert_eq!(h.get("/metastats/users/current/accounts/a1/metrics", &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(metric(h.admin, &series("metastats-api")).await, Some(1.0));
    // metastats-api leaves, reports-api arrives.
    h.rewrite(|d| {
        let apps = d.at("applications").as_array_mut().expect("a list");
        let mut reports = apps.iter().find(|a| a["application"] == "metastats-api").expect("metastats").clone();
        apps.retain(|a| a["application"] != "metastats-api");
        reports["application"] = "reports-api".into();
        reports["id"] = "reports-api".into();
        apps.push(reports);
    });
    let (status, body) = reload(&h).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("applied")), "{body}");
    assert_eq!(h.get("/metastats/users/current/accounts/a1/metrics", &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(metric(h.admin, &series("reports-api")).await, Some(1.0));
    assert_eq!(metric(h.admin, &series("metastats-api")).await, None, "a removed application's series are gone");
    h.shutdown().await;
}

/// `narrowgate serve`: SIGHUP reloads; a broken file is logged with the
/// config's path and the problem's, counted, and changes nothing.
#[tokio::test]
async fn sighup_reloads_and_a_refused_reload_is_logged_with_its_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true";
    let config = support::process_config(dir.path(), "ng", echo.addr, store);
    let g = support::serve_process(&config).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("token").trim().to_string();
    let last_success = "narrowgate_config_last_reload_success_timestamp_seconds";
    let started = metric(g.admin, last_success).await.expect("set at start");
    let hup = || {
        let ok = std::process::Command::new("kill").args(["-HUP", &g.child.id().to_string()]).status();
        assert!(ok.expect("kill").success());
    };

    let mut doc = ConfigDoc::parse(&std::fs::read_to_string(&config).expect("read"));
    let good = doc.clone();
    doc.set("applications.0.routes.2.resource.id", "{nope}");
    // The watcher may try it too: either way it is refused and counted.
    doc.write(&config);
    hup();
    eventually_async(Duration::from_secs(5), || async { (metric(g.admin, FAILURE).await >= Some(1.0)).then_some(()) })
        .await;
    assert_eq!(g.call("GET", ACCOUNT, &root).await.status, 200, "the policy in force stays");
    let log = std::fs::read_to_string(config.with_extension("err")).expect("stderr");
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap_or_else(|| panic!("not logged: {log}"));
    assert!(line.contains(&config.display().to_string()), "the config's path: {line}");
    assert!(line.contains("applications[0].routes[2].resource.id"), "the problem's path: {line}");

    // Another file swapped in for the config (an .env full of passwords):
    // refused, and nothing of it lands in the log or the admin's answer.
    let secrets = "DB_USER=app\nDB_PASSWORD=hunter2-s3cr3t\nAPI_KEY=\"sk_live_0123456789\n";
    std::fs::write(&config, secrets).expect("write");
    hup();
    eventually_async(Duration::from_secs(5), || async { (metric(g.admin, FAILURE).await >= Some(2.0)).then_some(()) })
        .await;
    let state = send_raw(g.admin, build_request("GET", "/reload", &[]).as_bytes()).await.json();
    assert_eq!(state["last"]["result"], "refused", "{state}");
    let log = std::fs::read_to_string(config.with_extension("err")).expect("stderr");
    for secret in ["hunter2-s3cr3t", "sk_live_0123456789", "DB_PASSWORD"] {
        assert!(!log.contains(secret), "the log quotes the swapped-in file: {log}");
        assert!(!state.to_string().contains(secret), "GET /reload quotes it: {state}");
    }
    assert_eq!(g.call("GET", ACCOUNT, &root).await.status, 200, "the policy in force stays");

    let mut fixed = good.clone();
    fixed.set("applications.0.routes.2.roles", json!(["writer"]));
    fixed.write(&config);
    hup();
    eventually_async(Duration::from_secs(5), || async { (metric(g.admin, SUCCESS).await >= Some(1.0)).then_some(()) })
        .await;
    assert_eq!(g.call("GET", ACCOUNT, &root).await.status, 200);
    assert!(metric(g.admin, last_success).await.expect("set") >= started);
    let log = std::fs::read_to_string(config.with_extension("err")).expect("stderr");
    assert_eq!(log.matches("SIGHUP: reloading the config").count(), 3, "{log}");
}

/// A reload that changes the upstream moves forwarding to it: the proxy
/// makes a new connection pool for it, the old upstream gets nothing
/// more, and a reload that leaves it alone keeps the pool.
#[tokio::test]
async fn a_reload_that_changes_the_upstream_forwards_to_the_new_one() {
    let mut h = Harness::start().await;
    let token = h.token("reader-1", json!([rule("*", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = format!("Bearer {token}");
    let get = |proxy| {
        let auth = auth.clone();
        async move { send_raw(proxy, build_request("GET", ACCOUNT, &[("Authorization", &auth)]).as_bytes()).await }
    };
    assert_eq!(get(h.proxy).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1, "the first upstream, before the reload");

    let second = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    h.rewrite(|d| {
        d.set("upstream.addresses", json!([second.addr.to_string()]));
    });
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        assert_eq!(get(h.proxy).await.status, 200);
    }
    assert!(h.upstream_received().is_empty(), "the old upstream got nothing after the reload");
    let moved = second.received();
    assert_eq!(moved.len(), 3);
    assert!(moved.iter().all(|r| r.target == ACCOUNT && r.header("x-narrowgate-subject") == Some("reader-1")));

    // Another change that leaves the upstream as it is: still the second.
    h.rewrite(|d| {
        d.set("forwarding.identity_headers.subject", "x-narrowgate-user");
    });
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(h.proxy).await.status, 200);
    assert_eq!((second.received().len(), h.upstream_received().len()), (4, 0));
    assert_eq!(second.received()[3].header("x-narrowgate-user"), Some("reader-1"));
    h.shutdown().await;
}
