//! Pods for the injector's tests, shared by `tests/inject.rs` (what
//! `narrowgate inject` makes of them) and `tests/webhook.rs` (what the
//! webhook answers for them over TLS): a pod as the API server hands it
//! to a webhook, and the pods the injector must refuse, each with the
//! words its refusal must contain.

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
