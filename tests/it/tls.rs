//! TLS on the listeners, against real clients: curl, `openssl s_client`,
//! Python's `ssl`, and a rustls client of the test's own (for client
//! certificates and for reading which certificate was served). SNI,
//! refused protocol versions and suites, certificates swapped on disk
//! under traffic, mTLS, and certificate-bound tokens (RFC 8705) through
//! the proxy and the token service — what the client got and what the
//! upstream received.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    self, ConfigDoc, Harness, Response, build_request, eventually_async, master, metric, parse_response, web_rules,
};
use narrowgate::token::now_unix;
use narrowgate::token::testkit::payload;

/// A certificate authority of the test's own.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) pem: String,
}

/// A certificate and its key, as PEM, and the certificate's DER.
#[derive(Clone)]
pub(crate) struct Pair {
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) der: Vec<u8>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A serving certificate for `names`.
    pub(crate) fn server(&self, names: &[&str]) -> Pair {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate for `cn`, with a SPIFFE id.
    pub(crate) fn client(&self, cn: &str) -> Pair {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names =
            vec![SanType::URI(format!("spiffe://example.test/ns/default/sa/{cn}").try_into().expect("a URI"))];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Pair {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Pair { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    }
}

/// Write `pair` as `<name>.pem` and `<name>.key` (mode 600) in `dir`.
pub(crate) fn write_pair(dir: &Path, name: &str, pair: &Pair) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    replace_file(&cert, pair.cert.as_bytes());
    replace_file(&key, pair.key.as_bytes());
    set_private(&key);
    (cert, key)
}

/// Write a file whole, by rename: a reader sees the old or the new one.
pub(crate) fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The test's PKI on disk: one CA signs the gateway's certificates and
/// the clients'; another CA signs a stranger's.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: Ca,
    stranger_ca: Ca,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca: Ca::new("test CA"),
            stranger_ca: Ca::new("other CA"),
        };
        replace_file(&pki.path("ca.pem"), pki.ca.pem.as_bytes());
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn s(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8").to_string()
    }
}

/// `tls.<listener>` with `certs` (name → files already written) and the
/// client certificate mode.
fn listener_tls(pki: &Pki, certs: &[&str], client_certificates: &str) -> Value {
    let certificates: Vec<Value> = certs
        .iter()
        .map(|c| json!({ "cert": pki.s(&format!("{c}.pem")), "key": pki.s(&format!("{c}.key")) }))
        .collect();
    let mut v = json!({ "certificates": certificates, "client_certificates": client_certificates });
    if client_certificates != "off" {
        v["client_ca"] = json!(pki.s("ca.pem"));
    }
    v
}

/// A rustls client: trusts the test CA, presents `client`, and makes a
/// full handshake every time (a resumed session shows the certificate of
/// the session it resumes, not the one the server holds now).
fn connector(pki: &Pki, client: Option<&Pair>) -> tokio_rustls::TlsConnector {
    resuming_connector(pki, client, false)
}

/// [`connector`], resuming sessions when `resume`.
fn resuming_connector(pki: &Pki, client: Option<&Pair>, resume: bool) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(pki.ca.pem.as_bytes()).filter_map(Result::ok));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(p) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(p.der.clone())],
                PrivateKeyDer::from_pem_slice(p.key.as_bytes()).expect("client key"),
            )
            .expect("client auth"),
    };
    let mut config = config;
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One request over TLS: the response, and the DER of the certificate the
/// server presented. `Err` when the handshake (or the first read) fails.
async fn tls_exchange(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    sni: &str,
    request: &[u8],
) -> Result<(Response, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "no handshake within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let served = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    tls.write_all(request).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // TLS 1.3 reports a refused client certificate at the
                // first read, as an alert.
                Err(e) if buf.is_empty() => return Err(e.to_string()),
                Err(_) => return Ok(()),
            }
            if support::is_complete(&buf) {
                return Ok(());
            }
        }
    })
    .await
    .map_err(|_| "no response within 10 s".to_string())?;
    read?;
    Ok((parse_response(&buf), served))
}

fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    build_request("GET", path, headers).into_bytes()
}

/// A harness whose proxy speaks TLS with `certs`, and `edit` besides.
pub(crate) async fn tls_harness(
    pki: &Pki,
    certs: &[&str],
    client_certificates: &str,
    edit: impl FnOnce(&mut ConfigDoc),
) -> Harness {
    let proxy = listener_tls(pki, certs, client_certificates);
    // A store, for the token service's minting.
    let store = support::sqlite_store(pki.path("tokens.db"));
    Harness::start_with(
        |doc| {
            doc.set("tls", json!({ "proxy": proxy }));
            edit(doc);
        },
        store,
    )
    .await
}

/// Run a real client to its end (at most 30 s), without blocking the
/// runtime the gateway serves on.
pub(crate) async fn run(cmd: &mut tokio::process::Command) -> std::process::Output {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{cmd:?} cannot run: {e}")),
        Err(_) => panic!("{cmd:?} did not finish within 30 s"),
    }
}

/// `openssl s_client` with `args`: whether the handshake succeeded, and
/// what it printed.
async fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out =
        run(tokio::process::Command::new("openssl").args(["s_client", "-connect", &addr.to_string()]).args(args)).await;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // A completed handshake names its protocol and cipher (`-brief`: says
    // it is established).
    let established = text.contains("CONNECTION ESTABLISHED");
    let ok = out.status.success() && (established || text.contains("Cipher is ") && !text.contains("Cipher is (NONE)"));
    (ok, text)
}

#[tokio::test]
async fn sni_picks_the_certificate_and_old_protocols_and_weak_suites_are_refused() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "gateway", &pki.ca.server(&["gateway.test", "localhost"]));
    write_pair(pki.dir.path(), "other", &pki.ca.server(&["other.test", "*.wild.test"]));
    let h = tls_harness(&pki, &["gateway", "other"], "off", |_| {}).await;
    let ca = pki.s("ca.pem");

    // curl, verifying the chain and the name: the demo's public route.
    let port = h.proxy.port().to_string();
    for name in ["gateway.test", "other.test", "a.wild.test"] {
        let out = run(tokio::process::Command::new("curl").args([
            "-sS",
            "--cacert",
            &ca,
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{ssl_verify_result}",
            &format!("https://{name}:{port}/health"),
        ]))
        .await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 0", "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // openssl: SNI picks the certificate; no SNI, or an unknown name, gets
    // the first.
    for (sni, subject) in [
        (Some("other.test"), "CN = other.test"),
        (Some("x.wild.test"), "CN = other.test"),
        (Some("nobody.test"), "CN = gateway.test"),
        (None, "CN = gateway.test"),
    ] {
        let mut args = vec!["-CAfile", ca.as_str(), "-brief"];
        if let Some(sni) = sni {
            args.extend(["-servername", sni]);
        } else {
            args.push("-noservername");
        }
        let (ok, text) = s_client(h.proxy, &args).await;
        assert!(ok && text.contains(subject), "{sni:?}: {text}");
    }

    // TLS 1.0 and 1.1 are refused, 1.2 and 1.3 are served; 1.2 only with
    // forward-secret AEAD suites.
    for (flag, served) in [("-tls1", false), ("-tls1_1", false), ("-tls1_2", true), ("-tls1_3", true)] {
        let (ok, text) =
            s_client(h.proxy, &["-CAfile", &ca, "-servername", "gateway.test", flag, "-cipher", "ALL:@SECLEVEL=0"])
                .await;
        assert_eq!(ok, served, "{flag}: {text}");
    }
    for weak in ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA", "DES-CBC3-SHA", "ECDHE-ECDSA-NULL-SHA"] {
        let (ok, text) =
            s_client(h.proxy, &["-CAfile", &ca, "-tls1_2", "-cipher", &format!("{weak}:@SECLEVEL=0")]).await;
        assert!(!ok, "{weak} was accepted: {text}");
    }

    // Python's ssl with the system's defaults: TLS 1.3, ALPN http/1.1.
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="gateway.test") as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(s.version(), s.selected_alpn_protocol(), data.split(b"\r\n")[0].decode())
try:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations({ca:?})
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", {port})) as raw:
        ctx.wrap_socket(raw, server_hostname="gateway.test")
    print("old protocol accepted")
except ssl.SSLError:
    print("old protocol refused")
"#
    );
    let out = run(tokio::process::Command::new("python3").args(["-c", &script])).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "TLSv1.3 http/1.1 HTTP/1.1 200 OK\nold protocol refused",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Sessions resume (TLS 1.3 tickets), also across a reload that swaps
    // nothing but keeps the process's ticket key.
    let resuming = resuming_connector(&pki, None, true);
    let health = get("/health", &[]);
    tls_exchange(h.proxy, &resuming, "gateway.test", &health).await.expect("a first, full handshake");
    let tcp = tokio::net::TcpStream::connect(h.proxy).await.expect("connect");
    let again = resuming.connect("gateway.test".try_into().expect("name"), tcp).await.expect("handshake");
    assert_eq!(again.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Resumed));

    // What the upstream received: the scheme the client used.
    let token = h.token("web", web_rules());
    let auth = format!("Bearer {token}");
    h.upstream_received();
    let (resp, _) = tls_exchange(
        h.proxy,
        &connector(&pki, None),
        "gateway.test",
        &get("/users/current/accounts/a1", &[("Authorization", &auth)]),
    )
    .await
    .expect("TLS request");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = h.upstream_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(got[0].header("x-narrowgate-client-subject"), None, "no client certificate, no client identity");

    // The expiry of each serving certificate is a metric.
    let expiry = metric(
        h.admin,
        "narrowgate_tls_certificate_expiry_timestamp_seconds{certificate=\"other.test\",listener=\"proxy\"}",
    )
    .await
    .expect("the expiry metric");
    assert!(expiry > now_unix() as f64, "{expiry}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_certificate_swapped_on_disk_drops_no_request_and_a_bad_one_keeps_the_old() {
    let pki = Pki::new();
    let first = pki.ca.server(&["gateway.test"]);
    write_pair(pki.dir.path(), "gateway", &first);
    let h = tls_harness(&pki, &["gateway"], "off", |_| {}).await;
    let plain = connector(&pki, None);
    let req = get("/health", &[]);
    let served = |r: Result<(Response, Vec<u8>), String>| {
        let (resp, der) = r.expect("every request is served");
        assert_eq!(resp.status, 200);
        der
    };
    assert_eq!(served(tls_exchange(h.proxy, &plain, "gateway.test", &req).await), first.der);

    // A kept-alive connection opened before the swap, and requests on new
    // connections throughout: none fails, and new connections soon see the
    // new certificate.
    let tcp = tokio::net::TcpStream::connect(h.proxy).await.expect("connect");
    let mut kept = plain.connect("gateway.test".try_into().expect("name"), tcp).await.expect("handshake");
    let second = pki.ca.server(&["gateway.test"]);
    write_pair(pki.dir.path(), "gateway", &second);
    let mut saw_new = false;
    for _ in 0..400 {
        let der = served(tls_exchange(h.proxy, &plain, "gateway.test", &req).await);
        assert!(der == first.der || der == second.der);
        if der == second.der {
            saw_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(saw_new, "the new certificate was not served within 10 s");
    kept.write_all(&get("/health", &[])).await.expect("the old connection still writes");
    let mut buf = Vec::new();
    kept.read_to_end(&mut buf).await.expect("the old connection still reads");
    assert_eq!(parse_response(&buf).status, 200, "a connection opened before the swap is served");

    // A broken pair (a key of another certificate) is refused: the last
    // good certificate stays, and the failure is counted.
    let failures = || metric(h.admin, "narrowgate_config_reloads_total{result=\"failure\"}");
    let before = failures().await.unwrap_or(0.0);
    let third = pki.ca.server(&["gateway.test"]);
    replace_file(&pki.path("gateway.pem"), third.cert.as_bytes());
    eventually_async(Duration::from_secs(10), || async { (failures().await.unwrap_or(0.0) > before).then_some(()) })
        .await;
    assert_eq!(served(tls_exchange(h.proxy, &plain, "gateway.test", &req).await), second.der);
    h.shutdown().await;
}

#[tokio::test]
async fn required_client_certificates_refuse_a_client_without_one_or_from_another_ca() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "gateway", &pki.ca.server(&["gateway.test"]));
    let h = tls_harness(&pki, &["gateway"], "required", |_| {}).await;
    let (ours, stranger) = (pki.ca.client("app-1"), pki.stranger_ca.client("intruder"));
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let req =
        get("/users/current/accounts/a1", &[("Authorization", &auth), ("X-Narrowgate-Client-Subject", "CN=forged")]);

    assert!(tls_exchange(h.proxy, &connector(&pki, None), "gateway.test", &req).await.is_err(), "no certificate");
    assert!(
        tls_exchange(h.proxy, &connector(&pki, Some(&stranger)), "gateway.test", &req).await.is_err(),
        "another CA"
    );
    assert!(h.upstream_received().is_empty(), "a refused handshake forwards nothing");
    let failures = "narrowgate_tls_handshake_failures_total{listener=\"proxy\"}";
    // Both refused handshakes are counted.
    eventually_async(Duration::from_secs(5), || async { (metric(h.admin, failures).await == Some(2.0)).then_some(()) })
        .await;

    let (resp, _) = tls_exchange(h.proxy, &connector(&pki, Some(&ours)), "gateway.test", &req).await.expect("served");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = h.upstream_received();
    assert_eq!(
        got[0].header("x-narrowgate-client-subject"),
        Some("CN=app-1"),
        "the verified subject, never the client's copy"
    );
    assert_eq!(got[0].header("x-narrowgate-client-spiffe"), Some("spiffe://example.test/ns/default/sa/app-1"));

    // curl without a certificate fails the handshake; with one, it is served.
    let port = h.proxy.port().to_string();
    let (cert, key) = write_pair(pki.dir.path(), "client", &ours);
    let curl = |extra: Vec<String>| {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", &pki.s("ca.pem")])
            .args(["--resolve", &format!("gateway.test:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://gateway.test:{port}/health"));
        async move { String::from_utf8_lossy(&run(&mut cmd).await.stdout).into_owned() }
    };
    assert_eq!(curl(vec![]).await, "000", "curl without a certificate");
    let with = vec!["--cert".into(), cert.display().to_string(), "--key".into(), key.display().to_string()];
    assert_eq!(curl(with).await, "200");
    // curl's refused handshake too, and no served one.
    eventually_async(Duration::from_secs(5), || async { (metric(h.admin, failures).await == Some(3.0)).then_some(()) })
        .await;
    h.shutdown().await;
}

/// A token for `sub` with web rules, bound to `cert`'s thumbprint (or
/// with the `cnf` given).
fn bound_token(h: &Harness, cnf: Value) -> String {
    let mut p = payload("web", now_unix(), 3600, web_rules());
    p["cnf"] = cnf;
    h.sign(&p)
}

fn x5t(pair: &Pair) -> String {
    narrowgate::tls::encode_thumbprint(&narrowgate::tls::thumbprint(&pair.der))
}

#[tokio::test]
async fn a_bound_token_is_honoured_only_with_its_certificate_and_its_children_stay_bound() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "gateway", &pki.ca.server(&["gateway.test"]));
    let api = listener_tls(&pki, &["gateway"], "optional");
    let h = tls_harness(&pki, &["gateway"], "optional", |doc| {
        doc.set("tls.api", api);
    })
    .await;
    let (mine, another) = (pki.ca.client("app-1"), pki.ca.client("app-2"));
    let (with_mine, with_another, without) =
        (connector(&pki, Some(&mine)), connector(&pki, Some(&another)), connector(&pki, None));
    let call = |token: &str, via: &tokio_rustls::TlsConnector| {
        let req = get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]);
        let via = via.clone();
        let proxy = h.proxy;
        async move { tls_exchange(proxy, &via, "gateway.test", &req).await.expect("served").0 }
    };

    // Signed elsewhere, bound to app-1's certificate.
    let token = bound_token(&h, json!({ "x5t#S256": x5t(&mine) }));
    h.upstream_received();
    for (via, who) in [(&without, "no certificate"), (&with_another, "another certificate")] {
        let resp = call(&token, via).await;
        assert_eq!((resp.status, resp.reason().as_str()), (401, "certificate_mismatch"), "{who}");
        assert!(resp.header("www-authenticate").is_some_and(|v| v.contains("invalid_token")));
    }
    // Plaintext cannot present a certificate at all (the proxy is TLS-only
    // here; the api listener is tried below).
    assert!(h.upstream_received().is_empty(), "a refused bound token forwards nothing");
    assert_eq!(call(&token, &with_mine).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);

    // `narrowgate explain` says the same, given the certificate or not.
    let (mine_pem, _) = write_pair(pki.dir.path(), "mine", &mine);
    let explain = |cert: Option<PathBuf>| {
        let mut cmd = tokio::process::Command::new(support::BIN);
        cmd.args(["explain", "--json", "--without-store", "--config"]).arg(&h.config_path).args(["--token", &token]);
        if let Some(c) = cert {
            cmd.arg("--client-cert").arg(c);
        }
        cmd.args(["GET", "/users/current/accounts/a1"]);
        async move {
            let out = run(&mut cmd).await;
            serde_json::from_slice::<Value>(&out.stdout)
                .unwrap_or_else(|_| json!({ "stderr": String::from_utf8_lossy(&out.stderr) }))
        }
    };
    assert_eq!(explain(None).await["reason"], "certificate_mismatch");
    assert_eq!(explain(Some(mine_pem)).await["reason"], "allowed");

    // A confirmation the gateway cannot check is refused, never ignored.
    for cnf in [
        json!({ "jkt": "abc" }),
        json!({ "x5t#S256": "not-a-thumbprint" }),
        json!("x5t"),
        json!({ "x5t#S256": x5t(&mine), "jkt": "abc" }),
    ] {
        let resp = call(&bound_token(&h, cnf.clone()), &with_mine).await;
        assert_eq!((resp.status, resp.reason().as_str()), (401, "invalid_token"), "{cnf}");
    }

    // The token service: narrowing a bound token over app-1's connection
    // gives a child bound to app-1, whoever asks.
    let api_post = |via: &tokio_rustls::TlsConnector, path: &str, auth: &str, body: &str| {
        let len = body.len().to_string();
        let req = support::raw_request(
            "POST",
            path,
            &[
                ("Host", "gateway.test"),
                ("Authorization", auth),
                ("Content-Type", "application/json"),
                ("Content-Length", &len),
                ("Connection", "close"),
            ],
            body,
        );
        let (via, api) = (via.clone(), h.api);
        async move { tls_exchange(api, &via, "gateway.test", req.as_bytes()).await.expect("served").0 }
    };
    let narrowed =
        api_post(&with_mine, "/v1/tokens/narrow", &format!("Bearer {token}"), r#"{"validityInHours": 0.5}"#).await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    let child = narrowed.json()["token"].as_str().expect("a token").to_string();
    assert_eq!(claims(&child)["cnf"]["x5t#S256"], json!(x5t(&mine)));
    assert_eq!(call(&child, &without).await.reason(), "certificate_mismatch");
    assert_eq!(call(&child, &with_another).await.reason(), "certificate_mismatch");
    assert_eq!(call(&child, &with_mine).await.status, 200);
    // Asking to bind the child to another certificate is refused: a
    // binding is never moved.
    let moved = api_post(
        &with_another,
        "/v1/tokens/narrow",
        &format!("Bearer {token}"),
        r#"{"bindToClientCertificate": true}"#,
    )
    .await;
    assert_eq!(moved.status, 401, "app-2 cannot even use app-1's token: {}", moved.body);

    // Minting a bound token for the caller's own certificate.
    let admin = master(&h);
    let body = r#"{"name": "bound", "lifetime": "1h", "bindToClientCertificate": true}"#;
    let created = api_post(&with_another, "/v1/tokens", &admin, body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let minted = created.json()["token"].as_str().expect("a token").to_string();
    assert_eq!(claims(&minted)["cnf"]["x5t#S256"], json!(x5t(&another)));
    assert_eq!(call(&minted, &with_another).await.status, 200);
    assert_eq!(call(&minted, &with_mine).await.reason(), "certificate_mismatch");
    // Without a certificate there is nothing to bind to.
    let refused = api_post(&without, "/v1/tokens", &admin, body).await;
    assert_eq!((refused.status, refused.reason().as_str()), (400, "bad_request"), "{}", refused.body);
    assert!(!refused.body.contains(&admin[7..]), "the token is never echoed");
    // An unbound parent's child bound on request.
    let plain_parent = h.token("web", web_rules());
    let bound_child = api_post(
        &with_mine,
        "/v1/tokens/narrow",
        &format!("Bearer {plain_parent}"),
        r#"{"bindToClientCertificate": true}"#,
    )
    .await;
    assert_eq!(bound_child.status, 200, "{}", bound_child.body);
    let bound_child = bound_child.json()["token"].as_str().expect("a token").to_string();
    assert_eq!(call(&bound_child, &with_another).await.reason(), "certificate_mismatch");
    assert_eq!(call(&bound_child, &with_mine).await.status, 200);
    h.shutdown().await;
}

/// A JWT's payload.
fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON")
}

#[test]
fn broken_tls_settings_are_config_errors_naming_the_file() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "gateway", &pki.ca.server(&["gateway.test"]));
    let other = pki.ca.server(&["x.test"]);
    replace_file(&pki.path("mismatch.pem"), pki.ca.server(&["y.test"]).cert.as_bytes());
    replace_file(&pki.path("mismatch.key"), other.key.as_bytes());
    set_private(&pki.path("mismatch.key"));
    replace_file(&pki.path("garbage.pem"), b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    let errors = |tls: Value| {
        let mut doc = ConfigDoc::demo();
        doc.set("tls", tls);
        let text = serde_json::to_string(&doc.0).expect("json");
        match narrowgate::config::Config::from_yaml(&text, pki.dir.path()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.0.join("\n"),
        }
    };
    let certs = |c: &str| json!([{ "cert": format!("{c}.pem"), "key": format!("{c}.key") }]);
    let e = errors(json!({ "proxy": { "certificates": certs("mismatch") } }));
    assert!(
        e.contains("tls.proxy.certificates[0].cert") && e.contains("mismatch.pem") && e.contains("does not belong"),
        "{e}"
    );
    let e = errors(json!({ "proxy": { "certificates": certs("missing") } }));
    assert!(e.contains("tls.proxy.certificates[0].cert") && e.contains("cannot read"), "{e}");
    let e = errors(json!({ "proxy": { "certificates": [{ "cert": "garbage.pem", "key": "gateway.key" }] } }));
    assert!(e.contains("garbage.pem"), "{e}");
    let e = errors(json!({ "proxy": { "certificates": certs("gateway"), "client_certificates": "required" } }));
    assert!(e.contains("tls.proxy.client_ca: is required"), "{e}");
    let e = errors(
        json!({ "proxy": { "certificates": certs("gateway"), "client_certificates": "required", "client_ca": "gateway.key" } }),
    );
    assert!(e.contains("tls.proxy.client_ca") && e.contains("no CA certificate"), "{e}");
    let e = errors(json!({ "proxy": { "certificates": [] } }));
    assert!(e.contains("tls.proxy.certificates: at least one certificate is required"), "{e}");
    let e = errors(json!({ "proxy": { "certificates": certs("gateway"), "client_certificates": "sometimes" } }));
    assert!(e.contains("tls.proxy"), "{e}");
    let e = errors(json!({ "webhook": { "certificates": certs("gateway") } }));
    assert!(e.contains("tls"), "{e}");
    // Only the published example key is spared the mode check.
    let e = errors(
        json!({ "proxy": { "certificates": [{ "cert": "gateway.pem", "key": "gateway.key", "example_key": true }] } }),
    );
    assert!(e.contains("tls.proxy.certificates[0].example_key") && e.contains("not the published example key"), "{e}");
    // The key's contents never appear in an error.
    let key_line = other.key.lines().nth(1).expect("a key line");
    let e = errors(json!({ "proxy": { "certificates": [{ "cert": "mismatch.key", "key": "mismatch.key" }] } }));
    assert!(!e.contains(key_line), "{e}");
}

/// An enforce-only gateway fetches its issuer's keys and follows its
/// revocation feed (with the feed's reader token) over HTTPS, trusting
/// the issuer's private CA from its config; a plain `http://` URL to a
/// host that is not loopback is a warning `--strict` refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforcer_follows_its_issuer_over_https_with_its_own_ca_bundle() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "issuer", &pki.ca.server(&["127.0.0.1"]));
    let dir = pki.dir.path();
    let echo = narrowgate::echo::EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let reader = format!("feed-{}", narrowgate::token::keys::random_id(24).expect("random"));
    let digest: String = narrowgate::store::hash_secret(&reader).iter().map(|b| format!("{b:02x}")).collect();
    replace_file(&dir.join("feed.token"), reader.as_bytes());
    set_private(&dir.join("feed.token"));
    let issuer_extra = format!(
        "store:\n  sqlite:\n    path: issuer.db\n    bootstrap_token_file: admin-token\n    create_if_missing: true\n\
         revocation:\n  feed_readers_sha256: [\"{digest}\"]\n\
         tls:\n  api:\n    certificates: [{{ cert: issuer.pem, key: issuer.key }}]\n"
    );
    let issuer = support::serve_process(&support::process_config(dir, "issuer", echo.addr, &issuer_extra)).await;
    let api = issuer.api.expect("an api listener");
    let root = std::fs::read_to_string(dir.join("admin-token")).expect("bootstrap token").trim().to_string();

    let jwks = format!("https://{api}/.well-known/jwks.json");
    let feeds = [format!("https://{api}/v1/revocations")];
    let trusting = format!(
        "issuers:\n  - {{ name: narrowgate, issuer: narrowgate, algorithms: [ES256], jwks_url: \"{jwks}\", \
         jwks_min_refetch: 200ms, jwks_ca_file: ca.pem }}\n\
         revocation:\n  follow:\n    ca_file: ca.pem\n"
    );
    let config = support::enforcer_config(dir, "enforcer", echo.addr, &jwks, &feeds, "feed.token", &trusting);
    let enforcer = support::serve_process(&config).await;

    // A token the issuer mints is honoured; revoked there, refused here.
    let admin = format!("Bearer {root}");
    let body = r#"{"name": "over-https", "lifetime": "1h"}"#;
    let len = body.len().to_string();
    let mint = support::raw_request(
        "POST",
        "/v1/tokens",
        &[
            ("Host", "issuer"),
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
            ("Connection", "close"),
        ],
        body,
    );
    let (created, _) = tls_exchange(api, &connector(&pki, None), "127.0.0.1", mint.as_bytes()).await.expect("minted");
    assert_eq!(created.status, 201, "{}", created.body);
    let (token, id) = (
        created.json()["token"].as_str().expect("token").to_string(),
        created.json()["id"].as_str().expect("id").to_string(),
    );
    assert_eq!(enforcer.call("GET", "/users/current/accounts/a1", &token).await.status, 200);
    let revoke = build_request("DELETE", &format!("/v1/tokens/{id}"), &[("Authorization", &admin)]);
    let (revoked, _) =
        tls_exchange(api, &connector(&pki, None), "127.0.0.1", revoke.as_bytes()).await.expect("revoked");
    assert!(revoked.status < 300, "{}", revoked.body);
    eventually_async(Duration::from_secs(10), || async {
        (enforcer.call("GET", "/users/current/accounts/a1", &token).await.reason() == "revoked").then_some(())
    })
    .await;
    drop(enforcer);

    // Without the CA bundle, the system's roots do not know the issuer's
    // CA: the keys never load, and nothing is honoured.
    let untrusting = "issuers:\n  - { name: narrowgate, issuer: narrowgate, algorithms: [ES256], jwks_url: \"JWKS\", jwks_min_refetch: 200ms }\n"
        .replace("JWKS", &jwks);
    let config = support::enforcer_config(dir, "stranger", echo.addr, &jwks, &feeds, "feed.token", &untrusting);
    let (mut child, addrs) = support::spawn_serve(&config).await;
    let resp = support::send_raw(
        addrs.proxy,
        build_request("GET", "/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    let _ = child.kill();
    let _ = child.wait();

    // Plain http:// to a host that is not loopback: a warning, which
    // --strict turns into a failure.
    let plain = "issuers:\n  - { name: narrowgate, issuer: narrowgate, algorithms: [ES256], jwks_url: \"http://issuer.example/jwks.json\" }\n";
    let config = support::enforcer_config(
        dir,
        "plain",
        echo.addr,
        &jwks,
        &["http://issuer.example/v1/revocations".into()],
        "feed.token",
        plain,
    );
    let out = run(tokio::process::Command::new(support::BIN).args([
        "check-config",
        "--strict",
        config.to_str().expect("utf-8"),
    ]))
    .await;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("issuers[0].jwks_url") && text.contains("revocation.follow.urls[0]") && text.contains("https://"),
        "{text}"
    );
}

/// A resumed handshake asks for no client certificate, so sessions never
/// cross listeners, nor a reload that changes who may connect.
#[tokio::test]
async fn a_session_resumes_only_where_the_same_clients_are_admitted() {
    let pki = Pki::new();
    write_pair(pki.dir.path(), "gateway", &pki.ca.server(&["gateway.test"]));
    let api = listener_tls(&pki, &["gateway"], "required");
    let mut h = tls_harness(&pki, &["gateway"], "off", |doc| {
        doc.set("tls.api", api);
    })
    .await;
    let resuming = resuming_connector(&pki, None, true);
    let health = get("/health", &[]);
    let for_handshakes = resuming.clone();
    let handshake = move |addr: SocketAddr| {
        let resuming = for_handshakes.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut tls =
                resuming.connect("gateway.test".try_into().expect("name"), tcp).await.map_err(|e| e.to_string())?;
            // A refused client certificate shows at the first read (TLS 1.3).
            tls.write_all(&get("/readyz", &[])).await.map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(tls.get_ref().1.handshake_kind())
        }
    };
    // A session of the proxy listener (no client certificates)...
    tls_exchange(h.proxy, &resuming, "gateway.test", &health).await.expect("the proxy serves");
    assert_eq!(handshake(h.proxy).await, Ok(Some(rustls::HandshakeKind::Resumed)));
    // ...does not open the api listener, which requires one.
    assert!(handshake(h.api).await.is_err(), "a proxy session resumed on the api listener");

    // A reload that starts asking the proxy's clients for certificates
    // ends its sessions: no certificate, no connection.
    let required = listener_tls(&pki, &["gateway"], "required");
    let admin = h.admin;
    let failures = || metric(admin, "narrowgate_config_reloads_total{result=\"success\"}");
    let before = failures().await.unwrap_or(0.0);
    h.rewrite(|doc| {
        doc.set("tls.proxy", required);
    });
    eventually_async(Duration::from_secs(10), || async { (failures().await.unwrap_or(0.0) > before).then_some(()) })
        .await;
    assert!(handshake(h.proxy).await.is_err(), "an old session resumed past the new client-certificate rule");
    h.shutdown().await;
}
