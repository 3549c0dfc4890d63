//! The `tls` section: TLS per listener (`proxy`, `api`, `admin`, each
//! optional), its certificates and its client certificates. The files are
//! read like every file the config names, so a changed certificate is a
//! changed config: the watcher reloads it, and a pair that does not load
//! is a refused reload (the old certificates stay, the failure is logged
//! with the file's path and counted).

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{Errors, check_private_file};
use crate::tls::{ClientAuth, ListenerTls, ServingCert};

/// The listeners' TLS; `None`: plaintext.
#[derive(Debug, Clone, Default)]
pub struct TlsListeners {
    pub proxy: Option<Arc<ListenerTls>>,
    pub api: Option<Arc<ListenerTls>>,
    pub admin: Option<Arc<ListenerTls>>,
}

impl TlsListeners {
    /// Each listener with TLS, by name.
    pub fn each(&self) -> impl Iterator<Item = (&'static str, &Arc<ListenerTls>)> {
        [("proxy", &self.proxy), ("api", &self.api), ("admin", &self.admin)]
            .into_iter()
            .filter_map(|(name, t)| t.as_ref().map(|t| (name, t)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    #[serde(default)]
    proxy: Option<ListenerTlsFile>,
    #[serde(default)]
    api: Option<ListenerTlsFile>,
    #[serde(default)]
    admin: Option<ListenerTlsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerTlsFile {
    /// The first is the default (a client sending no SNI, or a name none
    /// of them has).
    certificates: Vec<CertificateFile>,
    #[serde(default)]
    client_certificates: ClientAuth,
    /// PEM bundle of the CAs client certificates must chain to.
    #[serde(default)]
    client_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateFile {
    /// PEM: the certificate, then its intermediates.
    cert: String,
    /// PEM: its private key.
    key: String,
    /// The SNI names it serves; by default the certificate's DNS names.
    #[serde(default)]
    names: Option<Vec<String>>,
    /// `key` is the example key published in `config/tls/` (for trying TLS
    /// on one's own machine): spared the file-mode check, which a fresh
    /// clone cannot pass; any other key under this flag is refused.
    #[serde(default)]
    example_key: bool,
}

/// The private key of `config/tls/gateway.pem`, published for examples.
const EXAMPLE_KEY: &str = include_str!("../../config/tls/gateway.key");

/// Load every listener's TLS; `present` says which listeners exist.
pub(super) fn build_tls(f: TlsFile, present: [bool; 3], base: &Path, errs: &mut Errors) -> TlsListeners {
    let [proxy, api, admin] = present;
    let mut one = |file: Option<ListenerTlsFile>, name: &str, present: bool| {
        let file = file?;
        if !present {
            errs.push(&format!("tls.{name}"), format!("there is no {name} listener (listeners.{name})"));
            return None;
        }
        build_listener(file, &format!("tls.{name}"), base, errs).map(Arc::new)
    };
    TlsListeners {
        proxy: one(f.proxy, "proxy", proxy),
        api: one(f.api, "api", api),
        admin: one(f.admin, "admin", admin),
    }
}

fn build_listener(f: ListenerTlsFile, path: &str, base: &Path, errs: &mut Errors) -> Option<ListenerTls> {
    if f.certificates.is_empty() {
        errs.push(&format!("{path}.certificates"), "at least one certificate is required");
    }
    let mut certificates = Vec::new();
    for (i, c) in f.certificates.iter().enumerate() {
        let at = format!("{path}.certificates[{i}]");
        if let Some(cert) = load_pair((&c.cert, &c.key), c.names.as_deref(), c.example_key, &at, base, errs) {
            certificates.push(cert);
        }
    }
    let roots = match (&f.client_ca, f.client_certificates) {
        (None, ClientAuth::Off) => None,
        (None, _) => {
            errs.push(&format!("{path}.client_ca"), "is required when client_certificates is optional or required");
            None
        }
        (Some(ca), auth) => {
            if auth == ClientAuth::Off {
                errs.warn(&format!("{path}.client_ca"), "is not used: client_certificates is off");
            }
            super::read_ca_bundle(&base.join(ca), &format!("{path}.client_ca"), errs)
        }
    };
    if certificates.len() != f.certificates.len() || (f.client_certificates != ClientAuth::Off && roots.is_none()) {
        return None;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in certificates.iter().enumerate() {
        for n in &c.names {
            if !seen.insert(n.clone()) {
                errs.warn(
                    &format!("{path}.certificates[{i}]"),
                    format!("the name {n} is served by an earlier certificate; this one is never chosen for it"),
                );
            }
        }
    }
    match ListenerTls::new(certificates, f.client_certificates, roots.as_deref()) {
        Ok(t) => Some(t),
        Err(e) => {
            errs.push(path, e);
            None
        }
    }
}

/// One certificate and key (`files`, relative to `base`), served by
/// `names` (default: its DNS names); an error names the setting at `path`
/// and the file, never its contents. `example_key`: see
/// [`CertificateFile::example_key`].
pub(super) fn load_pair(
    files: (&str, &str),
    names: Option<&[String]>,
    example_key: bool,
    path: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<ServingCert> {
    let (cert_file, key_file) = (base.join(files.0), base.join(files.1));
    let cert = errs.read(&cert_file);
    let key = errs.read(&key_file);
    match &key {
        Ok(k) if example_key && k.trim_ascii() != EXAMPLE_KEY.trim().as_bytes() => {
            errs.push(
                &format!("{path}.example_key"),
                format!("{} is not the published example key; remove example_key and chmod 600 it", key_file.display()),
            );
            return None;
        }
        Ok(_) if example_key => {}
        _ => check_private_file(&key_file, &format!("{path}.key"), errs),
    }
    let (cert, key) = match (cert, key) {
        (Ok(cert), Ok(key)) => (cert, key),
        (Err(e), _) => {
            errs.push(&format!("{path}.cert"), format!("{}: cannot read: {e}", cert_file.display()));
            return None;
        }
        (_, Err(e)) => {
            errs.push(&format!("{path}.key"), format!("{}: cannot read: {e}", key_file.display()));
            return None;
        }
    };
    match crate::tls::serving_cert(&cert, &key, names) {
        Ok(s) => Some(s),
        Err(e @ crate::tls::TlsError::NoKey) => {
            errs.push(&format!("{path}.key"), format!("{}: {e}", key_file.display()));
            None
        }
        Err(e) => {
            errs.push(&format!("{path}.cert"), format!("{}: {e}", cert_file.display()));
            None
        }
    }
}
