//! The binary's subcommands, run as a user would.

mod support;

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
    assert!(out.contains("demo.yaml: ok (3 applications"), "{out}");

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
    let (ok, _, _) = run(&["token", "inspect", "garbage"]);
    assert!(!ok);
}

/// The README's first command: the demo starts, its printed curl lines do
/// what they say, and Ctrl-C stops it cleanly.
#[tokio::test]
async fn the_demo_runs_and_its_examples_hold() {
    let mut child = Command::new(BIN)
        .args(["demo", "--proxy", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--api", "127.0.0.1:0"])
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

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "demo exited with {status}");
}
