//! The admission webhook through the real binary, over real TLS on
//! loopback: certificates from `narrowgate webhook certs`, a client that
//! trusts only that CA and calls the Service's DNS name (as the API server
//! does), AdmissionReviews in the shape the API server sends, and a
//! certificate rotated on disk picked up without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use narrowgate::kube::inject_documents;
use serde_json::{Value, json};

use crate::kube_pods;
use crate::support;
use kube_pods::{Refused, replica_pod as pod};
use support::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_narrowgate");
const SERVICE: &str = "narrowgate-injector.narrowgate-system.svc";

/// `narrowgate webhook certs` into `dir`; the caBundle it printed.
fn make_certs(dir: &Path) -> String {
    let out = Command::new(BIN).args(["webhook", "certs", "--out"]).arg(dir).output().expect("run webhook certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let bundle = stdout.lines().find_map(|l| l.strip_prefix("caBundle: ")).expect("a caBundle line").to_string();
    let decoded = base64::engine::general_purpose::STANDARD.decode(&bundle).expect("base64");
    assert_eq!(decoded, std::fs::read(dir.join("ca.crt")).expect("ca.crt"), "the caBundle is the CA certificate");
    bundle
}

struct Webhook {
    child: Child,
    addr: SocketAddr,
    /// Where its stderr (its log) goes.
    log: std::path::PathBuf,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The webhook on the certificates in `dir`, with `flags` beside the
/// test's own; its log (stderr, at the default level) in `dir/webhook.err`.
async fn start(dir: &Path, flags: &[&str]) -> Webhook {
    let addresses = dir.join("addresses.json");
    let log = dir.join("webhook.err");
    let child = Command::new(BIN)
        .args(["webhook", "--listen", "127.0.0.1:0", "--reload-interval", "1s", "--image", "narrowgate:test"])
        .args(flags)
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--addresses-file")
        .arg(&addresses)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("the webhook's log file"))
        .spawn()
        .expect("start the webhook");
    let addr = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&addresses).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["webhook"].as_str()?.parse().ok()
    })
    .await;
    Webhook { child, addr, log }
}

/// A client that trusts only `ca_pem` and reaches the webhook by the
/// Service's name.
fn client(ca_pem: &[u8], addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).expect("CA")])
        .resolve(SERVICE, addr)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://{SERVICE}:{}{path}", addr.port())
}

/// A Pod CREATE as the API server sends it for a ReplicaSet's pod: no
/// name, only generateName, no namespace in the object.
fn pod_review(uid: &str, dry_run: bool) -> Value {
    review_of(uid, dry_run, pod())
}

/// The review of a Pod CREATE of `object`.
fn review_of(uid: &str, dry_run: bool, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "8b2e5d1c-0c2f-4b8e-9f3e-2d1a7c6b5e4f",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
            },
            "object": object,
            "oldObject": null,
            "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

async fn post(client: &reqwest::Client, addr: SocketAddr, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    client
        .post(url(addr, "/inject"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the webhook answers over TLS")
}

#[tokio::test]
async fn the_webhook_injects_over_tls_and_picks_up_a_rotated_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key")).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the serving key is its owner's only");
    let webhook = start(dir.path(), &[]).await;
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca");
    let c = client(&ca, webhook.addr);

    let health = c.get(url(webhook.addr, "/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);

    // A pod: the patch, applied to the request's object, is inject's pod.
    for dry_run in [false, true] {
        let uid = if dry_run { "0f6a1e2d-dry-run" } else { "3f0c9a52-5d1e-4c6b-9a8e-0b7c2e1f4d11" };
        let resp = post(
            &c,
            webhook.addr,
            "application/json",
            serde_json::to_vec(&pod_review(uid, dry_run)).unwrap_or_default(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let review: Value = resp.json().await.expect("a review");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], uid);
        assert_eq!(review["response"]["allowed"], true);
        assert_eq!(review["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(review["response"]["patch"].as_str().expect("a patch"))
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON Patch");
        let mut patched = pod();
        json_patch::patch(&mut patched, &patch).expect("applies to the request's object");
        let yaml = serde_saphyr::to_string(&pod()).expect("yaml");
        let injected: Value =
            serde_saphyr::from_str(&inject_documents(&yaml, &kube_pods::options()).expect("inject")).expect("yaml");
        assert_eq!(patched, injected, "the webhook and `narrowgate inject` make the same pod");
        assert_eq!(patched["spec"]["initContainers"][0]["name"], "narrowgate");
        assert_eq!(patched["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(patched["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"], 8080);
        assert_eq!(patched["spec"]["volumes"][0]["name"], "kube-api-access-x7k2p", "existing fields stay");
    }

    // Not a pod, not a CREATE: allowed, unchanged.
    let mut config_map = pod_review("cm-1", false);
    config_map["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    config_map["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "configmaps"});
    config_map["request"]["object"] = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let review: Value = post(&c, webhook.addr, "application/json", serde_json::to_vec(&config_map).unwrap_or_default())
        .await
        .json()
        .await
        .expect("a review");
    assert_eq!(review["response"], json!({"uid": "cm-1", "allowed": true}));
    let mut update = pod_review("up-1", false);
    update["request"]["operation"] = "UPDATE".into();
    let review: Value = post(&c, webhook.addr, "application/json", serde_json::to_vec(&update).unwrap_or_default())
        .await
        .json()
        .await
        .expect("review");
    assert_eq!(review["response"], json!({"uid": "up-1", "allowed": true}));

    // A wrong content type, a body that is no review.
    let body = serde_json::to_vec(&pod_review("x", false)).unwrap_or_default();
    assert_eq!(post(&c, webhook.addr, "text/plain", body).await.status(), 415);
    let resp = post(&c, webhook.addr, "application/json", b"{\"secret-looking\": [".to_vec()).await;
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap_or_default().contains("secret-looking"), "the body is not echoed");

    // Plain HTTP is not served.
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", webhook.addr)).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // Rotation: a new CA and certificate written over the files is served
    // within the reload interval, without a restart.
    make_certs(dir.path());
    let new_ca = std::fs::read(dir.path().join("ca.crt")).expect("ca");
    assert_ne!(new_ca, ca);
    let fresh = client(&new_ca, webhook.addr);
    // Picked up within 10 s (the reload tick is 1 s, in the child process).
    support::eventually_async(Duration::from_secs(10), || async {
        fresh.get(url(webhook.addr, "/healthz")).send().await.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    let stale = client(&ca, webhook.addr);
    assert!(stale.get(url(webhook.addr, "/healthz")).send().await.is_err(), "the old CA no longer verifies it");

    // A broken pair on disk keeps the last good one: once the webhook has
    // tried it (its log says so at the next reload tick), it still serves
    // the good one. Only the log written from here on counts: the rotation
    // above may have met a half-written pair and said the same.
    let logged = std::fs::read(&webhook.log).map_or(0, |l| l.len());
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").expect("write");
    eventually(Duration::from_secs(10), || {
        let log = std::fs::read(&webhook.log).ok()?;
        String::from_utf8_lossy(log.get(logged..)?).contains("the new certificate files do not load").then_some(())
    })
    .await;
    assert_eq!(fresh.get(url(webhook.addr, "/healthz")).send().await.expect("still served").status(), 200);
}

/// A webhook on fresh certificates (with `flags`), and a client that
/// trusts them; the directory holds the files while the test runs.
async fn serving(flags: &[&str]) -> (tempfile::TempDir, Webhook, reqwest::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let webhook = start(dir.path(), flags).await;
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca");
    let client = client(&ca, webhook.addr);
    (dir, webhook, client)
}

/// The webhook's answer to a Pod CREATE of `object`: the review's
/// `response`.
async fn answer(c: &reqwest::Client, webhook: &Webhook, uid: &str, object: Value) -> Value {
    let body = serde_json::to_vec(&review_of(uid, false, object)).unwrap_or_default();
    let resp = post(c, webhook.addr, "application/json", body).await;
    assert_eq!(resp.status(), 200);
    let review: Value = resp.json().await.expect("a review");
    assert_eq!(review["response"]["uid"], uid);
    review["response"].clone()
}

/// Each pod is refused: not allowed, a 403 status whose message names the
/// reason, and no patch.
async fn assert_refused(c: &reqwest::Client, webhook: &Webhook, cases: Vec<Refused>) {
    for (i, Refused { case, pod, reason }) in cases.into_iter().enumerate() {
        let response = answer(c, webhook, &format!("refused-{i}"), pod).await;
        assert_eq!(response["allowed"], false, "{case}: {response}");
        assert_eq!(response["status"]["code"], 403, "{case}: {response}");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("narrowgate: ") && message.contains(reason),
            "{case}: {message} (expected {reason})"
        );
        assert!(!message.contains("registry.example"), "{case}: the pod is not echoed: {message}");
        assert!(response.get("patch").is_none() && response.get("patchType").is_none(), "{case}: a patch: {response}");
    }
}

#[tokio::test]
async fn the_webhook_refuses_pods_whose_ports_clash_with_the_gateways_naming_the_clash() {
    let (_dir, webhook, c) = serving(&[]).await;
    assert_refused(&c, &webhook, kube_pods::port_clashes()).await;

    // The injector's own ports set to coincide: every pod is refused.
    let (_dir, webhook, c) = serving(&["--proxy-port", "15090"]).await;
    let cases = vec![Refused {
        case: "the injector's proxy port is its admin port",
        pod: pod(),
        reason: "the gateway's proxy and admin ports are both 15090",
    }];
    assert_refused(&c, &webhook, cases).await;
}

#[tokio::test]
async fn the_webhook_refuses_pods_that_look_injected_without_its_sidecar() {
    let (_dir, webhook, c) = serving(&[]).await;
    assert_refused(&c, &webhook, kube_pods::false_claims()).await;
}

/// Called again after another webhook's patch (`reinvocationPolicy:
/// IfNeeded`), the webhook sees its own sidecar as the API server
/// defaulted it: allowed, no patch. So is every pod that carries the
/// injector's sidecar exactly.
#[tokio::test]
async fn the_webhook_admits_its_own_sidecar_unchanged_when_called_again() {
    let (_dir, webhook, c) = serving(&[]).await;
    let first = answer(&c, &webhook, "first", pod()).await;
    let patch =
        base64::engine::general_purpose::STANDARD.decode(first["patch"].as_str().expect("a patch")).expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON Patch");
    let mut patched = pod();
    json_patch::patch(&mut patched, &patch).expect("applies to the request's object");
    let again = answer(&c, &webhook, "again", kube_pods::defaulted(patched)).await;
    assert_eq!(again, json!({"uid": "again", "allowed": true}), "no patch the second time");

    for (i, (case, pod)) in kube_pods::genuinely_injected().into_iter().enumerate() {
        let uid = format!("genuine-{i}");
        let response = answer(&c, &webhook, &uid, pod).await;
        assert_eq!(response, json!({"uid": uid, "allowed": true}), "{case}");
    }
}

#[test]
fn the_webhook_needs_its_certificate() {
    let out = Command::new(BIN).args(["webhook", "--listen", "127.0.0.1:0"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        Command::new(BIN).args(["webhook", "certs", "--days", "0", "--out"]).arg(dir.path()).output().expect("run");
    assert!(!out.status.success(), "a validity of 0 days is refused");
}

#[test]
fn inject_runs_over_files_and_standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject/workloads.in.yaml");
    let expected =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject/workloads.out.yaml"))
            .expect("golden");
    let out = Command::new(BIN)
        .args(["inject", "--image", "narrowgate:test", "-f"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("out.yaml"))
        .output()
        .expect("run inject");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.yaml")).expect("out"), expected);

    let mut child = Command::new(BIN)
        .args(["inject", "--image", "narrowgate:test", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run inject");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: p\n      ports: [{containerPort: 8080, hostPort: 80}]\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success(), "a pod that cannot be injected fails the command");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("document 0 (Pod p)") && err.contains("hostPort"), "{err}");
}

/// The sidecar's per-pod settings: the environment the injector sets
/// replaces the config's listeners and upstream, and a reload (SIGHUP)
/// keeps them.
#[tokio::test]
async fn serve_takes_listeners_and_upstream_from_the_environment() {
    let upstream = narrowgate::echo::EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let dir = tempfile::tempdir().expect("tempdir");
    // The file's addresses are unusable here: only the environment's work.
    let config = "listeners: { proxy: \"192.0.2.1:1\", admin: \"192.0.2.1:2\" }\n\
                  upstream: { addresses: [\"192.0.2.1:3\"] }\n\
                  issuers: [{ name: x, issuer: x, algorithms: [ES256], jwks_file: jwks.json }]\n\
                  applications:\n  - application: a\n    services: [{ service: rest }]\n    routes:\n      - { route: GET /open, public: true }\n";
    let out =
        Command::new(BIN).args(["keys", "generate", "--alg", "es256", "--out"]).arg(dir.path()).output().expect("keys");
    let kid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("kid: ").map(str::to_string))
        .expect("a kid");
    let config = config.replace(
        "jwks_file: jwks.json",
        &format!("keys: [{{ kid: {kid}, algorithm: ES256, public_key_file: {kid}.pub.pem }}]"),
    );
    let config = config.as_str();
    std::fs::write(dir.path().join("config.yaml"), config).expect("config");
    let addresses = dir.path().join("addresses.json");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path().join("config.yaml"))
        .arg("--addresses-file")
        .arg(&addresses)
        .env("NARROWGATE_PROXY_LISTEN", "127.0.0.1:0")
        .env("NARROWGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("NARROWGATE_UPSTREAM", upstream.addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let (proxy, admin): (SocketAddr, SocketAddr) = eventually(Duration::from_secs(10), || {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&addresses).ok()?).ok()?;
        Some((v["proxy"].as_str()?.parse().ok()?, v["admin"].as_str()?.parse().ok()?))
    })
    .await;
    let http = reqwest::Client::new();
    let get = |addr: SocketAddr, path: &str| http.get(format!("http://{addr}{path}")).send();
    assert_eq!(get(admin, "/healthz").await.expect("admin").status(), 200);
    assert_eq!(get(proxy, "/open").await.expect("proxy").status(), 200);
    assert_eq!(upstream.received().len(), 1, "forwarded to the environment's upstream");

    // A reload applies the environment again (the file still names
    // unusable addresses).
    std::fs::write(dir.path().join("config.yaml"), config.replace("/open", "/open2")).expect("config");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    // The reload applies within 10 s.
    support::eventually_async(Duration::from_secs(10), || async {
        get(proxy, "/open2").await.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    assert_eq!(upstream.received().len(), 2, "still the environment's upstream after the reload");
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
}
