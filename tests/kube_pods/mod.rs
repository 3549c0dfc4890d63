//! Pods for the injector's tests, shared by `tests/inject.rs` (what
//! `narrowgate inject` makes of them) and `tests/webhook.rs` (what the
//! webhook answers for them over TLS): a pod as the API server hands it
//! to a webhook, and the pods the injector must refuse, each with the
//! words its refusal must contain.

use narrowgate::kube::Options;
use serde_json::{Value, json};

/// A pod the injector refuses.
pub struct Refused {
    /// What is wrong with it, in a few words.
    pub case: &'static str,
    pub pod: Value,
    /// What the refusal must say.
    pub reason: &'static str,
}

/// A ReplicaSet's pod as the API server sends it to a webhook: no name,
/// only `generateName`, no namespace in the object, defaults filled in.
/// The app `web` listens on its port `http` (8080), which its readiness
/// probe names.
pub fn replica_pod() -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7d4b9c8f6d-",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d",
                "uid": "c1d2e3f4-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
            "containers": [{
                "name": "web", "image": "registry.example/web:1.4.2",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "resources": {},
                "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

/// The injector's options in these tests (the webhook under test runs
/// with the same).
pub fn options() -> Options {
    Options { image: "narrowgate:test".into(), ..Options::default() }
}

/// `pod` after `edit`.
pub fn with(mut pod: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut pod);
    pod
}

/// The replica pod with these annotations.
fn annotated(annotations: Value) -> Value {
    with(replica_pod(), |p| p["metadata"]["annotations"] = annotations)
}

/// The replica pod with one more container (or init container, `list`
/// `initContainers`) declaring `ports`.
fn beside(list: &str, ports: Value) -> Value {
    with(replica_pod(), |p| {
        let other = json!({"name": "helper", "image": "registry.example/helper:1", "ports": ports});
        match p["spec"][list].as_array_mut() {
            Some(containers) => containers.push(other),
            None => p["spec"][list] = json!([other]),
        }
    })
}

/// Pods whose ports clash with the gateway's (15080 proxy, 15090 admin,
/// ports named `ng-proxy` and `ng-admin`): injected, they would be pods the
/// API server rejects or gateways that forward to themselves.
pub fn port_clashes() -> Vec<Refused> {
    let app_port =
        |port: u16| with(replica_pod(), |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = port.into());
    vec![
        Refused {
            case: "the app's declared port is the proxy port",
            pod: app_port(15080),
            reason: "the app's port 15080 is the gateway's proxy port",
        },
        Refused {
            case: "the app's declared port is the admin port",
            pod: app_port(15090),
            reason: "the app's port 15090 is the gateway's admin port",
        },
        Refused {
            case: "the app-port annotation names the proxy port, declared nowhere",
            pod: annotated(json!({"narrowgate.io/app-port": "15080"})),
            reason: "the app's port 15080 is the gateway's proxy port",
        },
        Refused {
            case: "the app-port annotation names the admin port, declared nowhere",
            pod: annotated(json!({"narrowgate.io/app-port": "15090"})),
            reason: "the app's port 15090 is the gateway's admin port",
        },
        Refused {
            case: "the proxy-port annotation moves the proxy onto the app's port",
            pod: annotated(json!({"narrowgate.io/proxy-port": "8080"})),
            reason: "the app's port 8080 is the gateway's proxy port",
        },
        Refused {
            case: "the admin-port annotation moves the admin port onto the app's port",
            pod: annotated(json!({"narrowgate.io/admin-port": "8080"})),
            reason: "the app's port 8080 is the gateway's admin port",
        },
        Refused {
            case: "the proxy-port annotation puts the proxy on the admin port",
            pod: annotated(json!({"narrowgate.io/proxy-port": "15090"})),
            reason: "the gateway's proxy and admin ports are both 15090",
        },
        Refused {
            case: "the admin-port annotation puts the admin port on the proxy port",
            pod: annotated(json!({"narrowgate.io/admin-port": "15080"})),
            reason: "the gateway's proxy and admin ports are both 15080",
        },
        Refused {
            case: "another container declares the proxy port",
            pod: beside("containers", json!([{"containerPort": 15080}])),
            reason: "port 15080 is the gateway's proxy port",
        },
        Refused {
            case: "an init container declares the admin port",
            pod: beside("initContainers", json!([{"containerPort": 15090}])),
            reason: "port 15090 is the gateway's admin port",
        },
        Refused {
            case: "another container's port is named ng-admin",
            pod: beside("containers", json!([{"name": "ng-admin", "containerPort": 9000}])),
            reason: "a port of the pod is named ng-admin",
        },
        Refused {
            case: "an init container's port is named ng-proxy",
            pod: beside("initContainers", json!([{"name": "ng-proxy", "containerPort": 9000}])),
            reason: "a port of the pod is named ng-proxy",
        },
        Refused {
            case: "the app's own port is named ng-admin",
            pod: with(replica_pod(), |p| {
                p["spec"]["containers"][0]["ports"][0]["name"] = "ng-admin".into();
                p["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "ng-admin".into();
            }),
            reason: "a port of the pod is named ng-admin",
        },
        Refused {
            case: "another container's port has the app port's name",
            pod: beside("containers", json!([{"name": "http", "containerPort": 9000}])),
            reason: "another port of the pod has the name of the app's port 8080",
        },
        Refused {
            case: "an init container's port has the app port's name",
            pod: beside("initContainers", json!([{"name": "http", "containerPort": 9000}])),
            reason: "another port of the pod has the name of the app's port 8080",
        },
    ]
}

/// `pod` with the webhook's patch applied.
pub fn injected(pod: &Value) -> Value {
    let ops = narrowgate::kube::inject::pod(pod, "", &options()).expect("the pod can be injected").ops();
    assert!(!ops.is_empty(), "the pod is injected");
    with(pod.clone(), |p| json_patch::patch(p, &ops).expect("the patch applies"))
}

/// `pod` as the API server hands it to a webhook that is called again
/// after another webhook's patch (or as `kubectl get -o yaml` shows it):
/// its defaults filled into every container and volume.
pub fn defaulted(pod: Value) -> Value {
    fn fill(v: &mut Value, defaults: &[(&str, Value)]) {
        if let Some(map) = v.as_object_mut() {
            for (key, value) in defaults {
                map.entry(*key).or_insert_with(|| value.clone());
            }
        }
    }
    with(pod, |p| {
        for list in ["containers", "initContainers"] {
            for c in p["spec"][list].as_array_mut().into_iter().flatten() {
                fill(
                    c,
                    &[
                        ("terminationMessagePath", "/dev/termination-log".into()),
                        ("terminationMessagePolicy", "File".into()),
                    ],
                );
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    let Some(probe) = c.get_mut(probe) else { continue };
                    let timings = [
                        ("timeoutSeconds", 1),
                        ("periodSeconds", 10),
                        ("successThreshold", 1),
                        ("failureThreshold", 3),
                    ];
                    fill(probe, &timings.map(|(k, v)| (k, v.into())));
                    if let Some(get) = probe.get_mut("httpGet") {
                        fill(get, &[("scheme", "HTTP".into())]);
                    }
                }
                for port in c["ports"].as_array_mut().into_iter().flatten() {
                    fill(port, &[("protocol", "TCP".into())]);
                }
            }
        }
        for v in p["spec"]["volumes"].as_array_mut().into_iter().flatten() {
            for source in ["configMap", "secret"] {
                if let Some(source) = v.get_mut(source) {
                    fill(source, &[("defaultMode", 420.into())]);
                }
            }
        }
    })
}

/// The replica pod injected, as the API server hands it back.
pub fn genuine() -> Value {
    defaulted(injected(&replica_pod()))
}

/// Pods that carry the injector's own sidecar exactly (but for what the
/// API server fills in, and what other admission plugins add beside it):
/// left as they are.
pub fn genuinely_injected() -> Vec<(&'static str, Value)> {
    let annotated_genuine = |annotations: Value| defaulted(injected(&annotated(annotations)));
    vec![
        ("the webhook's own injection, defaulted", genuine()),
        (
            "a memory limit the API server respells (0.5Gi comes back 512Mi)",
            with(annotated_genuine(json!({"narrowgate.io/memory-limit": "0.5Gi"})), |p| {
                p["spec"]["initContainers"][0]["resources"]["limits"]["memory"] = "512Mi".into();
            }),
        ),
        ("the container sidecar mode", annotated_genuine(json!({"narrowgate.io/sidecar-mode": "container"}))),
        ("the app's port a number declared nowhere", annotated_genuine(json!({"narrowgate.io/app-port": "9000"}))),
        (
            "the app's port named by annotation, on a second container",
            defaulted(injected(&with(beside("containers", json!([{"name": "api", "containerPort": 3000}])), |p| {
                p["metadata"]["annotations"] = json!({"narrowgate.io/app-port": "api"});
            }))),
        ),
        (
            "an ordinary init container another webhook put first, a container and a volume beside",
            with(genuine(), |p| {
                let spec = &mut p["spec"];
                let init = spec["initContainers"].as_array_mut().expect("init containers");
                init.insert(0, json!({"name": "vault-agent-init", "image": "registry.example/vault:1"}));
                let containers = spec["containers"].as_array_mut().expect("containers");
                containers.push(json!({"name": "log-shipper", "image": "registry.example/shipper:2"}));
                let volumes = spec["volumes"].as_array_mut().expect("volumes");
                volumes.push(json!({"name": "vault-secrets", "emptyDir": {"medium": "Memory"}}));
            }),
        ),
        (
            "opted out by annotation after it was injected",
            with(genuine(), |p| p["metadata"]["annotations"]["narrowgate.io/inject"] = "false".into()),
        ),
    ]
}

/// The genuine pod after `edit` of its sidecar (the first init
/// container).
fn sidecar_edited(edit: impl FnOnce(&mut Value)) -> Value {
    with(genuine(), |p| edit(&mut p["spec"]["initContainers"][0]))
}

/// A container named `narrowgate` that is not the gateway.
fn impostor() -> Value {
    json!({"name": "narrowgate", "image": "registry.example/impostor:1", "restartPolicy": "Always"})
}

/// Pods that look injected — the status annotation, a container named
/// `narrowgate`, the injector's volumes — without the injector's sidecar
/// as the injector writes it: refused, never admitted bare.
pub fn false_claims() -> Vec<Refused> {
    let with_impostor = |annotations: Value, labels: Value| {
        with(replica_pod(), |p| {
            p["metadata"]["annotations"] = annotations;
            p["metadata"]["labels"] = labels;
            p["spec"]["initContainers"] = json!([impostor()]);
        })
    };
    let status = json!({"narrowgate.io/status": "injected"});
    vec![
        Refused {
            case: "the status annotation alone",
            pod: annotated(status.clone()),
            reason: "looks injected (the annotation narrowgate.io/status: injected) but it has no container named narrowgate",
        },
        Refused {
            case: "a container named narrowgate alone",
            pod: with(replica_pod(), |p| p["spec"]["containers"].as_array_mut().expect("containers").push(impostor())),
            reason: "(a container named narrowgate) but the narrowgate container is not where the native sidecar mode puts it",
        },
        Refused {
            case: "the status annotation and an init container named narrowgate",
            pod: with_impostor(status.clone(), json!({"app": "web"})),
            reason: "the narrowgate container differs from the injector's in env",
        },
        Refused {
            case: "the injector's volume alone",
            pod: with(replica_pod(), |p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .expect("volumes")
                    .push(json!({"name": "narrowgate-config", "emptyDir": {}}));
            }),
            reason: "(a volume named narrowgate-config) but it has no container named narrowgate",
        },
        Refused {
            case: "opted out by annotation, with an impostor",
            pod: with_impostor(json!({"narrowgate.io/inject": "false", "narrowgate.io/status": "injected"}), json!({})),
            reason: "the narrowgate container differs from the injector's in env",
        },
        Refused {
            case: "opted out by label, with an impostor",
            pod: with_impostor(json!({}), json!({"narrowgate.io/inject": "false"})),
            reason: "(a container named narrowgate) but the narrowgate container differs from the injector's in env",
        },
        Refused {
            case: "the injector's sidecar without the status annotation",
            pod: with(genuine(), |p| p["metadata"]["annotations"] = json!({})),
            reason: "(a container named narrowgate) but it lacks the annotation narrowgate.io/status: injected",
        },
        Refused {
            case: "another image",
            pod: sidecar_edited(|c| c["image"] = "registry.example/impostor:1".into()),
            reason: "the narrowgate container differs from the injector's in image",
        },
        Refused {
            case: "a command of its own",
            pod: sidecar_edited(|c| c["command"] = json!(["/bin/sleep", "infinity"])),
            reason: "the narrowgate container differs from the injector's in command",
        },
        Refused {
            case: "other arguments",
            pod: sidecar_edited(|c| c["args"] = json!(["serve", "--config", "/tmp/open.yaml"])),
            reason: "the narrowgate container differs from the injector's in args",
        },
        Refused {
            case: "one more environment variable",
            pod: sidecar_edited(|c| {
                c["env"].as_array_mut().expect("env").push(json!({"name": "NARROWGATE_SHADOW", "value": "true"}));
            }),
            reason: "the narrowgate container differs from the injector's in env",
        },
        Refused {
            case: "the upstream on the gateway's own proxy port",
            pod: sidecar_edited(|c| c["env"][2]["value"] = "127.0.0.1:15080".into()),
            reason: "the gateway does not forward to the app's port 8080",
        },
        Refused {
            case: "the upstream on the gateway's admin port",
            pod: sidecar_edited(|c| c["env"][2]["value"] = "127.0.0.1:15090".into()),
            reason: "the gateway does not forward to the app's port 8080",
        },
        Refused {
            case: "no upstream",
            pod: sidecar_edited(|c| c["env"] = json!([])),
            reason: "the narrowgate container differs from the injector's in env",
        },
        Refused {
            case: "other ports",
            pod: sidecar_edited(|c| c["ports"] = json!([])),
            reason: "the narrowgate container differs from the injector's in ports",
        },
        Refused {
            case: "no memory limit",
            pod: sidecar_edited(|c| c["resources"] = json!({})),
            reason: "the narrowgate container differs from the injector's in resources",
        },
        Refused {
            case: "an ordinary init container (no restartPolicy)",
            pod: sidecar_edited(|c| _ = c.as_object_mut().expect("a container").remove("restartPolicy")),
            reason: "the narrowgate container differs from the injector's in restartPolicy",
        },
        Refused {
            case: "one more mount",
            pod: sidecar_edited(|c| {
                c["volumeMounts"]
                    .as_array_mut()
                    .expect("mounts")
                    .push(json!({"name": "kube-api-access-x7k2p", "mountPath": "/token"}));
            }),
            reason: "the narrowgate container differs from the injector's in volumeMounts",
        },
        Refused {
            case: "the startup probe on the app's port",
            pod: sidecar_edited(|c| c["startupProbe"]["httpGet"]["port"] = 8080.into()),
            reason: "the narrowgate container differs from the injector's in startupProbe",
        },
        Refused {
            case: "run as root",
            pod: sidecar_edited(|c| c["securityContext"]["runAsUser"] = 0.into()),
            reason: "the narrowgate container differs from the injector's in securityContext",
        },
        Refused {
            case: "a field the injector does not know",
            pod: sidecar_edited(|c| c["x-entrypoint-override"] = json!(["/bin/true"])),
            reason: "the narrowgate container differs from the injector's in fields the injector does not know",
        },
        Refused {
            case: "another native sidecar ahead of it",
            pod: with(genuine(), |p| {
                let early = json!({"name": "early", "image": "registry.example/early:1", "restartPolicy": "Always"});
                p["spec"]["initContainers"].as_array_mut().expect("init containers").insert(0, early);
            }),
            reason: "the narrowgate container is not where the native sidecar mode puts it",
        },
        Refused {
            case: "moved among the containers",
            pod: with(genuine(), |p| {
                let sidecar = p["spec"]["initContainers"].as_array_mut().expect("init containers").remove(0);
                p["spec"]["containers"].as_array_mut().expect("containers").push(sidecar);
            }),
            reason: "the narrowgate container is not where the native sidecar mode puts it",
        },
        Refused {
            case: "a native sidecar where the annotation asks for a container",
            pod: with(genuine(), |p| p["metadata"]["annotations"]["narrowgate.io/sidecar-mode"] = "container".into()),
            reason: "the narrowgate container is not where the container sidecar mode puts it",
        },
        Refused {
            case: "two containers named narrowgate",
            pod: with(genuine(), |p| {
                let copy = p["spec"]["initContainers"][0].clone();
                p["spec"]["containers"].as_array_mut().expect("containers").push(copy);
            }),
            reason: "it has more than one container named narrowgate",
        },
        Refused {
            case: "the config volume on another ConfigMap",
            pod: with(genuine(), |p| p["spec"]["volumes"][1]["configMap"]["name"] = "open-config".into()),
            reason: "the volume narrowgate-config is missing, twice, or not the injector's",
        },
        Refused {
            case: "no secret volume",
            pod: with(genuine(), |p| _ = p["spec"]["volumes"].as_array_mut().expect("volumes").remove(2)),
            reason: "the volume narrowgate-secret is missing, twice, or not the injector's",
        },
        Refused {
            case: "the config volume twice",
            pod: with(genuine(), |p| {
                let copy = p["spec"]["volumes"][1].clone();
                p["spec"]["volumes"].as_array_mut().expect("volumes").push(copy);
            }),
            reason: "the volume narrowgate-config is missing, twice, or not the injector's",
        },
        Refused {
            case: "the gateway's port not declared, the app's port named again",
            pod: with(genuine(), |p| {
                p["spec"]["containers"][0]["ports"] =
                    json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
            }),
            reason: "no app container declares the gateway's port 15080 as the injector does",
        },
        Refused {
            case: "the app's port keeps its name, the gateway's port is ng-proxy",
            pod: with(genuine(), |p| {
                p["spec"]["containers"][0]["ports"] = json!([
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "ng-proxy", "containerPort": 15080, "protocol": "TCP"},
                ]);
            }),
            reason: "no app container declares the gateway's port 15080 as the injector does",
        },
        Refused {
            case: "the gateway's port on another container than the app's",
            pod: with(genuine(), |p| {
                let takeover = p["spec"]["containers"][0]["ports"].as_array_mut().expect("ports").remove(1);
                let helper = json!({"name": "helper", "image": "registry.example/helper:1", "ports": [takeover]});
                p["spec"]["containers"].as_array_mut().expect("containers").insert(0, helper);
            }),
            reason: "no app container declares the gateway's port 15080 as the injector does",
        },
        Refused {
            case: "no port of the app's for the gateway to take over",
            pod: with(genuine(), |p| _ = p["spec"]["containers"][0]["ports"].as_array_mut().expect("ports").remove(0)),
            reason: "it declares no port for the gateway to take over",
        },
        Refused {
            case: "a hostNetwork pod",
            pod: with(genuine(), |p| p["spec"]["hostNetwork"] = true.into()),
            reason: "it uses the node's network (hostNetwork), where the injector never injects",
        },
        Refused {
            case: "the app declaring the gateway's admin port too",
            pod: with(genuine(), |p| {
                p["spec"]["containers"][0]["ports"]
                    .as_array_mut()
                    .expect("ports")
                    .push(json!({"containerPort": 15090}));
            }),
            reason: "port 15090 is the gateway's admin port",
        },
    ]
}
