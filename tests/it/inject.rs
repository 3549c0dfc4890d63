//! Sidecar injection against golden files: every `tests/golden/inject/
//! NAME.in.yaml` injected must equal `NAME.out.yaml` (run with
//! `NARROWGATE_BLESS=1` to write them after a deliberate change, then
//! read the diff). Each output is also a fixed point (injecting it again
//! changes nothing), each pod's webhook patch is checked in as
//! `NAME.patch.json` and, applied to the pod, gives the same pod as
//! `narrowgate inject`. CI runs kubernetes-validate over the outputs.

use std::path::{Path, PathBuf};

use narrowgate::kube::{inject_documents, webhook};
use serde_json::{Value, json};

use crate::kube_pods;
use kube_pods::{Refused, options, replica_pod, with};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject")
}

fn inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "the golden inputs are missing");
    v
}

fn sibling(input: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(input.to_string_lossy().replace(".in.yaml", suffix))
}

/// Compare with the golden file, or write it when blessing.
fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("NARROWGATE_BLESS").is_some() {
        std::fs::write(path, actual).expect("bless");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs (NARROWGATE_BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!("{} is missing (NARROWGATE_BLESS=1 writes it)", path.display())),
    }
}

#[test]
fn injection_matches_the_golden_files_and_is_idempotent() {
    let mut failures = Vec::new();
    for input in inputs() {
        let text = std::fs::read_to_string(&input).expect("read");
        let out = inject_documents(&text, &options()).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        check(&sibling(&input, ".out.yaml"), &out, &mut failures);
        let again = inject_documents(&out, &options()).expect("inject again");
        if again != out {
            failures.push(format!("{}: injecting the output again changed it:\n{again}", input.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The webhook's answer for a pod, the patch decoded.
fn webhook_patch(pod: &Value) -> Option<Value> {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5a0e2b8c-6f4e-4d43-9c1a-3f0d9e8b7a61",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let resp = webhook::review(&headers, &serde_json::to_vec(&review).expect("json"), &options());
    assert_eq!(resp.status(), 200);
    let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(resp.into_body(), usize::MAX))
        .expect("ready")
        .expect("body");
    let answer: Value = serde_json::from_slice(&body).expect("review");
    assert_eq!(answer["response"]["uid"], "5a0e2b8c-6f4e-4d43-9c1a-3f0d9e8b7a61");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let patch = answer["response"]["patch"].as_str()?;
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64");
    Some(serde_json::from_slice(&bytes).expect("patch json"))
}

#[test]
fn the_webhook_patch_gives_the_same_pod_as_inject() {
    let mut failures = Vec::new();
    for input in inputs().into_iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pod")))
    {
        let text = std::fs::read_to_string(&input).expect("read");
        let pod: Value = serde_saphyr::from_str(&text).expect("yaml");
        let injected: Value =
            serde_saphyr::from_str(&inject_documents(&text, &options()).expect("inject")).expect("yaml");
        let mut patched = pod.clone();
        let patch = webhook_patch(&pod);
        if let Some(patch) = &patch {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).expect("a JSON Patch");
            json_patch::patch(&mut patched, &ops).expect("the patch applies to the request's object");
        }
        assert_eq!(patched, injected, "{}: webhook and inject disagree", input.display());
        let shown = patch.map_or("[]\n".to_string(), |p| serde_json::to_string_pretty(&p).expect("json") + "\n");
        check(&sibling(&input, ".patch.json"), &shown, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn annotation_keys_are_escaped_in_patch_paths() {
    let pod = json!({
        "metadata": {"name": "p", "annotations": {"a/b": "c"}},
        "spec": {"containers": [{"name": "p", "ports": [{"containerPort": 8080}]}]},
    });
    let patch = webhook_patch(&pod).expect("a patch");
    let paths: Vec<&str> = patch.as_array().expect("ops").iter().filter_map(|op| op["path"].as_str()).collect();
    assert!(paths.contains(&"/metadata/annotations/narrowgate.io~1status"), "{paths:?}");
    assert!(paths.contains(&"/metadata/annotations/prometheus.io~1scrape"), "{paths:?}");
}

#[test]
fn pods_that_cannot_be_injected_as_asked_are_refused_with_the_reason() {
    let cases = [
        (json!({"narrowgate.io/app-port": "nope"}), 8080, "names no port"),
        (json!({"narrowgate.io/sidecar-mode": "sideways"}), 8080, "native or container"),
        (json!({"narrowgate.io/memory-limit": "lots"}), 8080, "quantity"),
        (json!({"narrowgate.io/proxy-port": "99999"}), 8080, "port number"),
        (json!({}), 15080, "port 15080 is the gateway's"),
        (json!({}), 15090, "port 15090 is the gateway's"),
    ];
    for (annotations, port, expected) in cases {
        let pod = json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"containers": [{"name": "p", "ports": [{"name": "http", "containerPort": port}]}]},
        });
        let err = narrowgate::kube::inject::pod(&pod, "", &options()).expect_err("refused");
        assert!(err.to_string().contains(expected), "{err} (expected {expected})");
    }
    for (port, expected) in [
        (json!({"containerPort": 5353, "protocol": "UDP"}), "is not TCP"),
        (json!({"containerPort": 8080, "hostPort": 80}), "hostPort"),
        (json!({"containerPort": 0}), "no valid containerPort"),
        (json!({"containerPort": "eighty"}), "no valid containerPort"),
    ] {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "p", "ports": [port]}]}});
        let err = narrowgate::kube::inject::pod(&pod, "", &options()).expect_err("refused");
        assert!(err.to_string().contains(expected), "{err} (expected {expected})");
    }
    for spec in [json!({}), json!({"containers": []}), json!({"containers": "x"})] {
        let pod = json!({"metadata": {"name": "p"}, "spec": spec});
        assert!(narrowgate::kube::inject::pod(&pod, "", &options()).is_err(), "{spec}");
    }
    // No port at all (a worker, a Job): left alone, the reason recorded;
    // so is a pod whose annotation says so.
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "p"}]}});
    match narrowgate::kube::inject::pod(&pod, "", &options()).expect("skipped") {
        narrowgate::kube::Outcome::Skipped { reason, ops } => {
            assert_eq!(reason, "no container port to take over");
            assert_eq!(ops.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    // The webhook refuses such a pod, saying why, not echoing the pod.
    let bad = json!({
        "metadata": {"name": "p", "annotations": {"narrowgate.io/app-port": "<script>"}},
        "spec": {"containers": [{"name": "p", "ports": [{"containerPort": 8080}]}]},
    });
    let err = narrowgate::kube::inject::pod(&bad, "", &options()).expect_err("refused");
    assert!(!err.to_string().contains("<script>"));
}

/// What the API server checks after the webhook: the pod parses as a
/// typed Pod (k8s-openapi), container names are unique, ports do not
/// clash (numbers, and names across the pod, which Services resolve),
/// and only init containers that are sidecars (`restartPolicy: Always`)
/// have probes.
fn assert_the_api_server_accepts(name: &str, metadata: &Value, spec: &Value) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod).unwrap_or_else(|e| panic!("{name}: not a Pod: {e}"));
    let spec = typed.spec.unwrap_or_else(|| panic!("{name}: no spec"));
    let init = spec.init_containers.clone().unwrap_or_default();
    let all: Vec<_> = spec.containers.iter().chain(init.iter()).collect();
    let mut names = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    let mut port_names = std::collections::HashSet::new();
    for c in &all {
        assert!(names.insert(c.name.clone()), "{name}: container name {} twice", c.name);
        for p in c.ports.iter().flatten() {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            assert!(ports.insert((p.container_port, protocol)), "{name}: port {} twice", p.container_port);
            if let Some(n) = &p.name {
                assert!(port_names.insert(n.clone()), "{name}: port name {n} twice");
                assert!(n.len() <= 15, "{name}: port name {n} is longer than 15");
            }
        }
    }
    for c in &init {
        let probed = c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some();
        assert!(
            !probed || c.restart_policy.as_deref() == Some("Always"),
            "{name}: init container {} has probes but is no sidecar",
            c.name
        );
    }
}

/// Every injected pod of the golden files passes what the API server
/// checks.
#[test]
fn injected_pods_pass_what_the_api_server_checks() {
    let mut pods = 0;
    for input in inputs() {
        let out = std::fs::read_to_string(sibling(&input, ".out.yaml")).expect("golden output");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out).expect("yaml");
        let docs = docs.into_iter().flat_map(|d| match d["kind"].as_str() {
            Some("List") => d["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![d],
        });
        for doc in docs {
            let Some(base) = narrowgate::kube::pod_template(doc["kind"].as_str().unwrap_or_default()) else { continue };
            let template = doc.pointer(base).expect("a pod template");
            let name = format!("{}: {} {}", input.display(), doc["kind"], doc["metadata"]["name"]);
            assert_the_api_server_accepts(&name, &template["metadata"], &template["spec"]);
            pods += 1;
        }
    }
    assert!(pods >= 15, "only {pods} pods checked");
}

/// `pod` as a manifest: the Pod `web` itself, or a Deployment `web`
/// whose template it is.
fn manifest(pod: &Value, kind: &str) -> String {
    let named = with(pod.clone(), |p| p["metadata"]["name"] = "web".into());
    let doc = match kind {
        "Pod" => named,
        _ => json!({
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": named["metadata"], "spec": named["spec"]}},
        }),
    };
    serde_saphyr::to_string(&doc).expect("yaml")
}

/// `narrowgate inject` refuses each pod, as a Pod and as a Deployment's
/// template, naming the document and the reason.
fn assert_inject_refuses(cases: Vec<Refused>) {
    for Refused { case, pod, reason } in cases {
        for kind in ["Pod", "Deployment"] {
            let err = inject_documents(&manifest(&pod, kind), &options()).expect_err(case).to_string();
            assert!(err.starts_with(&format!("document 0 ({kind} web): ")), "{case}: {err}");
            assert!(err.contains(reason), "{case}: {err} (expected {reason})");
            assert!(!err.contains("registry.example"), "{case}: the pod is not echoed: {err}");
        }
    }
}

#[test]
fn inject_refuses_pods_whose_ports_clash_with_the_gateways_naming_the_clash() {
    assert_inject_refuses(kube_pods::port_clashes());
}

#[test]
fn inject_refuses_pods_that_look_injected_without_the_injectors_sidecar() {
    assert_inject_refuses(kube_pods::false_claims());
}

/// A pod with the injector's own sidecar — as the injector wrote it, or
/// as the API server shows it — comes out of `narrowgate inject` exactly
/// as it went in, as a Pod and as a Deployment's template.
#[test]
fn inject_leaves_pods_with_the_injectors_own_sidecar_as_they_are() {
    for (case, pod) in kube_pods::genuinely_injected() {
        for kind in ["Pod", "Deployment"] {
            let text = manifest(&pod, kind);
            let out = inject_documents(&text, &options()).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(out, text, "{case} ({kind}): left as it is");
        }
        assert_the_api_server_accepts(case, &pod["metadata"], &pod["spec"]);
    }
}

/// `narrowgate inject FLAGS -f -` over `stdin`.
fn run_inject(flags: &[&str], stdin: &str) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_narrowgate"))
        .args(["inject", "--image", "narrowgate:test", "-f", "-"])
        .args(flags)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run inject");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    child.wait_with_output().expect("wait")
}

/// The command prints why it refuses a pod, fails, and writes no
/// manifest: for its own flags (the proxy port on the admin port) and
/// for a pod that looks injected without the gateway.
#[test]
fn the_command_prints_why_it_refuses_a_pod_and_writes_nothing() {
    let impostor = with(replica_pod(), |p| {
        p["metadata"]["annotations"] = json!({"narrowgate.io/status": "injected"});
        p["spec"]["initContainers"] = json!([{"name": "narrowgate", "image": "registry.example/impostor:1"}]);
    });
    for (flags, pod, expected) in [
        (
            &["--proxy-port", "15090"][..],
            replica_pod(),
            "document 0 (Pod web): the gateway's proxy and admin ports are both 15090",
        ),
        (
            &[][..],
            impostor,
            "document 0 (Pod web): the pod looks injected (the annotation narrowgate.io/status: injected) but \
             the narrowgate container differs from the injector's in env; remove the injection",
        ),
    ] {
        let out = run_inject(flags, &manifest(&pod, "Pod"));
        assert!(!out.status.success(), "the command fails");
        assert!(out.stdout.is_empty(), "and writes no manifest: {}", String::from_utf8_lossy(&out.stdout));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
}

/// The refusal's way out works: a pod whose port clashes is injected once
/// an annotation moves the gateway's port, into a pod the API server
/// accepts.
#[test]
fn moving_the_gateways_port_resolves_a_clash() {
    for (case, pod, annotation) in [
        (
            "a second port of the app is the proxy port",
            with(replica_pod(), |p| {
                p["spec"]["containers"][0]["ports"] = json!([
                {"name": "http", "containerPort": 8080}, {"name": "debug", "containerPort": 15080}])
            }),
            ("narrowgate.io/proxy-port", "15081"),
        ),
        (
            "the app's port is the admin port",
            with(replica_pod(), |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = 15090.into()),
            ("narrowgate.io/admin-port", "15091"),
        ),
    ] {
        assert!(inject_documents(&manifest(&pod, "Pod"), &options()).is_err(), "{case}: refused as it is");
        let moved = with(pod, |p| p["metadata"]["annotations"] = json!({annotation.0: annotation.1}));
        let out = inject_documents(&manifest(&moved, "Pod"), &options()).unwrap_or_else(|e| panic!("{case}: {e}"));
        let injected: Value = serde_saphyr::from_str(&out).expect("yaml");
        assert_eq!(injected["spec"]["initContainers"][0]["name"], "narrowgate", "{case}");
        assert_the_api_server_accepts(case, &injected["metadata"], &injected["spec"]);
    }
}
