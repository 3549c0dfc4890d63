//! No secret in any log (issue 20, item 12): the first admin credential of
//! a new store is the operator's own — the config holds its SHA-256, and
//! that digest is all the store ever records — or generated and written to
//! `bootstrap_token_file` (0600); it is printed only to someone reading
//! (a terminal, or `store init --print-secrets`), never into a Job's or a
//! service's log, and an unattended run with no way to hand it over
//! creates nothing. The Kubernetes manifests and the README's install
//! steps follow suit.

use crate::support;

use narrowgate::echo::EchoUpstream;
use serde_json::Value;
use support::{BIN, ConfigDoc, GatewayProcess, process_config, serve_process};

/// Run the binary to its end, stdout and stderr piped (not a terminal).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().expect("run narrowgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `narrowgate keys secret`, as the operator runs it: (secret, digest).
fn operator_secret() -> (String, String) {
    let (ok, out, err) = run(&["keys", "secret"]);
    assert!(ok, "{err}");
    let field = |name: &str| {
        out.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).expect("keys secret's output")
    };
    (field("secret:"), field("secret_sha256:"))
}

/// What the SQLite store at `db` keeps of the bootstrap admin token: its
/// secret's hash.
async fn stored_hash(db: &std::path::Path) -> Vec<u8> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=ro", db.display())).await.expect("open the store");
    let row = sqlx::query("SELECT secret_hash FROM tokens WHERE name = 'bootstrap-admin'")
        .fetch_one(&pool)
        .await
        .expect("the bootstrap admin's record");
    let hash: Vec<u8> = sqlx::Row::get(&row, "secret_hash");
    pool.close().await;
    hash
}

/// The token is a master admin on the api listener: it mints a token, and
/// lists Crafter's default tokens (their ids: credentials a new store
/// printed nowhere). The ids.
async fn works_as_master(g: &GatewayProcess, token: &str) -> Vec<String> {
    let who = g.api_call("GET", "/v1/whoami", Some(token), None).await.json();
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str(), who["master"].as_bool()),
        (Some("bootstrap-admin"), Some("admin"), Some(true)),
        "{who}"
    );
    let created = g.api_call("POST", "/v1/tokens", Some(token), Some(r#"{"name":"web","lifetime":"1h"}"#)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let listed = g.api_call("GET", &format!("/api/1/access_token/all.json?accessTokenId={token}"), None, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let ids: Vec<String> =
        listed.json().as_array().expect("a list").iter().filter_map(|t| t["id"].as_str().map(String::from)).collect();
    assert_eq!(ids.len(), 3, "Crafter's default tokens: {ids:?}");
    ids
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The operator keeps the secret and configures its SHA-256: `store init`
/// records that digest (the store never sees the secret), prints nothing
/// secret, and the operator's secret is a master admin on the api listener.
#[tokio::test]
async fn store_init_records_the_operators_digest_and_the_secret_works_as_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let (secret, digest) = operator_secret();
    let store = format!("store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_sha256: \"{digest}\"");
    let config = process_config(dir.path(), "ng", echo.addr, &store);
    let (ok, out, err) = run(&["store", "init", "--config", config.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created the store") && out.contains("bootstrap_token_sha256"), "{out}");

    // What the store saw: the digest, never the secret.
    assert_eq!(stored_hash(&dir.path().join("data/ng.db")).await, narrowgate::token::reference::hash(&secret).to_vec());
    assert!(
        !std::fs::read(dir.path().join("data/ng.db"))
            .expect("db")
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );

    // What the operator can do with it.
    let g = serve_process(&config).await;
    let crafter = works_as_master(&g, &secret).await;
    for id in &crafter {
        assert!(!out.contains(id.as_str()) && !err.contains(id.as_str()), "a Crafter id was printed: {out}");
    }
    assert!(out.contains("not printed"), "{out}");
}

/// A generated token, unattended: written to its file (mode 0600) and
/// nowhere else — not stdout, not the log on stderr; printed only when a
/// human asks with `--print-secrets`.
#[tokio::test]
async fn a_generated_bootstrap_token_goes_only_to_its_file_when_no_one_reads_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token";
    let config = process_config(dir.path(), "ng", echo.addr, store);
    let (ok, out, err) = run(&["store", "init", "--config", config.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    let file = dir.path().join("data/admin-token");
    let token = std::fs::read_to_string(&file).expect("the token file").trim().to_string();
    assert!(token.starts_with("ngr_"), "a reference token");
    assert!(!out.contains(&token) && !err.contains(&token), "printed:\n{out}\n{err}");
    assert!(out.contains(&format!("written to {}", file.display())), "{out}");
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    assert_eq!(stored_hash(&dir.path().join("data/ng.db")).await, narrowgate::token::reference::hash(&token).to_vec());
    let g = serve_process(&config).await;
    works_as_master(&g, &token).await;
    drop(g);

    // A human reading through a pipe asks for it.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = process_config(dir.path(), "ng", echo.addr, "store:\n  sqlite:\n    path: data/ng.db");
    let (ok, out, err) = run(&["store", "init", "--print-secrets", "--config", config.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    let printed = out
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap admin token (shown once; keep it safe): "))
        .expect("printed on request")
        .to_string();
    assert!(out.contains("Crafter Profile access token for engine (shown once"), "{out}");
    let g = serve_process(&config).await;
    works_as_master(&g, &printed).await;
}

/// Unattended, with neither a digest nor a file, the first admin would be
/// shown nowhere (or in a log): `store init` and a `serve` that may create
/// its store refuse, say how to hand it over, and create nothing. A
/// `serve` that creates its store with a file keeps the token out of its
/// output and logs.
#[tokio::test]
async fn an_unattended_run_with_no_way_to_hand_the_admin_over_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let config = process_config(dir.path(), "ng", echo.addr, "store:\n  sqlite:\n    path: data/ng.db");
    let (ok, out, err) = run(&["store", "init", "--config", config.to_str().expect("utf8")]);
    assert!(!ok, "created: {out}");
    assert!(err.contains("bootstrap_token_sha256") && err.contains("--print-secrets"), "{err}");
    assert!(!dir.path().join("data").exists(), "something was created");

    let serving = "store:\n  sqlite:\n    path: data/ng.db\n    create_if_missing: true";
    let config = process_config(dir.path(), "serve", echo.addr, serving);
    let (ok, _, err) = run(&["serve", "--config", config.to_str().expect("utf8")]);
    assert!(!ok && err.contains("bootstrap_token_file"), "{err}");
    assert!(!dir.path().join("data").exists(), "something was created");

    let with_file = format!("{serving}\n    bootstrap_token_file: data/admin-token");
    let config = process_config(dir.path(), "file", echo.addr, &with_file);
    let g = serve_process(&config).await;
    let token = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("file").trim().to_string();
    works_as_master(&g, &token).await;
    drop(g);
    let out = std::fs::read_to_string(config.with_extension("out")).expect("stdout");
    let log = std::fs::read_to_string(config.with_extension("err")).expect("stderr");
    assert!(!out.contains(&token) && !log.contains(&token), "the token reached the output or the log");
    assert!(out.contains("written to"), "{out}");
}

/// The issuer's Kubernetes manifests and the README's install steps: the
/// store-init Job's config names the first admin and the sidecars' feed
/// reader by digest (placeholders the operator replaces: refused until
/// then), every file a step reads is made by an earlier step, the Job never asks for the
/// secrets to be printed, and no step reads a token from a log.
#[test]
fn no_kubernetes_step_prints_the_first_admin_token() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));

    // The issuer's config, with the digest the operator puts there (and a
    // signing key of the test's): valid, and its store init is unattended
    // but hands the admin over.
    let map = ConfigDoc::parse(&read("deploy/kubernetes/issuer/config.yaml"));
    let mut doc = ConfigDoc::parse(map.0["data"]["config.yaml"].as_str().expect("the ConfigMap's config.yaml"));
    let store = doc.at("store.postgres").clone();
    assert!(store.get("bootstrap_token_file").is_none(), "a file in the pod is read by nobody: {store}");
    let placeholder = store["bootstrap_token_sha256"].as_str().expect("the first admin by its digest").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = narrowgate::token::testkit::TestKey::es256("issuer-1");
    std::fs::write(dir.path().join("issuer-1.pem"), &key.private_pem).expect("write");
    doc.set("issuers.0.signing_keys.0.private_key_file", "issuer-1.pem");
    // The api listener's certificate, as cert-manager's Secret holds it.
    let names = narrowgate::kube::certs::service_names("narrowgate-issuer", "narrowgate-system");
    let made = narrowgate::kube::certs::make(&names, 1).expect("a serving certificate");
    narrowgate::kube::certs::write(&made, &dir.path().join("tls")).expect("write");
    doc.set("tls.api.certificates.0.cert", "tls/tls.crt");
    doc.set("tls.api.certificates.0.key", "tls/tls.key");
    let shipped = narrowgate::config::Config::from_yaml(&serde_json::to_string(&doc.0).expect("json"), dir.path());
    let problems = shipped.expect_err("the placeholder is refused").0.join("\n");
    assert!(problems.contains("bootstrap_token_sha256: is the placeholder"), "{problems}");
    // The sidecars' feed reader, likewise: its placeholder is refused.
    assert!(problems.contains("revocation.feed_readers_sha256[0]: is the placeholder"), "{problems}");
    let (_, digest) = operator_secret();
    assert_ne!(digest, placeholder);
    doc.set("store.postgres.bootstrap_token_sha256", digest);
    let (_, feed_digest) = operator_secret();
    doc.set("revocation.feed_readers_sha256", serde_json::json!([feed_digest]));
    let config = narrowgate::config::Config::from_yaml(&serde_json::to_string(&doc.0).expect("json"), dir.path())
        .expect("the issuer's config with the operator's digest");
    assert!(narrowgate::service::bootstrap::check_handover(&config.bootstrap, false).is_ok());

    // The Job runs `store init` as it is: nothing printed on request.
    let job = ConfigDoc::parse(&read("deploy/kubernetes/issuer/store-init-job.yaml"));
    let args: Vec<&str> = job.0["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[..2], ["store", "init"], "{args:?}");
    assert!(!args.contains(&"--print-secrets"), "{args:?}");

    // No step anywhere reads a token from a log, or asks for it printed:
    // no manifest line (comments aside) and no kubectl line of the README.
    let mut steps: Vec<(String, String)> = Vec::new();
    for file in walk(&root.join("deploy/kubernetes")) {
        let text = std::fs::read_to_string(&file).expect("read");
        let name = file.strip_prefix(root).expect("inside the repository").display().to_string();
        steps.extend(text.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| (name.clone(), l.to_string())));
    }
    steps.extend(read("README.md").lines().filter(|l| l.contains("kubectl")).map(|l| ("README.md".into(), l.into())));
    assert!(steps.iter().any(|(_, l)| l.contains("job/narrowgate-store-init")), "the README waits for the Job");
    // A Secret made from a file is made from one an earlier step wrote.
    let readme = read("README.md");
    let mut from_files = 0;
    for (at, _) in readme.match_indices("--from-file=") {
        let file: String = readme[at + "--from-file=".len()..].chars().take_while(|c| !c.is_whitespace()).collect();
        let earlier = &readme[..at];
        assert!(
            earlier.contains(&format!("--out {file}")) || earlier.contains(&format!("> {file}")),
            "README: no step before makes {file}"
        );
        from_files += 1;
    }
    assert!(from_files >= 1, "the README makes the sidecars' Secret from a file");
    for (name, line) in &steps {
        let l = line.to_ascii_lowercase();
        assert!(!(l.contains("logs") && l.contains("store-init")), "{name}: {line}");
        assert!(!l.contains("--print-secrets"), "{name}: {line}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out
}
