//! Sidecar injection: a pod (as raw JSON) → a JSON Patch that adds
//! narrowgate to it.
//!
//! The pod is never decoded into typed structs: the patch is a list of
//! targeted `add`/`replace`/`remove` operations on the JSON the API server
//! sent, so fields this code does not know (newer than it, or a
//! controller's own) survive as they were. `narrowgate inject` and the
//! admission webhook both call [`pod`]; they differ only in where the pod
//! sits in the document (`base`).
//!
//! What injection does, in the pod's own terms:
//! - adds the gateway as a native sidecar (an init container with
//!   `restartPolicy: Always`, placed first, so it is up before the app
//!   starts and does not keep a Job alive), or as an ordinary container for
//!   clusters older than 1.29;
//! - takes over the app's port: the app's port loses its name, which the
//!   gateway's port takes, so a Service that targets the port by name now
//!   reaches the gateway, which forwards to the app on localhost;
//! - rewrites the app's probes (and lifecycle handlers) that named that
//!   port to its number, so the kubelet still reaches the app directly,
//!   never through token enforcement;
//! - mounts the gateway's config (a ConfigMap) and secret (a Secret) the
//!   annotations name, and exposes its admin port for probes and scraping.
//!
//! A pod already injected yields no operation — but "already injected"
//! means the injector's own sidecar is there exactly as the injector
//! would write it for this pod under these options ([`verify`]). A pod
//! that only looks injected (the status annotation, a container named
//! `narrowgate`, the injector's volumes) is refused, never admitted bare:
//! a claim a pod can write itself would otherwise skip the gateway. An
//! opted-out or `hostNetwork` pod yields only an annotation that says why
//! it was left alone.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value, json};

/// The container's name, and the marker of an injected pod.
pub const SIDECAR: &str = "narrowgate";
/// `"false"` (label or annotation) leaves a pod alone; the webhook selects
/// pods by this label or by their namespace's.
pub const INJECT: &str = "narrowgate.io/inject";
/// Set on an injected pod: `injected`.
pub const STATUS: &str = "narrowgate.io/status";
/// Set on a pod left alone: why.
pub const SKIPPED: &str = "narrowgate.io/skipped";
/// The app's port: a number or a port name (default: the port named
/// `http`, else the first container's first port).
pub const APP_PORT: &str = "narrowgate.io/app-port";
/// The ConfigMap with the gateway's `config.yaml`.
pub const CONFIG: &str = "narrowgate.io/config";
/// The Secret mounted beside it (the revocation feed's token, keys).
pub const SECRET: &str = "narrowgate.io/secret";
/// `RUST_LOG` for the gateway (default `info`).
pub const LOG_LEVEL: &str = "narrowgate.io/log-level";
/// `native` or `container`: overrides the injector's `--sidecar-mode`.
pub const SIDECAR_MODE: &str = "narrowgate.io/sidecar-mode";
/// The gateway's resources: CPU and memory requests and limits.
pub const CPU_REQUEST: &str = "narrowgate.io/cpu-request";
pub const MEMORY_REQUEST: &str = "narrowgate.io/memory-request";
pub const CPU_LIMIT: &str = "narrowgate.io/cpu-limit";
pub const MEMORY_LIMIT: &str = "narrowgate.io/memory-limit";
/// The gateway's ports, when the defaults clash with the pod's.
pub const PROXY_PORT: &str = "narrowgate.io/proxy-port";
pub const ADMIN_PORT: &str = "narrowgate.io/admin-port";

const CONFIG_VOLUME: &str = "narrowgate-config";
const SECRET_VOLUME: &str = "narrowgate-secret";
const CONFIG_DIR: &str = "/etc/narrowgate/config";
const SECRET_DIR: &str = "/etc/narrowgate/secret";
/// The gateway's proxy port's name when the app's port had none.
const PROXY_PORT_NAME: &str = "ng-proxy";
const ADMIN_PORT_NAME: &str = "ng-admin";

/// How the gateway joins the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes ≥ 1.29):
    /// up before the app, stopped after it, never keeps a Job running.
    Native,
    /// An ordinary container (older clusters): starts beside the app, and
    /// a Job's pod runs until it is stopped.
    Container,
}

/// The injector's settings; pod annotations override most of them.
#[derive(Clone, Debug)]
pub struct Options {
    pub image: String,
    pub mode: SidecarMode,
    pub proxy_port: u16,
    pub admin_port: u16,
    pub config_map: String,
    pub secret: String,
    pub log_level: String,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: format!("narrowgate:{}", env!("CARGO_PKG_VERSION")),
            mode: SidecarMode::Native,
            proxy_port: 15080,
            admin_port: 15090,
            config_map: "narrowgate-sidecar".into(),
            secret: "narrowgate-sidecar".into(),
            log_level: "info".into(),
            cpu_request: "50m".into(),
            memory_request: "32Mi".into(),
            cpu_limit: None,
            memory_limit: Some("128Mi".into()),
        }
    }
}

/// What injection made of a pod.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The operations that add the gateway.
    Injected(Vec<PatchOperation>),
    /// Injected before: nothing to do.
    AlreadyInjected,
    /// Left alone; the operations (possibly none) record why.
    Skipped { reason: &'static str, ops: Vec<PatchOperation> },
}

impl Outcome {
    /// The operations to apply.
    pub fn ops(self) -> Vec<PatchOperation> {
        match self {
            Outcome::Injected(ops) | Outcome::Skipped { ops, .. } => ops,
            Outcome::AlreadyInjected => Vec::new(),
        }
    }
}

/// A pod that cannot be injected as asked (the webhook refuses it: a pod
/// meant to be protected must not start unprotected). Messages name
/// fields, annotations and port numbers, never a value the pod chose.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    #[error("the pod has no spec.containers")]
    NoContainers,
    #[error("annotation {0}: {1}")]
    Annotation(&'static str, String),
    #[error("the app's port {0}")]
    BadPort(&'static str),
    #[error("the gateway's proxy and admin ports are both {0}; set {PROXY_PORT} / {ADMIN_PORT} apart")]
    GatewayPortsCoincide(u16),
    #[error(
        "the app's port {port} is the gateway's {which} port: the gateway would forward to itself; \
         set {PROXY_PORT} / {ADMIN_PORT} to others"
    )]
    AppPortClash { port: u16, which: &'static str },
    #[error("port {port} is the gateway's {which} port; set {PROXY_PORT} / {ADMIN_PORT} to others")]
    PortClash { port: u16, which: &'static str },
    #[error("a port of the pod is named {0}, the name of the gateway's port; rename it")]
    PortNameReserved(&'static str),
    #[error(
        "another port of the pod has the name of the app's port {0}, which the gateway's port takes over: \
         a Service targeting it could reach either"
    )]
    PortNameTwice(u16),
    #[error(
        "the pod looks injected ({claim}) but {problem}; remove the injection from it and let the injector add \
         the gateway"
    )]
    NotInjected { claim: Claim, problem: Mismatch },
}

/// What makes a pod look injected. Such a pod is never injected again,
/// and admitted only when the claim is true (see [`verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The annotation `narrowgate.io/status: injected`.
    Status,
    /// A container or init container named `narrowgate`.
    Container,
    /// A volume of one of the injector's names.
    Volume(&'static str),
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Status => write!(f, "the annotation {STATUS}: injected"),
            Claim::Container => write!(f, "a container named {SIDECAR}"),
            Claim::Volume(name) => write!(f, "a volume named {name}"),
        }
    }
}

/// How a pod that looks injected differs from what the injector writes.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    #[error("it has no container named {SIDECAR}")]
    NoSidecar,
    #[error("it has more than one container named {SIDECAR}")]
    SidecarTwice,
    #[error(
        "the {SIDECAR} container is not where the native sidecar mode puts it (an init container with \
         restartPolicy: Always, no other such init container before it)"
    )]
    NotNative,
    #[error("the {SIDECAR} container is not where the container sidecar mode puts it (among the containers)")]
    NotContainer,
    #[error("the {SIDECAR} container differs from the injector's in {0}")]
    Sidecar(&'static str),
    #[error("the gateway does not forward to the app's port {0}")]
    Upstream(u16),
    #[error("no app container declares the gateway's port {0} as the injector does")]
    ProxyPort(u16),
    #[error("the volume {0} is missing, twice, or not the injector's")]
    Volume(&'static str),
    #[error("it lacks the annotation {STATUS}: injected")]
    Status,
    #[error("it uses the node's network (hostNetwork), where the injector never injects")]
    HostNetwork,
    #[error("it declares no port for the gateway to take over")]
    NoAppPort,
}

/// The app's port the gateway takes over.
struct AppPort {
    container: usize,
    /// Where the container declares it (`None`: a number the annotation
    /// gave, declared nowhere).
    index: Option<usize>,
    number: u16,
    name: Option<String>,
}

/// Inject the gateway into `pod` (an object with `metadata` and `spec`),
/// which sits at `base` in the document the patch applies to (`""` for a
/// pod, `/spec/template` for a Deployment).
pub fn pod(pod: &Value, base: &str, options: &Options) -> Result<Outcome, InjectError> {
    let meta = &pod["metadata"];
    let spec = &pod["spec"];
    let annotations = meta["annotations"].as_object();
    let annotation = |k: &str| text_at(annotations, k);
    let label = |k: &str| text_at(meta["labels"].as_object(), k);
    let containers = spec["containers"].as_array().filter(|c| !c.is_empty()).ok_or(InjectError::NoContainers)?;
    let init_containers = spec["initContainers"].as_array().map(Vec::as_slice).unwrap_or_default();

    if let Some(claim) = claim(spec, annotations) {
        // Whatever else the pod says (an opt-out too), a pod that looks
        // injected is checked: the injector's own sidecar, or a refusal.
        // Admitted on its word, it would run bare while looking protected
        // to everything that reads the status or the containers.
        verify(pod, claim, options)?;
        return Ok(Outcome::AlreadyInjected);
    }
    let skip = |reason: &'static str| {
        let ops = if annotation(SKIPPED) == Some(reason) {
            Vec::new()
        } else {
            annotate(base, meta, [(SKIPPED, reason.into())])
        };
        Ok(Outcome::Skipped { reason, ops })
    };
    if label(INJECT) == Some("false") || annotation(INJECT) == Some("false") {
        return skip("opted out");
    }
    if spec["hostNetwork"] == true {
        return skip("hostNetwork: the pod shares the node's ports");
    }

    let settings = settings(annotations, options)?;
    let Some(plan) = plan(containers, init_containers, annotation(APP_PORT), &settings, options)? else {
        // A worker, a Job: nothing listens, nothing to enforce.
        return skip("no container port to take over");
    };

    let mut ops = Vec::new();
    // The app's port gives its name to the gateway's port, declared on the
    // app's container (a Service resolves a named targetPort through the
    // pod's containers; before Kubernetes 1.32 not through init
    // containers, where a native sidecar lives — and the pod shares one
    // network namespace, so whichever container declares it, the port is
    // the gateway's). The app's own probes that named the port now say
    // its number.
    let app = &plan.app;
    let container_at = format!("{base}/spec/containers/{}", app.container);
    let c = &containers[app.container];
    if let (Some(_), Some(index)) = (&app.name, app.index) {
        ops.push(remove(format!("{container_at}/ports/{index}/name")));
        for probe in PROBES {
            rename_port(&mut ops, &c[probe], &format!("{container_at}/{probe}"), app);
        }
        for hook in ["postStart", "preStop"] {
            rename_port(&mut ops, &c["lifecycle"][hook], &format!("{container_at}/lifecycle/{hook}"), app);
        }
    }
    if c["ports"].is_array() {
        ops.push(add(format!("{container_at}/ports/-"), plan.takeover));
    } else {
        ops.push(add(format!("{container_at}/ports"), json!([plan.takeover])));
    }

    let spec_at = format!("{base}/spec");
    match settings.mode {
        SidecarMode::Native if spec["initContainers"].is_array() => {
            ops.push(add(format!("{spec_at}/initContainers/0"), plan.sidecar));
        }
        SidecarMode::Native => ops.push(add(format!("{spec_at}/initContainers"), json!([plan.sidecar]))),
        SidecarMode::Container => ops.push(add(format!("{spec_at}/containers/-"), plan.sidecar)),
    }
    if spec["volumes"].is_array() {
        ops.extend(plan.volumes.into_iter().map(|v| add(format!("{spec_at}/volumes/-"), v)));
    } else {
        ops.push(add(format!("{spec_at}/volumes"), Value::Array(plan.volumes.into())));
    }

    // Annotations last: the status marks a pod done, and scraping is
    // pointed at the admin port unless the pod already says otherwise.
    if annotation(SKIPPED).is_some() {
        let mut at = pointer(&format!("{base}/metadata/annotations"));
        at.push_back(SKIPPED);
        ops.push(PatchOperation::Remove(RemoveOperation { path: at }));
    }
    let mut notes = vec![(STATUS, Value::from("injected"))];
    if annotation("prometheus.io/scrape").is_none() {
        notes.push(("prometheus.io/scrape", "true".into()));
        notes.push(("prometheus.io/port", settings.admin_port.to_string().into()));
        notes.push(("prometheus.io/path", "/metrics".into()));
    }
    if annotation("kubectl.kubernetes.io/default-container").is_none()
        && let Some(name) = c["name"].as_str()
    {
        // `kubectl logs` and `exec` keep choosing the app.
        notes.push(("kubectl.kubernetes.io/default-container", name.into()));
    }
    ops.extend(annotate(base, meta, notes));
    Ok(Outcome::Injected(ops))
}

/// The probes of a container.
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// The injector's settings for one pod: its options, overridden by the
/// pod's annotations.
struct Settings<'a> {
    mode: SidecarMode,
    proxy_port: u16,
    admin_port: u16,
    log_level: &'a str,
    resources: Value,
    config_map: &'a str,
    secret: &'a str,
}

/// Read the pod's annotations over the options; refuse what cannot be.
fn settings<'a>(
    annotations: Option<&'a Map<String, Value>>,
    options: &'a Options,
) -> Result<Settings<'a>, InjectError> {
    let annotation = |k: &str| text_at(annotations, k);
    let mode = match annotation(SIDECAR_MODE) {
        None => options.mode,
        Some("native") => SidecarMode::Native,
        Some("container") => SidecarMode::Container,
        Some(_) => return Err(InjectError::Annotation(SIDECAR_MODE, "must be native or container".into())),
    };
    let port_setting = |key: &'static str, default: u16| match annotation(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| InjectError::Annotation(key, "must be a port number".into())),
    };
    let proxy_port = port_setting(PROXY_PORT, options.proxy_port)?;
    let admin_port = port_setting(ADMIN_PORT, options.admin_port)?;
    if proxy_port == admin_port {
        // Fail closed: one of the gateway's listeners could not bind, and
        // the admin port's probes would answer for the proxy.
        return Err(InjectError::GatewayPortsCoincide(proxy_port));
    }
    Ok(Settings {
        mode,
        proxy_port,
        admin_port,
        log_level: annotation(LOG_LEVEL).unwrap_or(&options.log_level),
        resources: resources(options, annotation)?,
        config_map: annotation(CONFIG).unwrap_or(&options.config_map),
        secret: annotation(SECRET).unwrap_or(&options.secret),
    })
}

/// What injection adds to a pod, before it is said as operations.
struct Plan {
    app: AppPort,
    /// The gateway's proxy port, declared on the app's container under
    /// the name the app's port gives up (`ng-proxy` when it had none).
    takeover: Value,
    sidecar: Value,
    volumes: [Value; 2],
}

/// What injection adds to a pod of these containers with these
/// settings; `None` when the pod has no port to take over.
fn plan(
    containers: &[Value],
    init_containers: &[Value],
    app_port_annotation: Option<&str>,
    s: &Settings,
    options: &Options,
) -> Result<Option<Plan>, InjectError> {
    let Some(app) = app_port(containers, app_port_annotation)? else { return Ok(None) };
    check_ports(containers, init_containers, &app, s)?;
    let takeover = json!({
        "name": app.name.as_deref().unwrap_or(PROXY_PORT_NAME),
        "containerPort": s.proxy_port,
        "protocol": "TCP",
    });
    let mut sidecar = sidecar(options, s, app.number);
    if s.mode == SidecarMode::Native {
        sidecar["restartPolicy"] = "Always".into();
    }
    let volumes = [
        json!({"name": CONFIG_VOLUME, "configMap": {"name": s.config_map}}),
        json!({"name": SECRET_VOLUME, "secret": {"secretName": s.secret, "optional": true}}),
    ];
    Ok(Some(Plan { app, takeover, sidecar, volumes }))
}

/// Refuse a pod whose ports clash with the gateway's, rather than make a
/// pod the API server rejects or a gateway that forwards to itself. Init
/// containers count: the pod is one network namespace, and a Service
/// resolves port names through them too (Kubernetes 1.32 and later).
fn check_ports(
    containers: &[Value],
    init_containers: &[Value],
    app: &AppPort,
    s: &Settings,
) -> Result<(), InjectError> {
    let gateway = [(s.proxy_port, "proxy"), (s.admin_port, "admin")];
    if let Some((port, which)) = gateway.into_iter().find(|(port, _)| *port == app.number) {
        // Fail closed: the gateway would listen where it forwards to, and
        // the app would be unreachable (or reachable only through itself).
        return Err(InjectError::AppPortClash { port, which });
    }
    let declared = || {
        let app_ports = containers.iter().enumerate().map(|(ci, c)| (Some(ci), c));
        app_ports.chain(init_containers.iter().map(|c| (None, c))).flat_map(|(ci, c)| {
            c["ports"].as_array().into_iter().flatten().enumerate().map(move |(pi, p)| ((ci, pi), p))
        })
    };
    for (_, p) in declared() {
        if let Some(name) = [PROXY_PORT_NAME, ADMIN_PORT_NAME].into_iter().find(|n| p["name"] == *n) {
            // Fail closed: port names are the pod's to share with Services;
            // two ports of one name reach whichever the kubelet finds first.
            return Err(InjectError::PortNameReserved(name));
        }
        let number = p["containerPort"].as_u64();
        if let Some((port, which)) = gateway.into_iter().find(|(port, _)| number == Some(u64::from(*port))) {
            // Fail closed: two listeners on one port of one network
            // namespace; the second to bind fails.
            return Err(InjectError::PortClash { port, which });
        }
    }
    if let Some(name) = &app.name {
        let app_at = app.index.map(|pi| (Some(app.container), pi));
        if declared().any(|(at, p)| Some(at) != app_at && p["name"] == name.as_str()) {
            // Fail closed: after the takeover the gateway's port would share
            // the name with that port, and a Service targeting the name
            // could reach it instead of the gateway.
            return Err(InjectError::PortNameTwice(app.number));
        }
    }
    Ok(())
}

/// What makes the pod look injected, if anything: the status annotation,
/// a container or init container named `narrowgate`, or a volume of the
/// injector's names.
fn claim(spec: &Value, annotations: Option<&Map<String, Value>>) -> Option<Claim> {
    if text_at(annotations, STATUS) == Some("injected") {
        return Some(Claim::Status);
    }
    let named = |list: &str, name: &str| spec[list].as_array().is_some_and(|l| l.iter().any(|c| c["name"] == name));
    if named("containers", SIDECAR) || named("initContainers", SIDECAR) {
        return Some(Claim::Container);
    }
    [CONFIG_VOLUME, SECRET_VOLUME].into_iter().find(|v| named("volumes", v)).map(Claim::Volume)
}

/// Every field of a v1 Container, in the API's order: the sidecar of a
/// pod that looks injected is compared with the injector's field by
/// field, and a refusal names the first that differs.
const CONTAINER_FIELDS: [&str; 25] = [
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];

/// Accept a pod that looks injected only if it carries the injector's own
/// sidecar, exactly as the injector would write it for this pod under
/// these options: the `narrowgate` container where the sidecar mode puts
/// it and equal to [`sidecar`]'s, the two volumes, the gateway's port on
/// the app's container under the name the app's port gave up, and the
/// status annotation. What the API server fills in before a webhook sees
/// the pod (see [`undefault_container`]) is no difference: the webhook
/// sees its own sidecar that way when it is called again
/// (`reinvocationPolicy: IfNeeded`), and so does `narrowgate inject` on
/// `kubectl get -o yaml`'s output.
///
/// The app's port is not in the injected pod as the injector found it:
/// the gateway's port took its name. So the pod as it was is recovered —
/// the sidecar and the volumes taken out, the gateway's port taken off
/// its container and its name given back to the port the sidecar
/// forwards to — and what injection would add to that pod ([`plan`], with
/// every check injection makes: the upstream is no port of the
/// gateway's, no port clashes) must be what the pod has.
fn verify(pod: &Value, claim: Claim, options: &Options) -> Result<(), InjectError> {
    let wrong = |problem| Err(InjectError::NotInjected { claim, problem });
    let spec = &pod["spec"];
    let annotations = pod["metadata"]["annotations"].as_object();
    if spec["hostNetwork"] == true {
        // Fail closed: the injector leaves such a pod alone (its app's
        // port is the node's, reachable around the gateway), so a
        // sidecar in it is none of the injector's.
        return wrong(Mismatch::HostNetwork);
    }
    let s = settings(annotations, options)?;
    let list = |key: &str| spec[key].as_array().cloned().unwrap_or_default();
    let (mut containers, mut init_containers) = (list("containers"), list("initContainers"));
    let is_sidecar = |c: &Value| c["name"] == SIDECAR;
    let (sidecar, placed) = if let Some(i) = init_containers.iter().position(is_sidecar) {
        // Fail closed on a native sidecar before it: it would start first
        // and could hold the gateway's ports and answer its probes. An
        // ordinary init container before it has ended by then.
        let first = !init_containers[..i].iter().any(|c| c["restartPolicy"] == "Always");
        (init_containers.remove(i), s.mode == SidecarMode::Native && first)
    } else if let Some(i) = containers.iter().position(is_sidecar) {
        (containers.remove(i), s.mode == SidecarMode::Container)
    } else {
        // Fail closed: the claim without the gateway.
        return wrong(Mismatch::NoSidecar);
    };
    if containers.iter().chain(&init_containers).any(is_sidecar) {
        // Fail closed: which of the two is the gateway is not for the
        // injector to guess.
        return wrong(Mismatch::SidecarTwice);
    }
    if !placed {
        // Fail closed: elsewhere, the gateway may start after the app (or,
        // as an ordinary init container, keep the app from starting).
        return wrong(match s.mode {
            SidecarMode::Native => Mismatch::NotNative,
            SidecarMode::Container => Mismatch::NotContainer,
        });
    }
    let upstream = sidecar["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "NARROWGATE_UPSTREAM")
        .and_then(|e| e["value"].as_str()?.strip_prefix("127.0.0.1:")?.parse::<u16>().ok());
    let Some(upstream) = upstream else {
        // Fail closed: the sidecar names no port it forwards to.
        return wrong(Mismatch::Sidecar("env"));
    };
    let takeover_at = containers.iter().enumerate().find_map(|(ci, c)| {
        let pi = c["ports"].as_array()?.iter().position(|p| p["containerPort"] == s.proxy_port)?;
        Some((ci, pi))
    });
    let Some((ci, pi)) = takeover_at else {
        // Fail closed: no Service could reach the gateway.
        return wrong(Mismatch::ProxyPort(s.proxy_port));
    };
    let mut takeover = Value::Null;
    if let Some(ports) = containers[ci].get_mut("ports").and_then(Value::as_array_mut) {
        takeover = ports.remove(pi);
        if let Some(name) = takeover["name"].as_str().filter(|n| *n != PROXY_PORT_NAME)
            && let Some(app) = ports.iter_mut().find(|p| p["containerPort"] == upstream && p.get("name").is_none())
        {
            app["name"] = name.into();
        }
    }

    let Some(plan) = plan(&containers, &init_containers, text_at(annotations, APP_PORT), &s, options)? else {
        // Fail closed: a gateway in a pod the injector would have left
        // alone is none of the injector's.
        return wrong(Mismatch::NoAppPort);
    };
    if plan.app.number != upstream {
        // Fail closed: the gateway forwards elsewhere than to the app.
        return wrong(Mismatch::Upstream(plan.app.number));
    }
    if plan.app.container != ci || undefault_port(takeover) != undefault_port(plan.takeover) {
        // Fail closed: a Service that targets the app's port by its name
        // may reach the app around the gateway.
        return wrong(Mismatch::ProxyPort(s.proxy_port));
    }
    let (actual, expected) = (undefault_container(sidecar), undefault_container(plan.sidecar));
    if let Some(field) = CONTAINER_FIELDS.into_iter().find(|f| actual.get(f) != expected.get(f)) {
        // Fail closed: another image, command, environment, port, probe,
        // privilege or mount makes it something other than the gateway.
        return wrong(Mismatch::Sidecar(field));
    }
    if actual.as_object().is_some_and(|c| c.keys().any(|k| !CONTAINER_FIELDS.contains(&k.as_str()))) {
        // Fail closed: a field newer than this injector may change what
        // the container runs.
        return wrong(Mismatch::Sidecar("fields the injector does not know"));
    }
    let volumes = list("volumes");
    for (name, expected) in [CONFIG_VOLUME, SECRET_VOLUME].into_iter().zip(plan.volumes) {
        let mut named = volumes.iter().filter(|v| v["name"] == name);
        match (named.next(), named.next()) {
            (Some(v), None) if undefault_volume(v.clone()) == undefault_volume(expected) => {}
            // Fail closed: the gateway would run on another config or
            // secret than the injector gave it, or the mount is ambiguous.
            _ => return wrong(Mismatch::Volume(name)),
        }
    }
    if text_at(annotations, STATUS) != Some("injected") {
        // Fail closed: the pod does not say what it is.
        return wrong(Mismatch::Status);
    }
    Ok(())
}

/// Remove `key` from the object `v` when it holds `default`.
fn strip_default(v: Option<&mut Value>, key: &str, default: Value) {
    if let Some(map) = v.and_then(Value::as_object_mut)
        && map.get(key) == Some(&default)
    {
        map.remove(key);
    }
}

/// A container as the injector compares it: without what the API server
/// fills in with its defaults before a webhook sees a pod (on decoding,
/// and again after each webhook's patch) — the termination message's
/// path and policy, probe timings and scheme, port protocols — and with
/// resource quantities by value, as the API server rewrites them in its
/// own spelling (`0.5Gi` comes back `512Mi`).
fn undefault_container(mut c: Value) -> Value {
    strip_default(Some(&mut c), "terminationMessagePath", "/dev/termination-log".into());
    strip_default(Some(&mut c), "terminationMessagePolicy", "File".into());
    for probe in PROBES {
        let mut p = c.get_mut(probe);
        for (key, default) in
            [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)]
        {
            strip_default(p.as_deref_mut(), key, default.into());
        }
        strip_default(p.and_then(|p| p.get_mut("httpGet")), "scheme", "HTTP".into());
    }
    for port in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        strip_default(Some(port), "protocol", "TCP".into());
    }
    for section in ["requests", "limits"] {
        let quantities = c.get_mut("resources").and_then(|r| r.get_mut(section)).and_then(Value::as_object_mut);
        for q in quantities.into_iter().flat_map(|q| q.values_mut()) {
            if let Some((digits, exponent)) = q.as_str().and_then(quantity) {
                *q = format!("{digits}e{exponent}").into();
            }
        }
    }
    c
}

/// A port as the injector compares it (the API server's default protocol
/// is TCP).
fn undefault_port(mut p: Value) -> Value {
    strip_default(Some(&mut p), "protocol", "TCP".into());
    p
}

/// A volume as the injector compares it (the API server's default mode
/// of a ConfigMap's or a Secret's files is 0644).
fn undefault_volume(mut v: Value) -> Value {
    for source in ["configMap", "secret"] {
        strip_default(v.get_mut(source), "defaultMode", 0o644.into());
    }
    v
}

/// The port to take over: the annotation's (a number or a name), else the
/// port named `http`, else the first container's first port; `None` when
/// the pod declares no port and names none.
fn app_port(containers: &[Value], wanted: Option<&str>) -> Result<Option<AppPort>, InjectError> {
    let ports = || {
        containers
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c["ports"].as_array().into_iter().flatten().enumerate().map(move |(pi, p)| (ci, pi, p)))
    };
    let found = match wanted {
        Some(w) => match w.parse::<u16>() {
            Ok(0) => return Err(InjectError::Annotation(APP_PORT, "must be a port number or name".into())),
            Ok(n) => match ports().find(|(_, _, p)| p["containerPort"] == n) {
                Some(found) => found,
                // A port the app does not declare: forwarded to, taken
                // over from no declaration.
                None => return Ok(Some(AppPort { container: 0, index: None, number: n, name: None })),
            },
            Err(_) => ports()
                .find(|(_, _, p)| p["name"] == w)
                .ok_or_else(|| InjectError::Annotation(APP_PORT, "names no port of the pod's containers".into()))?,
        },
        None => match ports().find(|(_, _, p)| p["name"] == "http").or_else(|| ports().next()) {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    let (container, index, p) = found;
    let number = p["containerPort"].as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0);
    let Some(number) = number else {
        return Err(InjectError::BadPort("has no valid containerPort"));
    };
    if p["protocol"].as_str().is_some_and(|proto| proto != "TCP") {
        return Err(InjectError::BadPort("is not TCP: an HTTP gateway cannot front it"));
    }
    if !p["hostPort"].is_null() {
        return Err(InjectError::BadPort("has a hostPort, which would reach the app around the gateway"));
    }
    Ok(Some(AppPort { container, index: Some(index), number, name: p["name"].as_str().map(str::to_string) }))
}

/// A probe's or hook's handler that names the app's port: say its number.
fn rename_port(ops: &mut Vec<PatchOperation>, handler: &Value, at: &str, app: &AppPort) {
    for kind in ["httpGet", "tcpSocket"] {
        if app.name.as_deref().is_some_and(|name| handler[kind]["port"] == name) {
            ops.push(replace(format!("{at}/{kind}/port"), app.number.into()));
        }
    }
}

/// The string at `key` of a map (labels, annotations).
fn text_at<'a>(map: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(key)).and_then(Value::as_str)
}

fn resources<'a>(options: &'a Options, annotation: impl Fn(&str) -> Option<&'a str>) -> Result<Value, InjectError> {
    let setting = |key: &'static str, default: Option<&str>| -> Result<Option<String>, InjectError> {
        match annotation(key) {
            None => Ok(default.map(str::to_string)),
            Some(v) if quantity(v).is_some() => Ok(Some(v.to_string())),
            Some(_) => Err(InjectError::Annotation(key, "is not a Kubernetes quantity (e.g. 100m, 64Mi)".into())),
        }
    };
    let mut requests = Map::new();
    let mut limits = Map::new();
    for (key, default, name) in [
        (CPU_REQUEST, Some(options.cpu_request.as_str()), "cpu"),
        (MEMORY_REQUEST, Some(options.memory_request.as_str()), "memory"),
    ] {
        if let Some(q) = setting(key, default)? {
            requests.insert(name.into(), q.into());
        }
    }
    for (key, default, name) in
        [(CPU_LIMIT, options.cpu_limit.as_deref(), "cpu"), (MEMORY_LIMIT, options.memory_limit.as_deref(), "memory")]
    {
        if let Some(q) = setting(key, default)? {
            limits.insert(name.into(), q.into());
        }
    }
    let mut r = Map::new();
    if !requests.is_empty() {
        r.insert("requests".into(), requests.into());
    }
    if !limits.is_empty() {
        r.insert("limits".into(), limits.into());
    }
    Ok(r.into())
}

/// A Kubernetes resource quantity's value as `digits × 10^exponent`, the
/// digits without a trailing zero: one value, one spelling (`0.5Gi` and
/// `512Mi`, `1e3` and `1k`). `None` for what is no quantity — digits with
/// an optional fraction and suffix (`100m`, `0.5`, `64Mi`, `1G`, `1e3`) —
/// or one too large to say exactly.
fn quantity(v: &str) -> Option<(u128, i64)> {
    let number_end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (number, suffix) = v.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0 || fraction.contains('.') {
        return None;
    }
    // SI suffixes are powers of 1000 from nano to exa, binary ones powers
    // of 1024 from kibi to exbi.
    const DECIMAL: [&str; 10] = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
    const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (decimal, binary) = if let Some(i) = DECIMAL.iter().position(|s| *s == suffix) {
        (3 * (i64::try_from(i).ok()? - 3), 0)
    } else if let Some(i) = BINARY.iter().position(|s| *s == suffix) {
        (0, 10 * (u32::try_from(i).ok()? + 1))
    } else {
        let e = suffix.strip_prefix(['e', 'E']).filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))?;
        (e.parse::<i64>().ok()?, 0)
    };
    let mut digits: u128 = 0;
    for d in whole.bytes().chain(fraction.bytes()) {
        digits = digits.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    digits = digits.checked_mul(1u128 << binary)?;
    let mut exponent = decimal - i64::try_from(fraction.len()).ok()?;
    if digits == 0 {
        return Some((0, 0));
    }
    while digits.is_multiple_of(10) {
        digits /= 10;
        exponent += 1;
    }
    Some((digits, exponent))
}

/// The gateway's container, forwarding to the app's port.
fn sidecar(options: &Options, s: &Settings, app_port: u16) -> Value {
    let admin_probe = |path: &str, period: u32, failures: u32| json!({"httpGet": {"path": path, "port": s.admin_port}, "periodSeconds": period, "failureThreshold": failures});
    json!({
        "name": SIDECAR,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "--config", format!("{CONFIG_DIR}/config.yaml")],
        "env": [
            {"name": "NARROWGATE_PROXY_LISTEN", "value": format!("0.0.0.0:{}", s.proxy_port)},
            {"name": "NARROWGATE_ADMIN_LISTEN", "value": format!("0.0.0.0:{}", s.admin_port)},
            {"name": "NARROWGATE_UPSTREAM", "value": format!("127.0.0.1:{app_port}")},
            {"name": "NARROWGATE_LOG_FORMAT", "value": "json"},
            {"name": "RUST_LOG", "value": s.log_level},
        ],
        // The proxy port is declared on the app's container (above).
        "ports": [
            {"name": ADMIN_PORT_NAME, "containerPort": s.admin_port, "protocol": "TCP"},
        ],
        // The app starts once the gateway listens; the pod is ready once
        // the gateway has its keys and revocations.
        "startupProbe": admin_probe("/healthz", 1, 60),
        "readinessProbe": admin_probe("/readyz", 2, 3),
        "livenessProbe": admin_probe("/healthz", 10, 3),
        "resources": s.resources,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": true},
            {"name": SECRET_VOLUME, "mountPath": SECRET_DIR, "readOnly": true},
        ],
    })
}

/// Set annotations on the pod whose `metadata` is `meta`: one `add`
/// each, or the whole map (or metadata) when there is none.
fn annotate(base: &str, meta: &Value, notes: impl IntoIterator<Item = (&'static str, Value)>) -> Vec<PatchOperation> {
    let notes: Vec<_> = notes.into_iter().collect();
    if meta["annotations"].is_object() {
        notes
            .into_iter()
            .map(|(k, v)| {
                let mut at = pointer(&format!("{base}/metadata/annotations"));
                at.push_back(k);
                PatchOperation::Add(AddOperation { path: at, value: v })
            })
            .collect()
    } else {
        let map: Map<String, Value> = notes.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if meta.is_object() {
            vec![add(format!("{base}/metadata/annotations"), map.into())]
        } else {
            vec![add(format!("{base}/metadata"), json!({ "annotations": map }))]
        }
    }
}

/// A pointer from a path whose segments need no escaping (`base` is made
/// by this module from fixed names and indices).
fn pointer(path: &str) -> PointerBuf {
    PointerBuf::parse(path).expect("the module's paths are well formed")
}

fn add(path: String, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: pointer(&path), value })
}

fn replace(path: String, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path: pointer(&path), value })
}

fn remove(path: String) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: pointer(&path) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_value_however_spelled() {
        for (a, b) in [
            ("0.5Gi", "512Mi"),
            ("1.5Mi", "1536Ki"),
            ("128Mi", "134217728"),
            ("1e3", "1k"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("0.0005", "500u"),
            ("0", "0m"),
        ] {
            assert!(quantity(a).is_some(), "{a}");
            assert_eq!(quantity(a), quantity(b), "{a} = {b}");
        }
        for (a, b) in [("1Mi", "1M"), ("100m", "1"), ("1Ki", "1k")] {
            assert_ne!(quantity(a), quantity(b), "{a} ≠ {b}");
        }
        for bad in ["", ".", "Mi", "lots", "1.2.3", "1x", "1e", "-1", "99999999999999999999999999999999999999999Ei"] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
    }
}
