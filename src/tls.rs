//! TLS on the listeners, on rustls with aws-lc-rs: serving certificates
//! from PEM files (several, chosen by SNI, the first the default), TLS 1.2
//! and 1.3 only with rustls's suites (ECDHE and AEAD only: nothing weak to
//! turn off), ALPN, session resumption that survives reloads, client
//! certificates (`off`, `optional`, `required`) against a CA bundle, and
//! what a verified client certificate says: its subject, its SPIFFE id and
//! its SHA-256 thumbprint (RFC 8705's `x5t#S256`).
//!
//! A leaf: it knows PEM, X.509 and rustls, nothing of the gateway. The
//! config loads a listener's files into a [`ListenerTls`]; the runtime
//! makes its [`rustls::ServerConfig`] with the process's [`Resumption`];
//! the server loop accepts with it and reads the [`PeerIdentity`].

use std::sync::Arc;

use base64::Engine;
use http::HeaderValue;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

/// What is offered in ALPN: HTTP/1.1 (a listener adds `h2` in front when
/// HTTP/2 is on: see [`ListenerTls::server_config`]).
pub const ALPN: &[&[u8]] = &[b"http/1.1"];

/// A listener's ALPN with HTTP/2, preferred.
const ALPN_H2: &[&[u8]] = &[b"h2", b"http/1.1"];

/// How many TLS 1.2 sessions (by id) a process remembers for resumption.
const SESSION_CACHE: usize = 4096;

/// Whether a listener asks for client certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Never asked for.
    #[default]
    Off,
    /// Asked for; a client without one is served (its requests carry no
    /// client identity), one with a certificate the CA did not sign is not.
    Optional,
    /// A handshake without a certificate the CA signed fails.
    Required,
}

/// One serving certificate: the chain and key, the names SNI picks it by,
/// and what the expiry metric shows.
#[derive(Debug, Clone)]
pub struct ServingCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names (lowercase; `*.example.com` matches one label).
    pub names: Vec<Box<str>>,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
    /// How metrics and logs name it: its first name, else its subject.
    pub label: Box<str>,
}

/// A listener's TLS settings, loaded and checked: a server config without
/// resumption (the process adds its own, see [`Resumption`]).
#[derive(Clone)]
pub struct ListenerTls {
    pub certificates: Vec<ServingCert>,
    pub client_auth: ClientAuth,
    /// SHA-256 of who may connect (the mode and the CA bundle): a session
    /// resumes only under the same, see [`Resumption`].
    pub clients: [u8; 32],
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.certificates.iter().map(|c| &*c.label).collect();
        f.debug_struct("ListenerTls")
            .field("certificates", &labels)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// Why a certificate, key or CA bundle cannot be used. Says what is wrong
/// with the file, never what is in it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no PEM certificate in it")]
    NoCertificate,
    #[error("no PEM private key in it (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("the certificate cannot be read as X.509")]
    BadCertificate,
    #[error("the key does not belong to the certificate, or is of a type rustls cannot sign with: {0}")]
    Mismatch(rustls::Error),
    #[error("no CA certificate in it")]
    NoCa,
    #[error("a certificate in it cannot be read as an X.509 CA certificate")]
    BadCa,
    #[error("the TLS settings cannot be built: {0}")]
    Settings(String),
}

/// Load one serving pair from its PEM text. `names` replaces the names the
/// certificate carries (its DNS subject alternative names) when given.
pub fn serving_cert(cert_pem: &[u8], key_pem: &[u8], names: Option<&[String]>) -> Result<ServingCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
    let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
    let facts = Facts::of(leaf).ok_or(TlsError::BadCertificate)?;
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = CertifiedKey::from_der(chain, private, &provider).map_err(TlsError::Mismatch)?;
    let names: Vec<Box<str>> = match names {
        Some(n) => n.iter().map(|s| s.to_ascii_lowercase().into()).collect(),
        None => facts.dns_names.iter().map(|s| s.to_ascii_lowercase().into()).collect(),
    };
    let label = names.first().cloned().unwrap_or_else(|| facts.subject.clone());
    Ok(ServingCert { key: Arc::new(key), names, not_after: facts.not_after, label })
}

/// The CA certificates in a PEM bundle: every one of them usable (a
/// bundle the HTTP client would read otherwise than the listeners is
/// refused, not half used), and at least one.
pub fn ca_bundle(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| TlsError::BadCa)?;
        roots.add(cert).map_err(|_| TlsError::BadCa)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCa);
    }
    Ok(roots)
}

impl ListenerTls {
    /// A listener's settings: `certificates` (at least one; the first is
    /// the default), and who may connect: `client_auth` against the CAs of
    /// `client_ca` (a PEM bundle).
    pub fn new(
        certificates: Vec<ServingCert>,
        client_auth: ClientAuth,
        client_ca: Option<&[u8]>,
    ) -> Result<ListenerTls, TlsError> {
        let client_roots = client_ca.map(ca_bundle).transpose()?;
        let clients = {
            let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            ctx.update(format!("{client_auth:?}").as_bytes());
            ctx.update(client_ca.unwrap_or_default());
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_details(provider.clone(), held_time())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        let builder = match (client_auth, client_roots) {
            (ClientAuth::Off, _) => builder.with_no_client_auth(),
            (_, None) => return Err(TlsError::NoCa),
            (auth, Some(roots)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Settings(e.to_string()))?)
            }
        };
        let default = certificates.first().ok_or(TlsError::NoCertificate)?.key.clone();
        let named = certificates.iter().flat_map(|c| c.names.iter().map(|n| (n.clone(), c.key.clone()))).collect();
        let mut config = builder.with_cert_resolver(Arc::new(BySni { named, default }));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(ListenerTls { certificates, client_auth, clients, config: Arc::new(config) })
    }

    /// The server config, resuming sessions by `resumption`.
    pub fn server_config(&self, resumption: &Resumption, http2: bool) -> Arc<rustls::ServerConfig> {
        let mut config = (*self.config).clone();
        if http2 {
            config.alpn_protocols = ALPN_H2.iter().map(|p| p.to_vec()).collect();
        }
        config.session_storage = resumption.sessions.clone();
        if let Some(t) = &resumption.tickets {
            config.ticketer = t.clone();
        }
        // TLS 1.3 clients get two tickets (two connections resumed in
        // parallel), as rustls and OpenSSL do by default.
        config.send_tls13_tickets = 2;
        Arc::new(config)
    }
}

/// Session resumption of one listener: a ticket key (rotated by rustls
/// every six hours) and a TLS 1.2 session cache, kept by a reload that
/// leaves the listener's client certificates as they were, so sessions
/// outlive a swapped serving certificate. A resumed handshake asks for no
/// client certificate (it takes the session's), so a listener never
/// resumes another's sessions, nor its own from before its client
/// certificates or CA changed: each gets a new `Resumption` then.
pub struct Resumption {
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption").field("tickets", &self.tickets.is_some()).finish_non_exhaustive()
    }
}

impl Default for Resumption {
    fn default() -> Self {
        let tickets = match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "no TLS session tickets: only session ids resume sessions");
                None
            }
        };
        Resumption { tickets, sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE) }
    }
}

/// Picks the certificate whose names match the client's SNI; the first
/// certificate when none does or no name was sent.
#[derive(Debug)]
struct BySni {
    named: Vec<(Box<str>, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = hello.server_name() else { return Some(self.default.clone()) };
        // An exact name first, then a wildcard.
        let exact = self.named.iter().find(|(n, _)| n.eq_ignore_ascii_case(sni));
        let found = exact.or_else(|| self.named.iter().find(|(n, _)| wildcard_matches(n, sni)));
        Some(found.map_or_else(|| self.default.clone(), |(_, k)| k.clone()))
    }
}

/// `*.example.com` matches `a.example.com`, not `example.com` nor
/// `a.b.example.com`.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else { return false };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
        None => false,
    }
}

/// What one X.509 certificate says, as far as the gateway needs it.
struct Facts {
    subject: Box<str>,
    dns_names: Vec<String>,
    uris: Vec<String>,
    not_after: i64,
}

impl Facts {
    fn of(der: &[u8]) -> Option<Facts> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let (mut dns_names, mut uris) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push((*n).to_string()),
                    GeneralName::URI(u) => uris.push((*u).to_string()),
                    _ => {}
                }
            }
        }
        Some(Facts {
            subject: cert.subject().to_string().into(),
            dns_names,
            uris,
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// Who a verified client certificate names: what the request's log line,
/// audit event and identity headers say, and what a certificate-bound
/// token is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's distinguished name (`CN=…, O=…`).
    pub subject: Box<str>,
    /// The SPIFFE id (`spiffe://trust-domain/path`), if a URI SAN is one.
    pub spiffe: Option<Box<str>>,
    /// SHA-256 of the certificate's DER: RFC 8705's `x5t#S256`.
    pub thumbprint: [u8; 32],
    /// `subject` and `spiffe` as header values, made once per connection
    /// (`None` when one cannot be a header value).
    pub subject_header: Option<HeaderValue>,
    pub spiffe_header: Option<HeaderValue>,
}

impl PeerIdentity {
    /// The identity of the client certificate `der`, which the handshake
    /// verified.
    pub fn of(der: &[u8]) -> PeerIdentity {
        let facts = Facts::of(der);
        let subject: Box<str> = facts.as_ref().map_or_else(|| "".into(), |f| f.subject.clone());
        let spiffe: Option<Box<str>> =
            facts.and_then(|f| f.uris.into_iter().find(|u| u.starts_with("spiffe://"))).map(Into::into);
        PeerIdentity {
            subject_header: HeaderValue::from_str(&subject).ok().filter(|_| !subject.is_empty()),
            spiffe_header: spiffe.as_deref().and_then(|s| HeaderValue::from_str(s).ok()),
            subject,
            spiffe,
            thumbprint: thumbprint(der),
        }
    }

    /// The thumbprint as a `cnf` claim carries it.
    pub fn x5t_s256(&self) -> String {
        encode_thumbprint(&self.thumbprint)
    }
}

/// The time certificates are judged by: the system's, held from going
/// back as the gateway's own clock is ([`crate::clock`]), so a step back of
/// the system clock never makes an expired client or upstream certificate
/// valid again.
#[derive(Debug)]
struct HeldTime;

static HELD: std::sync::LazyLock<crate::clock::Clock> = std::sync::LazyLock::new(crate::clock::Clock::default);

impl rustls::time_provider::TimeProvider for HeldTime {
    fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
        Some(rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_millis(HELD.now_ms())))
    }
}

fn held_time() -> Arc<dyn rustls::time_provider::TimeProvider> {
    Arc::new(HeldTime)
}

/// TLS to an upstream: the server's certificate verified against `roots`
/// (its CA bundle) or, without one, the system's trusted roots, with the
/// name checked; `client`, when given, presented for mTLS to the
/// upstream. TLS 1.2 and 1.3, ALPN http/1.1.
pub fn client_config(
    roots: Option<RootCertStore>,
    client: Option<Arc<CertifiedKey>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_details(provider, held_time())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = match roots {
        Some(roots) => builder.with_root_certificates(roots),
        None => builder.with_platform_verifier().map_err(|e| TlsError::Settings(e.to_string()))?,
    };
    let mut config = match client {
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The one client certificate an upstream connection presents.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An HTTP client for what the gateway fetches from an issuer (its JWKS,
/// its revocation feed): no redirects (a redirect could lead a feed's
/// reader token elsewhere), and with `ca`, a PEM bundle, trusting only
/// those CAs; else the system's roots.
///
/// `Err` when the client cannot be built as asked (the bundle unreadable,
/// the TLS backend unable to start): the caller fetches nothing then, and
/// never falls back to a client that trusts more, or follows redirects.
pub fn fetch_client(ca: Option<&[u8]>, builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    let mut builder = builder.redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("the CA bundle: {e}"))?;
        if certs.is_empty() {
            return Err("the CA bundle holds no certificate".into());
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| format!("the HTTP client: {e}"))
}

/// SHA-256 of a certificate's DER.
pub fn thumbprint(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A thumbprint as RFC 8705 writes it: base64url without padding.
pub fn encode_thumbprint(t: &[u8; 32]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
}

/// A `x5t#S256` value back to its bytes; `None` unless it is exactly a
/// SHA-256 in base64url without padding.
pub fn decode_thumbprint(s: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn names_come_from_the_certificate_unless_given() {
        let (c, k) = pair(&["Api.Example.com", "*.svc.example.com"]);
        let cert = serving_cert(c.as_bytes(), k.as_bytes(), None).expect("loads");
        assert_eq!(cert.names, vec![Box::from("api.example.com"), Box::from("*.svc.example.com")]);
        assert_eq!(&*cert.label, "api.example.com");
        assert!(cert.not_after > 1_700_000_000);
        let given = serving_cert(c.as_bytes(), k.as_bytes(), Some(&["other.test".into()])).expect("loads");
        assert_eq!(given.names, vec![Box::from("other.test")]);
    }

    #[test]
    fn a_key_of_another_certificate_or_no_pem_is_refused() {
        let (c, _) = pair(&["a.test"]);
        let (_, other_key) = pair(&["b.test"]);
        assert!(matches!(serving_cert(c.as_bytes(), other_key.as_bytes(), None), Err(TlsError::Mismatch(_))));
        assert!(matches!(serving_cert(b"not pem", other_key.as_bytes(), None), Err(TlsError::NoCertificate)));
        assert!(matches!(serving_cert(c.as_bytes(), b"", None), Err(TlsError::NoKey)));
        assert!(matches!(ca_bundle(b"nothing"), Err(TlsError::NoCa)));
    }

    #[test]
    fn a_wildcard_matches_one_label_only() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(wildcard_matches("*.example.com", "A.EXAMPLE.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("example.com", "example.com"));
    }

    #[test]
    fn a_thumbprint_round_trips_and_nothing_else_decodes() {
        let t = thumbprint(b"certificate");
        assert_eq!(decode_thumbprint(&encode_thumbprint(&t)), Some(t));
        assert_eq!(encode_thumbprint(&t).len(), 43);
        assert_eq!(decode_thumbprint("AAAA"), None);
        assert_eq!(decode_thumbprint(&format!("{}=", encode_thumbprint(&t))), None);
    }

    #[test]
    fn required_or_optional_client_auth_needs_a_ca() {
        let (c, k) = pair(&["a.test"]);
        let cert = serving_cert(c.as_bytes(), k.as_bytes(), None).expect("loads");
        assert!(ListenerTls::new(vec![cert.clone()], ClientAuth::Required, None).is_err());
        assert!(ListenerTls::new(vec![cert.clone()], ClientAuth::Off, None).is_ok());
        assert!(ListenerTls::new(vec![cert.clone()], ClientAuth::Optional, Some(c.as_bytes())).is_ok());
        // Who may connect is what a session resumes under.
        let off = ListenerTls::new(vec![cert.clone()], ClientAuth::Off, None).expect("off");
        let optional =
            ListenerTls::new(vec![cert.clone()], ClientAuth::Optional, Some(c.as_bytes())).expect("optional");
        let required = ListenerTls::new(vec![cert], ClientAuth::Required, Some(c.as_bytes())).expect("required");
        assert!(off.clients != optional.clients && optional.clients != required.clients);
        let broken = format!("{c}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(
            matches!(ca_bundle(broken.as_bytes()), Err(TlsError::BadCa)),
            "one unreadable certificate refuses the bundle"
        );
        assert!(ListenerTls::new(Vec::new(), ClientAuth::Off, None).is_err());
    }
}
