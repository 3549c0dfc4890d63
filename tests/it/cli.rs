//! The binary's subcommands, run as a user would.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_narrowgate");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run narrowgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_examples_and_lists_every_problem() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, out, err) =
        run(&["check-config", &format!("{root}/config/demo.yaml"), &format!("{root}/config/minimal.yaml")]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("demo.yaml: ok (4 applications"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listeners: { proxy: nowhere }\nupstream: { addresses: [] }\nissuers: []\napplications: []\nextra: 1\n",
    )
    .expect("write");
    let (ok, _, err) = run(&["check-config", bad.to_str().expect("utf8")]);
    assert!(!ok);
    for want in ["listeners.proxy", "upstream.addresses", "issuers", "extra: unknown key"] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
}

#[cfg(unix)]
#[test]
fn check_config_warns_about_readable_secrets_and_strict_fails_on_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    let (ok, out, err) = run(&["keys", "generate", "--alg", "es256", "--out", d]);
    assert!(ok, "{err}");
    let kid = out.lines().next().and_then(|l| l.strip_prefix("kid: ")).expect("kid").to_string();
    let minimal = include_str!("../../config/minimal.yaml");
    let config = dir.path().join("issuer.yaml");
    let applications = &minimal[minimal.find("\napplications:").expect("applications")..];
    std::fs::write(
        &config,
        format!(
            "listeners: {{ proxy: 127.0.0.1:0 }}\nupstream: {{ addresses: [\"127.0.0.1:9\"] }}\n\
             issuers:\n  - name: ng\n    issuer: narrowgate\n    algorithms: [ES256]\n    \
             signing_keys: [{{ kid: {kid}, private_key_file: {kid}.pem }}]{applications}"
        ),
    )
    .expect("write");
    let path = config.to_str().expect("utf8");
    // Written 0600 by `keys generate`: clean, strict or not.
    let (ok, out, err) = run(&["check-config", "--strict", path]);
    assert!(ok && out.contains(": ok ("), "{out}{err}");
    std::fs::set_permissions(dir.path().join(format!("{kid}.pem")), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let (ok, out, err) = run(&["check-config", path]);
    assert!(ok, "a warning alone does not fail: {out}{err}");
    assert!(err.contains("warning: issuers[0].signing_keys[0].private_key_file") && err.contains("chmod 600"), "{err}");
    let (ok, out, err) = run(&["check-config", "--strict", path]);
    assert!(!ok, "--strict fails on the warning: {out}{err}");
    assert!(!err.contains("PRIVATE KEY") && !out.contains("PRIVATE KEY"));
}

#[test]
fn keys_sign_and_inspect_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    let (ok, out, err) = run(&["keys", "generate", "--alg", "eddsa", "--out", d]);
    assert!(ok, "{err}");
    let kid = out.lines().next().and_then(|l| l.strip_prefix("kid: ")).expect("kid").to_string();
    let private = dir.path().join(format!("{kid}.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, token, err) = run(&[
        "token",
        "sign",
        "--key",
        private.to_str().expect("utf8"),
        "--kid",
        &kid,
        "--sub",
        "alice",
        "--application",
        "metastats-api",
        "--resource",
        "account:a1",
        "--ttl",
        "2h",
    ]);
    assert!(ok, "{err}");
    let token = token.trim();
    let (h, p) = (token.split('.').next().expect("header"), token.split('.').nth(1).expect("payload"));
    assert!(!h.contains(['-', '_']) && !p.contains(['-', '_']), "MetaApi-unsafe encoding");
    let (ok, out, err) = run(&["token", "inspect", token]);
    assert!(ok, "{err}");
    assert!(out.contains("\"alg\": \"EdDSA\""), "{out}");
    assert!(out.contains("\"sub\": \"alice\""), "{out}");
    assert!(out.contains("expires: in 1h 59m") || out.contains("expires: in 2h 0m"), "{out}");
    assert!(out.contains("resources narrowed down: yes"), "{out}");
    let (ok, _, _) = run(&["token", "inspect", "not.a-jwt"]);
    assert!(!ok);
    // What is not a JWT is named, not refused: a reference token, an id.
    let (ok, out, _) = run(&["token", "inspect", "ngr_AAAA"]);
    assert!(ok && out.starts_with("a narrowgate reference token"), "{out}");
    let (ok, out, _) = run(&["token", "inspect", "sample-app-engine-1"]);
    assert!(ok && out.contains("opaque id"), "{out}");
}

/// The README's first command: the demo starts, its printed curl lines do
/// what they say, and Ctrl-C stops it cleanly.
#[tokio::test]
async fn the_demo_runs_and_its_examples_hold() {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--proxy",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            let done = line.contains("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines =
        tokio::time::timeout(Duration::from_secs(30), lines).await.expect("demo printed in time").expect("join");
    let export = |name: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
            .to_string()
    };
    let proxy: std::net::SocketAddr = export("NG_PROXY").trim_start_matches("http://").parse().expect("proxy addr");
    let narrowed = format!("Bearer {}", export("NG_NARROWED_TOKEN"));
    let expired = format!("Bearer {}", export("NG_EXPIRED_TOKEN"));
    let admin = format!("Bearer {}", export("NG_ADMIN_TOKEN"));
    let send = |method: &str, target: &str, auth: &str| {
        let req = support::build_request(method, target, &[("Authorization", auth)]);
        async move { support::send_raw(proxy, req.as_bytes()).await }
    };
    let allowed = send("GET", "/users/current/accounts/demo-account-1", &narrowed).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let other = send("GET", "/users/current/accounts/other-account", &narrowed).await;
    assert_eq!((other.status, other.reason().as_str()), (403, "resource_not_allowed"));
    let scope = send("POST", "/mt-manager/accounts/demo-account-1/trade", &narrowed).await;
    assert_eq!((scope.status, scope.reason().as_str()), (403, "insufficient_scope"));
    assert_eq!(scope.json()["missing_scopes"], serde_json::json!(["dealing"]));
    let old = send("GET", "/users/current/accounts/demo-account-1", &expired).await;
    assert_eq!((old.status, old.reason().as_str()), (401, "expired"));
    assert_eq!(send("POST", "/mt-manager/accounts/demo-account-1/trade", &admin).await.status, 200);
    assert!(lines.iter().filter(|l| l.starts_with("curl ")).count() >= 4);
    let api: std::net::SocketAddr = export("NG_API").trim_start_matches("http://").parse().expect("api addr");
    let who =
        support::send_raw(api, support::build_request("GET", "/v1/whoami", &[("Authorization", &narrowed)]).as_bytes())
            .await;
    assert_eq!((who.status, who.json()["subject"].as_str()), (200, Some("demo-web-app")));

    // Offline explain on the config the demo runs (NG_CONFIG): the demo's
    // JWTs and its store's reference tokens (Crafter's ids, read from the
    // running demo's SQLite file) get the gateway's verdicts; on the
    // repository's config/demo.yaml, whose key is not the demo's, the
    // token is `unknown_key` and the answer says where its config is.
    let config = export("NG_CONFIG");
    let engine = export("NG_CRAFTER_ENGINE");
    let explain = |config: &str, args: &[&str]| {
        let out = Command::new(BIN).args(["explain", "--config", config]).args(args).output().expect("explain");
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{stderr}");
        stdout
    };
    let narrowed_token = export("NG_NARROWED_TOKEN");
    let said = explain(&config, &["--token", &narrowed_token, "GET", "/users/current/accounts/demo-account-1"]);
    assert!(said.starts_with("GET /users/current/accounts/demo-account-1 → allow 200 allowed"), "{said}");
    let said = explain(&config, &["--token", &narrowed_token, "GET", "/users/current/accounts/other-account"]);
    assert!(said.contains("→ deny 403 resource_not_allowed"), "{said}");
    let crafter_target = format!("/profile/api/1/tenant/acme?accessTokenId={engine}");
    let live = send("GET", &crafter_target, "").await;
    assert_eq!(live.status, 200, "{}", live.body);
    let said = explain(&config, &["GET", &crafter_target]);
    assert!(said.starts_with("GET /profile/api/1/tenant/acme?accessTokenId=… → allow 200 allowed"), "{said}");
    assert!(!said.contains(&engine) && !said.contains(&narrowed_token), "{said}");
    let repo_config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.yaml");
    let said = explain(repo_config, &["--token", &narrowed_token, "GET", "/users/current/accounts/demo-account-1"]);
    assert!(said.contains("→ deny 401 unknown_key") && said.contains("NG_CONFIG"), "{said}");

    // Every curl line shows the status it is about.
    assert!(lines.iter().filter(|l| l.starts_with("curl ")).all(|l| l.contains("%{http_code}")), "{lines:?}");

    // config/enforce-only.yaml beside the demo, as the README runs it (here
    // on port 0 and pointed at this demo's addresses): the demo's tokens
    // verify through its JWKS.
    let echo = lines[0].rsplit("echo upstream ").next().expect("the echo's address").trim().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut doc =
        support::ConfigDoc::parse(&std::fs::read_to_string(format!("{root}/config/enforce-only.yaml")).expect("read"));
    doc.set("listeners", serde_json::json!({ "proxy": "127.0.0.1:0", "admin": "127.0.0.1:0" }))
        .set("upstream.addresses", serde_json::json!([echo]))
        .set("issuers.0.jwks_url", format!("http://{api}/.well-known/jwks.json"))
        .set("revocation.follow.urls", serde_json::json!([format!("http://{api}/v1/revocations")]))
        .set("revocation.follow.token_file", format!("{root}/config/keys/demo-feed.token"));
    let config = dir.path().join("enforce-only.yaml");
    doc.write(&config);
    let enforcer = support::serve_process(&config).await;
    let at = |path: &str, auth: &str| {
        let req = support::build_request("GET", path, &[("Authorization", auth)]);
        async move { support::send_raw(enforcer.proxy, req.as_bytes()).await }
    };
    assert_eq!(at("/users/current/accounts/demo-account-1", &narrowed).await.status, 200);
    let other = at("/users/current/accounts/other-account", &narrowed).await;
    assert_eq!((other.status, other.reason().as_str()), (403, "resource_not_allowed"));
    let old = at("/users/current/accounts/demo-account-1", &expired).await;
    assert_eq!((old.status, old.reason().as_str()), (401, "expired"));
    drop(enforcer);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "demo exited with {status}");
}

/// `narrowgate token …` / `registration …` against a running gateway, with
/// the API and the caller's token from the environment.
fn ng(api: std::net::SocketAddr, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("NARROWGATE_API", format!("http://{api}")).env_remove("NARROWGATE_TOKEN");
    if let Some(t) = token {
        cmd.env("NARROWGATE_TOKEN", t);
    }
    let out = cmd.output().expect("run narrowgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_operator_cli_drives_the_whole_token_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = narrowgate::echo::EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true";
    let g = support::serve_process(&support::process_config(dir.path(), "ng", echo.addr, store)).await;
    let api = g.api.expect("api listener");
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("bootstrap file").trim().to_string();
    let ok = |(success, out, err): (bool, String, String)| {
        assert!(success, "stdout: {out}\nstderr: {err}");
        out
    };
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON output");

    let me = json(&ok(ng(api, Some(&root), &["token", "whoami"])));
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str(), me["master"].as_bool()),
        (Some("bootstrap-admin"), Some("admin"), Some(true))
    );

    // Create, list, show.
    let web = ok(ng(api, Some(&root), &["token", "create", "--name", "web", "--lifetime", "2h", "--secret-only"]));
    assert_eq!(web.split('.').count(), 3, "a JWT on its own line");
    let listed = json(&ok(ng(api, Some(&root), &["token", "list", "--name", "web"])));
    let id = listed["tokens"][0]["id"].as_str().expect("listed").to_string();
    let shown = json(&ok(ng(api, Some(&root), &["token", "show", &id])));
    assert_eq!((shown["name"].as_str(), shown["form"].as_str()), (Some("web"), Some("jwt")));
    assert!(!shown.to_string().contains(&web), "never the secret");

    // The holder narrows its own token; the child works on the proxy within its narrower rules.
    let child = ok(ng(
        api,
        Some(&web),
        &["token", "narrow", "--resource", "account:a1", "--validity-hours", "0.5", "--secret-only"],
    ));
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &child).await.status, 200);
    assert_eq!(g.call("GET", "/users/current/accounts/a2", &child).await.status, 403);
    let (success, _, err) = ng(api, Some(&child), &["token", "narrow", "--resource", "account:a2"]);
    assert!(!success && err.contains("403 would_widen"), "{err}");

    // Revoking by name takes the child with it.
    assert_eq!(ok(ng(api, Some(&root), &["token", "revoke", "--name", "web"])), "done");
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &child).await.status, 401);
    let revoked = json(&ok(ng(api, Some(&root), &["token", "show", &id])));
    assert!(revoked["revokedAt"].is_i64());

    // Registration: minted by the admin, redeemed once without any other credential.
    let reg = ok(ng(
        api,
        Some(&root),
        &["registration", "create", "--name", "device-7", "--role", "User", "--ttl", "10m", "--secret-only"],
    ));
    let device = ok(ng(api, None, &["registration", "redeem", &reg, "--secret-only"]));
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &device).await.status, 200);
    let (success, _, err) = ng(api, None, &["registration", "redeem", &reg]);
    assert!(!success && err.contains("409 already_redeemed"), "{err}");

    // Clear errors: no token, a user token on admin commands, a bad id, a bad lifetime.
    let (success, _, err) = ng(api, None, &["token", "list"]);
    assert!(!success && err.contains("NARROWGATE_TOKEN"), "{err}");
    let (success, _, err) = ng(api, Some(&device), &["token", "list"]);
    assert!(!success && err.contains("403 admin_required"), "{err}");
    let (success, _, err) = ng(api, Some(&root), &["token", "show", "../admin"]);
    assert!(!success && err.contains("not a token id"), "{err}");
    let (success, _, err) = ng(api, Some(&root), &["token", "create", "--name", "x", "--lifetime", "soon"]);
    assert!(!success && err.contains("400 bad_request") && err.contains("lifetime"), "{err}");
    assert!(!err.contains(&root), "the caller's token is never echoed");
}

/// A second demo beside a running gateway: it fails on the taken address
/// before it creates or prints anything, and says which listener, which
/// address and why, once.
#[tokio::test]
async fn a_taken_address_stops_the_start_before_anything_is_written() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for listener in ["proxy", "api", "admin"] {
        let mut args = vec!["demo".to_string()];
        for flag in ["--proxy", "--api", "--admin"] {
            args.push(flag.to_string());
            args.push(if flag == format!("--{listener}") { addr.clone() } else { "127.0.0.1:0".into() });
        }
        let (ok, out, err) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args)
        })
        .await
        .expect("join");
        assert!(!ok, "{listener}: started on a taken address");
        assert!(!out.contains("token"), "{listener}: tokens were created and printed: {out}");
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error in {err}"));
        assert!(line.contains(&format!("the {listener} listener cannot listen on {addr}")), "{line}");
        assert!(line.contains(&format!("--{listener}")), "{listener}: how to choose another: {line}");
        assert_eq!(line.matches("in use").count(), 1, "the cause once: {line}");
    }
    drop(taken);
}

/// The same through `serve`: the store a config asks to create is not
/// created, and no bootstrap token file is written, when a listener's
/// address is taken.
#[tokio::test]
async fn serve_on_a_taken_address_creates_no_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true";
    let config = support::process_config(dir.path(), "ng", "127.0.0.1:9".parse().expect("addr"), store);
    let mut doc = support::ConfigDoc::parse(&std::fs::read_to_string(&config).expect("read"));
    doc.set("listeners.admin", addr.as_str());
    doc.write(&config);
    let (ok, out, err) = run(&["serve", "--config", config.to_str().expect("utf8")]);
    assert!(!ok);
    assert!(err.contains(&format!("the admin listener cannot listen on {addr}")), "{err}");
    assert!(!out.contains("token"), "{out}");
    assert!(!dir.path().join("data").exists(), "the store was created before the listeners were bound");
    drop(taken);
}

/// `log.format: json`: every line on stderr is a JSON object, without
/// terminal colours; an upstream failure's line names the upstream and the
/// OS error, which the client's 502 does not.
#[tokio::test]
async fn json_logs_name_a_failed_upstream_and_the_client_is_told_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true\n\
                 log:\n  format: json";
    // Port 1 on loopback: nothing listens there.
    let config = support::process_config(dir.path(), "ng", "127.0.0.1:1".parse().expect("addr"), store);
    let g = support::serve_process(&config).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("token").trim().to_string();
    let r = g.call("GET", "/users/current/accounts/a1", &root).await;
    assert_eq!((r.status, r.reason().as_str()), (502, "upstream_connect"), "{}", r.body);
    assert!(!r.body.contains("127.0.0.1:1") && !r.body.contains("refused"), "{}", r.body);
    drop(g);
    let log = std::fs::read_to_string(config.with_extension("err")).expect("stderr");
    assert!(!log.contains('\u{1b}'), "terminal colours in a log file");
    let events: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    let failed = events.iter().find(|e| e["message"] == "upstream failed").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(failed["upstream"], "127.0.0.1:1");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("refused")), "{failed}");
    assert_eq!(failed["reason"], "upstream_connect");
    assert_eq!(failed["upstream_name"], "default");
    let serving = events.iter().find(|e| e["message"] == "narrowgate is serving").expect("start line");
    assert!(serving["admin"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "a value, not Some(…): {serving}");
}

#[test]
fn token_sign_makes_many_distinct_tokens_for_load_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().to_str().expect("utf8");
    let (ok, out, err) = run(&["keys", "generate", "--alg", "es256", "--out", out_dir]);
    assert!(ok, "{err}");
    let kid = out.lines().find_map(|l| l.strip_prefix("kid: ")).expect("kid").to_string();
    let key = format!("{out_dir}/{kid}.pem");
    let (ok, out, err) = run(&["token", "sign", "--key", &key, "--kid", &kid, "--sub", "load", "--count", "3"]);
    assert!(ok, "{err}");
    let tokens: Vec<&str> = out.lines().collect();
    assert_eq!(tokens.len(), 3);
    let mut subjects = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for t in &tokens {
        let (ok, shown, _) = run(&["token", "inspect", t]);
        assert!(ok);
        let claim = |name: &str| {
            shown
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("\"{name}\": \"")))
                .map(|v| v.trim_end_matches(['"', ',']).to_string())
        };
        subjects.push(claim("sub").expect("sub"));
        assert!(ids.insert(claim("jti").expect("jti")), "each token its own id");
    }
    assert_eq!(subjects, ["load-1", "load-2", "load-3"]);
    let (ok, _, err) = run(&["token", "sign", "--key", &key, "--kid", &kid, "--claims", "x.json", "--count", "2"]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

/// Every shipped config passes `check-config --strict` as a fresh clone
/// checks it out (files 0644, directories 0755: git keeps no other modes),
/// so it starts without a warning too.
#[cfg(unix)]
#[test]
fn every_shipped_config_is_strict_clean_as_a_fresh_clone_checks_it_out() {
    use std::os::unix::fs::PermissionsExt;
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            }
        }
    }
    let clone = tempfile::tempdir().expect("tempdir");
    copy(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")), &clone.path().join("config"));
    let mut checked = 0;
    for entry in std::fs::read_dir(clone.path().join("config")).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (ok, out, err) = run(&["check-config", "--strict", path.to_str().expect("utf8")]);
            assert!(ok && !err.contains("warning"), "{}: {out}{err}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 4, "the shipped configs were found: {checked}");
}

/// `demo_token` spares only the demo's published feed token the mode
/// check: another token under it is refused (its value never printed), and
/// the published token without it is checked like any secret.
#[cfg(unix)]
#[test]
fn the_demo_token_flag_spares_only_the_published_token() {
    use std::os::unix::fs::PermissionsExt;
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |name: &str, token: &str, demo_token: bool| {
        let file = dir.path().join(format!("{name}.token"));
        std::fs::write(&file, token).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut doc = support::ConfigDoc::parse(
            &std::fs::read_to_string(format!("{root}/config/enforce-only.yaml")).expect("read"),
        );
        doc.set("revocation.follow.token_file", file.to_str().expect("utf8"));
        doc.set("revocation.follow.demo_token", demo_token);
        let path = dir.path().join(format!("{name}.yaml"));
        doc.write(&path);
        path
    };
    let published = std::fs::read_to_string(format!("{root}/config/keys/demo-feed.token")).expect("read");
    let secret = "a-real-reader-token-0123456789";

    let path = config("foreign", secret, true);
    let (ok, out, err) = run(&["check-config", path.to_str().expect("utf8")]);
    assert!(!ok, "another token under demo_token is refused: {out}{err}");
    assert!(err.contains("revocation.follow.demo_token") && err.contains("not the demo's published token"), "{err}");
    assert!(!err.contains(secret) && !out.contains(secret), "the token is never printed");

    let path = config("unflagged", &published, false);
    let (ok, out, err) = run(&["check-config", "--strict", path.to_str().expect("utf8")]);
    assert!(!ok && err.contains("revocation.follow.token_file") && err.contains("chmod 600"), "{out}{err}");

    let path = config("flagged", &published, true);
    let (ok, out, err) = run(&["check-config", "--strict", path.to_str().expect("utf8")]);
    assert!(ok && !err.contains("warning"), "{out}{err}");
}

/// What `serve` and `store init` will write where the config says is
/// checked by `check-config` as by them, before anything starts: each
/// problem once, naming the setting and the path, and nothing created.
#[test]
fn check_config_serve_and_store_init_refuse_the_same_unwritable_paths_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("a-file"), "x").expect("write");
    let base = support::process_config(d, "base", "127.0.0.1:9".parse().expect("addr"), "");
    let base = std::fs::read_to_string(base).expect("read");
    struct Case {
        name: &'static str,
        extra: &'static str,
        setting: &'static str,
        path: &'static str,
        /// `store init` writes this one too.
        store_init: bool,
    }
    let cases = [
        Case {
            name: "an audit file in a missing directory",
            extra: "audit: { sink: { file: { path: no-such-dir/audit.jsonl } } }",
            setting: "audit.sink.file.path",
            path: "no-such-dir",
            store_init: false,
        },
        Case {
            name: "an audit file behind a file",
            extra: "audit: { sink: { file: { path: a-file/audit.jsonl } } }",
            setting: "audit.sink.file.path",
            path: "a-file",
            store_init: false,
        },
        Case {
            name: "a store behind a file",
            extra: "store: { sqlite: { path: a-file/ng.db, create_if_missing: true, bootstrap_token_file: admin.token } }",
            setting: "store.sqlite.path",
            path: "a-file",
            store_init: true,
        },
        Case {
            name: "a bootstrap token file behind a file",
            extra: "store: { sqlite: { path: data/ng.db, create_if_missing: true, bootstrap_token_file: a-file/admin.token } }",
            setting: "store.sqlite.bootstrap_token_file",
            path: "a-file",
            store_init: true,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let mut doc = support::ConfigDoc::parse(&base);
        doc.merge_yaml(c.extra);
        let config = d.join(format!("case-{i}.yaml"));
        doc.write(&config);
        let config = config.to_str().expect("utf8");
        let mut commands = vec![vec!["check-config", config], vec!["serve", "--config", config]];
        if c.store_init {
            commands.push(vec!["store", "init", "--config", config]);
        }
        for args in commands {
            let (ok, out, err) = run(&args);
            assert!(!ok, "{}: {args:?} refused: {out}{err}", c.name);
            assert!(err.contains(c.setting) && err.contains(c.path), "{}: {args:?} names both: {err}", c.name);
            assert_eq!(err.matches(c.setting).count(), 1, "{}: {args:?} says it once: {err}", c.name);
            assert!(!err.contains("os error"), "{}: {args:?} explains itself: {err}", c.name);
        }
        assert!(!d.join("data").exists() && !d.join("admin.token").exists(), "{}: nothing created", c.name);
    }
}
