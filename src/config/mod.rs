//! Config: the YAML file → a validated [`Config`].
//!
//! Each concern has its module, holding the shape of its section in the
//! file (serde, unknown keys refused), its validated types, and the code
//! that turns one into the other: `network` (listeners, upstream, server
//! limits, trusted proxies, credentials, forwarding, cache), `issuers`
//! (issuers, keys, signing, issuance bounds), `manifest` (applications and
//! routes → the router), `store` (the store and revocations), `facades`.
//! Durations deserialize once, through [`duration::HumanDuration`]. Every
//! problem is collected and reported at once with its path
//! (`applications[0].routes[2].resource.id: …`). Loading reads key files
//! but binds nothing and spawns nothing; what a command will write where
//! the config says (the audit file, the store) is checked apart, by
//! `preflight`, before the command starts.

mod console;
pub mod duration;
mod facades;
pub mod header_policy;
mod issuers;
mod manifest;
mod network;
mod observe;
mod preflight;
mod store;
#[cfg(test)]
mod tests;
mod tls;
mod upstreams;

use std::path::{Path, PathBuf};

use http::HeaderName;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::policy::{Manifest, Router};
use crate::token::keys::KeySet;
pub use console::ConsoleConfig;
pub use duration::parse_duration;
pub use facades::{Facades, ProdManagerApp};
use facades::{FacadesFile, build_facades};
pub use header_policy::{HeaderPolicy, Scan};
use issuers::{IssuerFile, build_issuance, build_issuer};
pub use issuers::{MintError, Signing};
use manifest::{build_manifest, build_router, check_upstreams};
pub use network::{
    CacheConfig, CredentialSource, DecisionConfig, Forwarding, Http2, IdentityHeaders, Listeners, ServerConfig,
    Unmatched,
};
use network::{
    CredentialFile, DecisionFile, ListenersFile, build_cache, build_credentials, build_decision, build_forwarding,
    build_listeners, build_server, build_trusted_proxies, default_credentials,
};
pub use observe::{AuditConfig, AuditSink, ContinueFrom, LogConfig, LogFormat, TraceProtocol, TracingConfig};
pub use preflight::{Dirs, Preflight, Purpose, creatable};
pub use store::{Bootstrap, DEMO_FEED_TOKEN, FeedFollow, RevocationConfig, StoreBackend, StoreConfig};
use store::{RevocationFile, StoreFile, build_revocation, build_store};
pub use tls::TlsListeners;
pub use upstreams::{Balance, DEFAULT_UPSTREAM, Dns, Ejection, Protocol, Retries, UpstreamConfig, UpstreamTls};
use upstreams::{UpstreamFile, build_upstream, build_upstreams};

/// Every problem found in a config file, each prefixed with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} problem(s) in the config:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated config.
#[derive(Debug)]
pub struct Config {
    pub listeners: Listeners,
    /// TLS on the listeners that have it.
    pub tls: TlsListeners,
    /// The default upstream (`upstream`).
    pub upstream: UpstreamConfig,
    /// The named ones (`upstreams`), by name.
    pub upstreams: Vec<UpstreamConfig>,
    pub server: ServerConfig,
    pub trusted_proxies: Vec<IpNet>,
    /// The decision listener's peers and paths (`decision`).
    pub decision: DecisionConfig,
    pub keys: KeySet,
    /// Issuers whose keys are fetched from a JWKS URL (enforce-only gateways).
    pub jwks_sources: Vec<crate::token::JwksSource>,
    /// This gateway's own signing keys, if it issues tokens.
    pub signing: Option<Signing>,
    pub max_token_bytes: usize,
    pub credentials: Vec<CredentialSource>,
    pub forwarding: Forwarding,
    pub cache: CacheConfig,
    pub unmatched: Unmatched,
    /// `enforce` (the default) or `shadow`: whether access-rule denials of
    /// verified tokens are refused or only recorded (applications may say
    /// otherwise).
    pub mode: crate::policy::Mode,
    /// `None`: no store (an enforce-only gateway without a revocation feed).
    pub store: Option<StoreConfig>,
    pub bootstrap: Bootstrap,
    /// Compatibility facades on the api listener.
    pub facades: Facades,
    /// The admin web console on the api listener.
    pub console: ConsoleConfig,
    pub manifest: Manifest,
    pub router: Router,
    pub revocation: RevocationConfig,
    /// Registration tokens' bounds.
    pub registration: crate::policy::issuance::RegistrationLimits,
    pub log: LogConfig,
    pub rate_limits: crate::ratelimit::RateLimitConfig,
    pub audit: AuditConfig,
    /// Traces exported over OTLP (`None`: no tracing at all).
    pub tracing: Option<TracingConfig>,
    /// Problems that do not stop the gateway (a secret file others can
    /// read, a JWKS key skipped); `check-config --strict` fails on them.
    pub warnings: Vec<String>,
    /// The files the config reads besides itself (keys, key sets, tokens).
    pub sources: Vec<PathBuf>,
    /// SHA-256 (hex) of the config text and every file it reads: what a
    /// reload compares, and what `narrowgate_config_info` shows.
    pub hash: String,
    /// SHA-256 (hex) of the issuers section and their key files: when it
    /// is unchanged by a reload, verified grants stay cached.
    pub issuers_hash: String,
    /// What the command line put in place of the file's settings (a
    /// reload applies them again).
    pub overrides: Overrides,
}

/// Settings from the command line (or the environment) that replace the
/// file's: how one config file serves many pods — an injected sidecar's
/// listeners and upstream differ per pod, its policy does not. The
/// config's hash stays the file's (replicas of one config compare equal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `listeners.proxy`.
    pub proxy: Option<String>,
    /// `listeners.admin`.
    pub admin: Option<String>,
    /// `upstream.addresses`, as the one address.
    pub upstream: Option<String>,
}

impl Overrides {
    fn apply(&self, top: &mut serde_json::Map<String, Value>) {
        /// The section `name`, made a mapping if it is absent.
        fn section<'m>(
            top: &'m mut serde_json::Map<String, Value>,
            name: &str,
        ) -> Option<&'m mut serde_json::Map<String, Value>> {
            let v = top.entry(name).or_insert(Value::Null);
            if v.is_null() {
                *v = Value::Object(Default::default());
            }
            v.as_object_mut()
        }
        for (value, name, key) in [(&self.proxy, "listeners", "proxy"), (&self.admin, "listeners", "admin")] {
            if let Some(v) = value
                && let Some(s) = section(top, name)
            {
                s.insert(key.into(), v.clone().into());
            }
        }
        if let Some(upstream) = &self.upstream
            && let Some(u) = section(top, "upstream")
        {
            u.insert("addresses".into(), Value::Array(vec![upstream.clone().into()]));
        }
    }
}

/// SHA-256 (hex) of a config's `text` and of each file it read, as
/// `(path, contents)`, `None` for a file that could not be read.
pub fn fingerprint(text: &[u8], files: &[(PathBuf, Option<Vec<u8>>)]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(text);
    for (path, contents) in files {
        ctx.update(path.to_string_lossy().as_bytes());
        match contents {
            Some(bytes) => {
                ctx.update(&(bytes.len() as u64).to_le_bytes());
                ctx.update(bytes);
            }
            None => ctx.update(b"\0absent"),
        }
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`fingerprint`] reads: each file's contents now.
pub fn read_all(files: &[PathBuf]) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    files.iter().map(|f| (f.clone(), std::fs::read(f).ok())).collect()
}

/// What validating a config collects: its problems and warnings, each
/// with its path, and the files it read with what they held.
#[derive(Default)]
struct Errors {
    errors: Vec<String>,
    warnings: Vec<String>,
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Errors {
    fn push(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.errors.push(format!("{path}: {msg}"));
    }

    /// Read a file the config names (keys, key sets, tokens). What was
    /// read is what the config's hash covers, so the hash always describes
    /// the config in force; the file is also watched for changes.
    fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        let read = std::fs::read(path);
        self.files.push((path.to_path_buf(), read.as_ref().ok().cloned()));
        read
    }

    /// Something that works but should not be so: logged by `serve`,
    /// printed by `check-config`, fatal under `check-config --strict`.
    fn warn(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.warnings.push(format!("{path}: {msg}"));
    }
}

/// Warn when a file holding a private key or a secret can be read by
/// anyone but its owner.
fn check_private_file(file: &Path, path: &str, errs: &mut Errors) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                errs.warn(
                    path,
                    format!(
                        "{} holds a secret but is readable by group or others (mode {mode:03o}); chmod 600 it",
                        file.display()
                    ),
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path, errs);
}

/// An issuer URL the gateway fetches from (a JWKS, a revocation feed):
/// absolute `http://` or `https://`. Plain `http://` to anything but
/// loopback is a warning (`check-config --strict` fails on it): anyone on
/// the path could swap the keys, or read the feed's reader token.
fn check_fetch_url(url: &str, path: &str, errs: &mut Errors) {
    match url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => {}
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {
            let host = u.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                errs.warn(path, "plain http:// to a host that is not loopback: anyone on the path can change what is fetched; use https://");
            }
        }
        _ => errs.push(path, "must be an absolute http:// or https:// URL"),
    }
}

/// A PEM bundle of CA certificates the config names, checked (at least
/// one certificate) and kept as PEM for the HTTP client.
fn read_ca_bundle(file: &Path, path: &str, errs: &mut Errors) -> Option<Vec<u8>> {
    match errs.read(file) {
        Err(e) => {
            errs.push(path, format!("{}: cannot read: {e}", file.display()));
            None
        }
        Ok(pem) => match crate::tls::ca_bundle(&pem) {
            Ok(_) => Some(pem),
            Err(e) => {
                errs.push(path, format!("{}: {e}", file.display()));
                None
            }
        },
    }
}

/// Deserialize one section, reporting a failure with its full path.
fn section<T: DeserializeOwned>(v: &Value, path: &str, errs: &mut Errors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            errs.push(&full, e.into_inner());
            None
        }
    }
}

/// A file that is not YAML, by where it stops being YAML and nothing else:
/// the parser's message quotes the file, and a file swapped in for the
/// config (an `.env` full of passwords) must not land in a response or a
/// log line.
fn not_yaml(e: &serde_saphyr::Error) -> String {
    match e.location() {
        Some(at) => format!("(file): not valid YAML, at line {} column {}", at.line(), at.column()),
        None => "(file): not valid YAML".to_string(),
    }
}

fn header_name(s: &str, path: &str, errs: &mut Errors) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            errs.push(path, format!("{s:?} is not a valid header name"));
            None
        }
    }
}

impl Config {
    /// Load and validate a config file. Relative key paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with(path, &Overrides::default())
    }

    /// Load a config file with some of its settings replaced.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Config::from_yaml_with(&text, &base, overrides)
    }

    /// Validate YAML text; `base` is the directory relative paths start from.
    pub fn from_yaml(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        Config::from_yaml_with(text, base, &Overrides::default())
    }

    /// Validate YAML text with some of its settings replaced.
    pub fn from_yaml_with(text: &str, base: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let root: Value = serde_saphyr::from_str(text).map_err(|e| ConfigErrors(vec![not_yaml(&e)]))?;
        let Value::Object(mut top) = root else {
            return Err(ConfigErrors(vec!["(root): must be a mapping".into()]));
        };
        // A mapping with none of the config's sections is some other file
        // (a Secret, a values file): nothing of it is named either.
        if !top.is_empty() && !top.keys().any(|k| TOP_LEVEL_KEYS.contains(&k.as_str())) {
            return Err(ConfigErrors(vec![format!(
                "(root): none of the config's sections ({}); is this the config file?",
                TOP_LEVEL_KEYS.join(", ")
            )]));
        }
        overrides.apply(&mut top);
        let mut errs = Errors::default();
        for key in top.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                errs.push(key, format!("unknown key (expected one of: {})", TOP_LEVEL_KEYS.join(", ")));
            }
        }
        let get = |k: &str| top.get(k).cloned().unwrap_or(Value::Null);
        let required = |k: &str, errs: &mut Errors| {
            let v = get(k);
            if v.is_null() {
                errs.push(k, "is required");
            }
            v
        };
        // An optional section: its default when absent, and when broken
        // (the problem is recorded; the config will be refused).
        fn optional<T: DeserializeOwned + Default>(v: Value, path: &str, errs: &mut Errors) -> T {
            match v {
                Value::Null => T::default(),
                v => section::<T>(&v, path, errs).unwrap_or_default(),
            }
        }

        let listeners = section::<ListenersFile>(&required("listeners", &mut errs), "listeners", &mut errs)
            .and_then(|l| build_listeners(l, &mut errs));
        let tls = match (get("tls"), &listeners) {
            (Value::Null, _) => TlsListeners::default(),
            (v, listeners) => match (section::<tls::TlsFile>(&v, "tls", &mut errs), listeners) {
                (Some(f), Some(l)) => tls::build_tls(f, [true, l.api.is_some(), l.admin.is_some()], base, &mut errs),
                _ => TlsListeners::default(),
            },
        };
        let upstream = section::<UpstreamFile>(&required("upstream", &mut errs), "upstream", &mut errs)
            .and_then(|u| build_upstream(u, DEFAULT_UPSTREAM, "upstream", base, &mut errs));
        let upstreams = build_upstreams(
            optional::<std::collections::BTreeMap<String, UpstreamFile>>(get("upstreams"), "upstreams", &mut errs),
            base,
            &mut errs,
        );
        let (server, max_token_bytes) = build_server(optional(get("server"), "server", &mut errs), &mut errs);
        let trusted_proxies = build_trusted_proxies(
            &optional::<Vec<String>>(get("trusted_proxies"), "trusted_proxies", &mut errs),
            &mut errs,
        );
        let decision = build_decision(
            optional::<Option<DecisionFile>>(get("decision"), "decision", &mut errs),
            listeners.as_ref().is_some_and(|l| l.decision.is_some()),
            &mut errs,
        );

        let issuer_files_from = errs.files.len();
        let mut keyset = KeySet::default();
        let mut jwks_sources = Vec::new();
        let mut signing: Option<Signing> = None;
        match required("issuers", &mut errs) {
            Value::Array(items) => {
                if items.is_empty() {
                    errs.push("issuers", "at least one issuer is required");
                }
                for (i, item) in items.iter().enumerate() {
                    let path = format!("issuers[{i}]");
                    if let Some(f) = section::<IssuerFile>(item, &path, &mut errs) {
                        build_issuer(f, &path, base, &mut keyset, &mut jwks_sources, &mut signing, &mut errs);
                    }
                }
            }
            Value::Null => {}
            _ => errs.push("issuers", "must be a list"),
        }
        let issuers_hash = fingerprint(get("issuers").to_string().as_bytes(), &errs.files[issuer_files_from..]);

        let credentials = match get("credentials") {
            Value::Null => default_credentials(),
            v => build_credentials(
                section::<Vec<CredentialFile>>(&v, "credentials", &mut errs).unwrap_or_default(),
                &mut errs,
            ),
        };
        let forwarding = build_forwarding(optional(get("forwarding"), "forwarding", &mut errs), &mut errs);
        let cache = build_cache(optional(get("cache"), "cache", &mut errs));
        let unmatched = match get("unmatched") {
            Value::Null => Unmatched::Deny,
            v => section::<Unmatched>(&v, "unmatched", &mut errs).unwrap_or(Unmatched::Deny),
        };
        let mode = match get("mode") {
            Value::Null => crate::policy::Mode::Enforce,
            v => section::<crate::policy::Mode>(&v, "mode", &mut errs).unwrap_or_default(),
        };

        let (store, bootstrap) = match get("store") {
            Value::Null => (None, Bootstrap::default()),
            v => match section::<StoreFile>(&v, "store", &mut errs) {
                Some(f) => {
                    let (s, b) = build_store(f, base, &mut errs);
                    (Some(s), b)
                }
                None => (None, Bootstrap::default()),
            },
        };

        let (manifest, route_paths) = match required("applications", &mut errs) {
            Value::Array(items) => build_manifest(&items, &mut errs),
            Value::Null => (Manifest::default(), Vec::new()),
            _ => {
                errs.push("applications", "must be a list");
                (Manifest::default(), Vec::new())
            }
        };
        let router = build_router(&manifest, &route_paths, &mut errs);
        issuers::check_mappings(&keyset, &manifest, &mut errs);
        check_upstreams(&manifest, &route_paths, &upstreams, &mut errs);

        let revocation = match get("revocation") {
            Value::Null => RevocationConfig::default(),
            v => match section::<RevocationFile>(&v, "revocation", &mut errs) {
                Some(f) => build_revocation(f, base, &listeners, store.is_some(), &mut errs),
                None => RevocationConfig::default(),
            },
        };
        let registration = build_issuance(optional(get("issuance"), "issuance", &mut errs), &mut errs);
        let log: LogConfig = optional(get("log"), "log", &mut errs);
        let rate_limits: crate::ratelimit::RateLimitConfig = optional(get("rate_limits"), "rate_limits", &mut errs);
        let mut audit: AuditConfig = optional(get("audit"), "audit", &mut errs);
        if let AuditSink::File { path } = &mut audit.sink {
            *path = base.join(&*path);
        }

        let tracing = match get("tracing") {
            Value::Null => None,
            v => section::<observe::TracingFile>(&v, "tracing", &mut errs)
                .and_then(|f| observe::build_tracing(f, &mut errs)),
        };

        let facades = match get("facades") {
            Value::Null => Facades::default(),
            v => match section::<FacadesFile>(&v, "facades", &mut errs) {
                Some(f) => build_facades(f, &listeners, &credentials, &manifest, &mut errs),
                None => Facades::default(),
            },
        };

        let console = match get("console") {
            Value::Null => ConsoleConfig::default(),
            v => match section::<console::ConsoleFile>(&v, "console", &mut errs) {
                Some(f) => console::build_console(
                    f,
                    listeners.as_ref().is_some_and(|l| l.api.is_some()),
                    store.is_some(),
                    &mut errs,
                ),
                None => ConsoleConfig::default(),
            },
        };

        match (listeners, upstream, router) {
            (Some(listeners), Some(upstream), Some(router)) if errs.errors.is_empty() => Ok(Config {
                console,
                hash: fingerprint(text.as_bytes(), &errs.files),
                issuers_hash,
                overrides: overrides.clone(),
                sources: errs.files.into_iter().map(|(path, _)| path).collect(),
                warnings: errs.warnings,
                revocation,
                registration,
                log,
                rate_limits,
                audit,
                tracing,
                listeners,
                tls,
                upstream,
                upstreams,
                server,
                trusted_proxies,
                decision,
                keys: keyset,
                jwks_sources,
                signing,
                max_token_bytes,
                credentials,
                forwarding,
                cache,
                unmatched,
                mode,
                store,
                bootstrap,
                facades,
                manifest,
                router,
            }),
            _ => Err(ConfigErrors(errs.errors)),
        }
    }
}

/// 64 hex digits → 32 bytes.
fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Top-level keys; each section is deserialized on its own so that problems
/// in several sections are all reported.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listeners",
    "tls",
    "upstream",
    "upstreams",
    "server",
    "trusted_proxies",
    "decision",
    "issuers",
    "credentials",
    "forwarding",
    "cache",
    "unmatched",
    "mode",
    "applications",
    "store",
    "facades",
    "revocation",
    "issuance",
    "log",
    "audit",
    "tracing",
    "rate_limits",
    "console",
];
