//! Several upstreams: applications and routes sent to their own backends,
//! one gateway fronting several APIs by `Host` (an unknown host refused,
//! never sent to another's backend), and TLS to an upstream with a private
//! CA, a wrong name and a client certificate — what the client got and
//! what each upstream received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use narrowgate::echo::EchoUpstream;
use serde_json::{Value, json};

use crate::support::{Harness, build_request, web_rules};
use crate::tls::{Ca, Pair, write_pair};

/// `GET path` with `host` and the token.
async fn get(h: &Harness, host: &str, path: &str, auth: &str) -> crate::support::Response {
    h.raw(
        build_request("GET", path, &[("Authorization", auth)])
            .replacen("Host: gateway.test", &format!("Host: {host}"), 1)
            .as_bytes(),
    )
    .await
}

#[tokio::test]
async fn hosts_and_routes_send_each_request_to_its_own_upstream_and_nothing_to_the_others() {
    let mt = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("second upstream");
    let h = Harness::start_with(
        |doc| {
            doc.set("upstreams", json!({ "mt": { "addresses": [mt.addr.to_string()] } }));
            doc.set("applications.0.hosts", json!(["trading.test"]));
            doc.set("applications.1.hosts", json!(["mt.test"]));
            doc.set("applications.1.upstream", "mt");
            // A route of an application without hosts, sent elsewhere than
            // its application's upstream.
            doc.set("applications.2.routes.0.upstream", "mt");
        },
        |_| {},
    )
    .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let (default, mt_seen) = (
        || h.upstream_received().len(),
        || {
            let n = mt.received().len();
            mt.clear();
            n
        },
    );

    // Each host to its application's upstream (the port and case of Host
    // do not matter).
    for host in ["trading.test", "TRADING.test:8443"] {
        let resp = get(&h, host, "/users/current/accounts/a1", &auth).await;
        assert_eq!(resp.status, 200, "{host}: {}", resp.body);
        assert_eq!((default(), mt_seen()), (1, 0), "{host}");
    }
    let resp = get(&h, "mt.test", "/mt-manager/accounts/a1/users/7", &auth).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!((default(), mt_seen()), (0, 1));

    // A route of another host's application is not there at this host.
    let resp = get(&h, "mt.test", "/users/current/accounts/a1", &auth).await;
    assert_eq!((resp.status, resp.reason().as_str()), (403, "no_matching_route"));
    let resp = get(&h, "mt.test", "/health", "Bearer -").await;
    assert_eq!(resp.reason(), "no_matching_route", "trading's public route is trading's alone");
    // An application without hosts serves every host; its route names
    // its own upstream.
    let token = h.token(
        "web",
        json!([narrowgate::token::testkit::rule("metastats-api", &["reader"], &["account:$USER_ID$:a1"])]),
    );
    let resp =
        get(&h, "trading.test", "/metastats/users/current/accounts/a1/metrics", &format!("Bearer {token}")).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!((default(), mt_seen()), (0, 1));

    // `narrowgate explain` routes by host as the gateway does.
    for (host, reason) in
        [("trading.test", "allowed"), ("mt.test", "no_matching_route"), ("unknown.test", "unknown_host")]
    {
        let out = std::process::Command::new(crate::support::BIN)
            .args(["explain", "--json", "--without-store", "--config"])
            .arg(&h.config_path)
            .args(["--token", auth.trim_start_matches("Bearer "), "-H", &format!("Host: {host}")])
            .args(["GET", "/users/current/accounts/a1"])
            .output()
            .expect("explain runs");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(answer["reason"], reason, "{host}: {answer}");
    }

    // A host nobody serves: refused, sent nowhere.
    for host in ["unknown.test", "127.0.0.1", "trading.test.evil"] {
        let resp = get(&h, host, "/users/current/accounts/a1", &auth).await;
        assert_eq!((resp.status, resp.reason().as_str()), (421, "unknown_host"), "{host}");
    }
    assert_eq!((default(), mt_seen()), (0, 0));
    h.shutdown().await;
}

#[test]
fn an_upstream_nobody_defined_or_routes_that_collide_on_one_host_are_config_errors() {
    let errors = crate::support::config_errors;
    let e = errors(&|d| {
        d.set("applications.1.upstream", "nowhere");
    });
    assert!(e.contains("applications[1].upstream: no upstream \"nowhere\""), "{e}");
    let e = errors(&|d| {
        d.set("applications.0.routes.1.upstream", "nowhere");
    });
    assert!(e.contains("applications[0].routes[1].upstream: no upstream"), "{e}");
    let e = errors(&|d| {
        d.set("upstreams", json!({ "Bad Name": { "addresses": ["127.0.0.1:1"] } }));
    });
    assert!(e.contains("upstreams.Bad Name"), "{e}");
    let e = errors(&|d| {
        d.set("upstreams", json!({ "default": { "addresses": ["127.0.0.1:1"] } }));
    });
    assert!(e.contains("upstreams.default"), "{e}");
    let e = errors(&|d| {
        d.set(
            "upstreams",
            json!({ "named": { "addresses": ["api.test:80"], "dns": { "refresh": "0s", "nameservers": ["10.0.0.1", "[::1]:5353", "dns.test"] } } }),
        );
    });
    assert!(e.contains("upstreams.named.dns.refresh: at least 1s"), "{e}");
    assert!(e.contains("upstreams.named.dns.nameservers[2]"), "{e}");
    assert!(!e.contains("nameservers[0]") && !e.contains("nameservers[1]"), "{e}");
    let e = errors(&|d| {
        d.set("applications.0.hosts", json!(["api.test:8443"]));
    });
    assert!(e.contains("applications[0].hosts[0]"), "{e}");
    // Two applications on one host with the same route collide; on two
    // hosts they do not.
    let same_route = |d: &mut crate::support::ConfigDoc, hosts: [&str; 2]| {
        d.set("applications.0.hosts", json!([hosts[0]]));
        d.set("applications.2.hosts", json!([hosts[1]]));
        d.set("applications.2.routes.0.route", "GET /users/current/accounts/{accountId}/metrics");
        d.set("applications.0.routes.1.route", "GET /users/current/accounts/{accountId}/metrics");
    };
    let e = errors(&|d| same_route(d, ["one.test", "one.test"]));
    assert!(e.contains("overlaps"), "{e}");
    assert_eq!(errors(&|d| same_route(d, ["one.test", "two.test"])), "");
}

/// A TLS server in front of an echo upstream: what reaches the echo is
/// what the gateway sent through TLS. Counts the handshakes completed and
/// the client certificates presented.
struct TlsFront {
    addr: SocketAddr,
    echo: EchoUpstream,
    handshakes: Arc<AtomicUsize>,
    client_certificates: Arc<AtomicUsize>,
}

impl TlsFront {
    async fn start(pair: &Pair, client_ca: Option<&Ca>) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(
                    CertificateDer::pem_slice_iter(ca.pem.as_bytes()).filter_map(Result::ok),
                );
                builder.with_client_cert_verifier(
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("verifier"),
                )
            }
        };
        let config = builder
            .with_single_cert(
                vec![CertificateDer::from(pair.der.clone())],
                PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).expect("key"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (handshakes, client_certificates) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (h, c, to) = (handshakes.clone(), client_certificates.clone(), echo.addr);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, h, c) = (acceptor.clone(), h.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    h.fetch_add(1, Ordering::SeqCst);
                    if tls.get_ref().1.peer_certificates().is_some_and(|p| !p.is_empty()) {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                    let Ok(mut up) = tokio::net::TcpStream::connect(to).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        TlsFront { addr, echo, handshakes, client_certificates }
    }
}

#[tokio::test]
async fn a_tls_upstream_is_verified_by_its_ca_and_name_and_a_wrong_name_never_sees_the_request() {
    let ca = Ca::new("upstream CA");
    let front = TlsFront::start(&ca.server(&["upstream.test"]), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("upstream-ca.pem"), &ca.pem).expect("write");
    let ca_file = dir.path().join("upstream-ca.pem").display().to_string();
    let upstream = |tls: serde_json::Value| json!({ "secure": { "addresses": [front.addr.to_string()], "tls": tls } });
    let start = |tls: serde_json::Value| {
        let u = upstream(tls);
        Harness::start_with(
            move |doc| {
                doc.set("upstreams", u);
                doc.set("applications.0.upstream", "secure");
            },
            |_| {},
        )
    };
    // The right CA and name: served, through TLS.
    let h = start(json!({ "ca": ca_file, "server_name": "upstream.test" })).await;
    let resp = call(&h).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = front.echo.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/users/current/accounts/a1");
    assert!(h.upstream_received().is_empty(), "the default upstream saw nothing");
    h.shutdown().await;
    front.echo.clear();

    // A name the certificate does not have, or the system's roots (which
    // do not know this CA): 502 upstream_tls, and nothing reaches the
    // upstream.
    let before = front.handshakes.load(Ordering::SeqCst);
    for tls in [json!({ "ca": ca_file, "server_name": "other.test" }), json!({ "server_name": "upstream.test" })] {
        let h = start(tls.clone()).await;
        let resp = call(&h).await;
        assert_eq!((resp.status, resp.reason().as_str()), (502, "upstream_tls"), "{tls}: {}", resp.body);
        assert!(!resp.body.contains("upstream.test") && !resp.body.contains("certificate"), "{}", resp.body);
        let metrics = h.admin_get("/metrics").await.body;
        assert!(metrics.contains(r#"narrowgate_upstream_errors_total{kind="tls",upstream="secure"} 1"#), "{metrics}");
        h.shutdown().await;
    }
    assert_eq!(front.handshakes.load(Ordering::SeqCst), before, "no handshake completed");
    assert!(front.echo.received().is_empty(), "the upstream never saw a request");
}

#[tokio::test]
async fn the_gateway_presents_its_client_certificate_to_an_upstream_that_asks() {
    let ca = Ca::new("upstream CA");
    let front = TlsFront::start(&ca.server(&["upstream.test"]), Some(&ca)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("upstream-ca.pem"), &ca.pem).expect("write");
    let (cert, key) = write_pair(dir.path(), "gateway-client", &ca.client("gateway"));
    let tls = json!({
        "ca": dir.path().join("upstream-ca.pem").display().to_string(),
        "server_name": "upstream.test",
        "client_certificate": { "cert": cert.display().to_string(), "key": key.display().to_string() },
    });
    let h = Harness::start_with(
        |doc| {
            doc.set("upstreams", json!({ "secure": { "addresses": [front.addr.to_string()], "tls": tls } }));
            doc.set("applications.0.upstream", "secure");
        },
        |_| {},
    )
    .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(front.client_certificates.load(Ordering::SeqCst), 1);
    assert_eq!(front.echo.received().len(), 1);
    h.shutdown().await;
}

/// The web token's request, through `h`.
async fn call(h: &Harness) -> crate::support::Response {
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    h.raw(build_request("GET", "/users/current/accounts/a1", &[("Authorization", &auth)]).as_bytes()).await
}

/// A test upstream that counts the requests it reads and answers each as
/// its `x-mode` header says: `close` (reads it, closes without a word),
/// `503`, or anything else 200.
struct Counting {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Counting {
    async fn start() -> Counting {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { return };
                let count = count.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // The head, then the body its Content-Length says.
                    let (head, body_len) = loop {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (head, end + 4 + len);
                        }
                    };
                    while buf.len() < body_len {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let answer: &[u8] = if head.contains("x-mode: close") {
                        return;
                    } else if head.contains("x-mode: 503") {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    };
                    let _ = tcp.write_all(answer).await;
                });
            }
        });
        Counting { addr, requests }
    }

    fn take(&self) -> usize {
        self.requests.swap(0, Ordering::SeqCst)
    }
}

#[tokio::test]
async fn only_what_is_safe_is_retried_and_never_a_request_that_went_out() {
    let counting = Counting::start().await;
    let (_refusing, refused) = crate::support::refusing_address();
    // The refusing address first: round robin starts there.
    let upstream = json!({ "addresses": [refused.to_string(), counting.addr.to_string()],
        "retries": { "attempts": 1, "statuses": [503] }, "ejection": { "consecutive_failures": 0 } });
    let h = Harness::start_with(
        |doc| {
            doc.set("upstreams", json!({ "flaky": upstream }));
            doc.set("applications.0.upstream", "flaky");
        },
        |_| {},
    )
    .await;
    let writer = json!([narrowgate::token::testkit::rule(
        "trading-account-management-api",
        &["writer"],
        &["account:$USER_ID$:a1"]
    )]);
    let deployer = format!("Bearer {}", h.token("web", writer));
    let post = |mode: &'static str| {
        let req = crate::support::raw_body_request(
            "POST",
            "/users/current/accounts/a1/deploy",
            Some(&deployer),
            "application/json",
            "{}",
        );
        let req = req.replacen("\r\n", &format!("\r\nx-mode: {mode}\r\n"), 1);
        let h = &h;
        async move { h.raw(req.as_bytes()).await }
    };

    // Refused before a byte went out: sent to the other address, whatever
    // the method (each request starts at the refusing one in turn, or at
    // the other).
    for _ in 0..4 {
        let resp = post("ok").await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    assert_eq!(counting.take(), 4, "each request reached the upstream exactly once");
    let retried = crate::support::metric(h.admin, r#"narrowgate_upstream_retries_total{upstream="flaky"}"#).await;
    // Round robin moves on at every attempt, a retry's included: each
    // request met the refusing address first.
    assert_eq!(retried, Some(4.0));

    // Read and not answered: sent, so never sent again (a body went out).
    for _ in 0..2 {
        let resp = post("close").await;
        assert_eq!((resp.status, resp.reason().as_str()), (502, "upstream_unavailable"), "{}", resp.body);
    }
    assert_eq!(counting.take(), 2, "one each, never retried");
    // A 503 to a request with a body: relayed, not retried.
    for _ in 0..2 {
        assert_eq!(post("503").await.status, 503);
    }
    assert_eq!(counting.take(), 2);
    h.shutdown().await;

    // A 503 to an idempotent bodiless request: retried once, on the other
    // address; the client gets the retry's answer.
    let (one, two) = (Counting::start().await, Counting::start().await);
    let upstream = json!({ "addresses": [one.addr.to_string(), two.addr.to_string()],
        "retries": { "attempts": 1, "statuses": [503] }, "ejection": { "consecutive_failures": 0 } });
    let h = Harness::start_with(
        |doc| {
            doc.set("upstreams", json!({ "busy": upstream }));
            doc.set("applications.0.upstream", "busy");
        },
        |_| {},
    )
    .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    for _ in 0..3 {
        let req = build_request("GET", "/users/current/accounts/a1", &[("Authorization", &auth), ("x-mode", "503")]);
        assert_eq!(h.raw(req.as_bytes()).await.status, 503);
        assert_eq!((one.take(), two.take()), (1, 1), "sent once to each address");
    }
    let retried = crate::support::metric(h.admin, r#"narrowgate_upstream_retries_total{upstream="busy"}"#).await;
    assert_eq!(retried, Some(3.0));
    // Answered well: sent once.
    let req = build_request("GET", "/users/current/accounts/a1", &[("Authorization", &auth), ("x-mode", "ok")]);
    assert_eq!(h.raw(req.as_bytes()).await.status, 200);
    assert_eq!(one.take() + two.take(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_failing_address_is_ejected_for_a_while_and_tried_again() {
    let (held, free) = crate::support::refusing_address();
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let upstream = json!({ "addresses": [free.to_string(), echo.addr.to_string()],
        "retries": { "attempts": 0 }, "ejection": { "consecutive_failures": 1, "base": "400ms", "max": "1s" } });
    let h = Harness::start_with(
        |doc| {
            doc.set("upstreams", json!({ "pair": upstream }));
            doc.set("applications.0.upstream", "pair");
        },
        |_| {},
    )
    .await;
    let call = || call(&h);
    // The first request meets the refusing address (no retries here): 502.
    assert_eq!(call().await.reason(), "upstream_connect");
    let ejected = crate::support::metric(h.admin, r#"narrowgate_upstream_ejections_total{upstream="pair"}"#).await;
    assert_eq!(ejected, Some(1.0));
    // Ejected: every request now goes to the healthy one.
    for _ in 0..6 {
        assert_eq!(call().await.status, 200);
    }
    assert_eq!(echo.received().len(), 6);
    echo.clear();

    // The address comes back; after its ejection it is tried again and
    // serves its share.
    drop(held);
    let back = EchoUpstream::start(free).await.expect("the address serves again");
    h.advance(std::time::Duration::from_millis(500));
    for _ in 0..6 {
        assert_eq!(call().await.status, 200);
    }
    assert!(!back.received().is_empty(), "the recovered address was tried again");
    assert!(!echo.received().is_empty());
    h.shutdown().await;
}

/// A real DNS server (Debian's dnsmasq) answering from a hosts file the
/// test rewrites; a SIGHUP makes it read the file again. An answer is one
/// address or several, comma-separated.
struct Dnsmasq {
    child: tokio::process::Child,
    addr: SocketAddr,
    hosts: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    async fn start(name: &str, ip: &str) -> Dnsmasq {
        // On a busy machine the port found free can be taken before
        // dnsmasq binds it: then it exits, and another port is tried.
        for _ in 0..3 {
            let dns = Dnsmasq::spawn();
            dns.write(name, ip);
            if dns.settle(name, ip).await {
                return dns;
            }
        }
        panic!("dnsmasq did not come to answer {name} with {ip}");
    }

    fn spawn() -> Dnsmasq {
        use std::os::unix::fs::PermissionsExt;
        let bin =
            std::env::var("NG_DNSMASQ").expect("NG_DNSMASQ is not set: scripts/test installs dnsmasq and sets it");
        let dir = tempfile::tempdir().expect("tempdir");
        // dnsmasq reads the file after dropping to an unprivileged user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let hosts = dir.path().join("hosts");
        // A port free for UDP and TCP alike (dnsmasq serves both).
        let addr = loop {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
            let addr = udp.local_addr().expect("addr");
            if std::net::TcpListener::bind(addr).is_ok() {
                break addr;
            }
        };
        let child = tokio::process::Command::new(bin)
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--cache-size=0"])
            .arg("--pid-file=")
            .arg(format!("--listen-address={}", addr.ip()))
            .arg(format!("--port={}", addr.port()))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        Dnsmasq { child: child.expect("dnsmasq starts"), addr, hosts, _dir: dir }
    }

    fn write(&self, name: &str, ip: &str) {
        use std::os::unix::fs::PermissionsExt;
        let lines: String = ip.split(',').map(|ip| format!("{ip} {name}\n")).collect();
        std::fs::write(&self.hosts, lines).expect("hosts");
        std::fs::set_permissions(&self.hosts, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// From now on, `name` is `ip`.
    async fn answer(&mut self, name: &str, ip: &str) {
        self.write(name, ip);
        // (A SIGHUP is asked again if the answer has not changed after a
        // few seconds: on a busy machine one was seen to go unheeded.)
        for _ in 0..3 {
            let pid = self.child.id().expect("dnsmasq runs").to_string();
            let hup = tokio::process::Command::new("kill").args(["-HUP", &pid]).status().await.expect("kill");
            assert!(hup.success());
            if self.settle(name, ip).await {
                return;
            }
        }
        panic!("dnsmasq did not come to answer {name} with {ip}");
    }

    /// Wait (5 s at most) until the server answers `name` with `ip`.
    async fn settle(&self, name: &str, ip: &str) -> bool {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let servers = vec![NameServerConfig::new(self.addr, hickory_resolver::proto::xfer::Protocol::Udp)];
        let resolver = hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            hickory_resolver::name_server::TokioConnectionProvider::default(),
        )
        .build();
        let mut want: Vec<std::net::IpAddr> = ip.split(',').map(|ip| ip.parse().expect("ip")).collect();
        want.sort_unstable();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(found) = resolver.lookup_ip(name).await {
                let mut found: Vec<_> = found.iter().collect();
                found.sort_unstable();
                if found == want {
                    return true;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }
}

/// A gateway whose application's upstream `named` is `name:port`, asked
/// of `dns`, with neither retries nor ejection (so no failure is hidden),
/// and `more` settings.
async fn named_upstream_gateway(name: &str, port: u16, dns: &Dnsmasq, more: Value) -> Harness {
    let mut upstream = json!({ "addresses": [format!("{name}:{port}")],
        "retries": { "attempts": 0 }, "ejection": { "consecutive_failures": 0 },
        "dns": { "refresh": "1m", "nameservers": [dns.addr.to_string()] } });
    if let (Some(u), Some(more)) = (upstream.as_object_mut(), more.as_object()) {
        u.extend(more.clone());
    }
    Harness::start_with(
        |doc| {
            doc.set("upstreams", json!({ "named": upstream.clone() }));
            doc.set("applications.0.upstream", "named");
        },
        |_| {},
    )
    .await
}

#[tokio::test]
#[ignore = "needs dnsmasq: scripts/test installs it"]
async fn a_name_is_resolved_again_on_its_interval_and_after_a_failed_connection() {
    const NAME: &str = "api.upstream.test";
    // Two upstreams on one port, at two addresses the name will take in turn.
    let one = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let port = one.addr.port();
    // Nothing listens at 127.0.0.2 yet: the name's first answer leads nowhere.
    let mut dns = Dnsmasq::start(NAME, "127.0.0.2").await;
    let h = named_upstream_gateway(NAME, port, &dns, json!({})).await;
    let count = |result: &'static str| {
        let admin = h.admin;
        async move {
            let series = format!(r#"narrowgate_upstream_resolutions_total{{result="{result}",upstream="named"}}"#);
            crate::support::metric(admin, &series).await.unwrap_or(0.0)
        }
    };
    let settled = |result: &'static str, n: f64| async move {
        for _ in 0..200 {
            if count(result).await >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no {n} resolutions with result {result}");
    };

    // Resolved at the first connection: to where nothing listens.
    assert_eq!(call(&h).await.reason(), "upstream_connect");
    assert_eq!(count("success").await, 1.0);

    // The record changes. The failed connection makes the name due again
    // a second later (the refresh interval is a minute): the request
    // after that second goes where the last answer said and has it asked
    // again; the next one goes to the new address.
    dns.answer(NAME, "127.0.0.1").await;
    h.advance(std::time::Duration::from_secs(2));
    let _ = call(&h).await;
    settled("success", 2.0).await;
    one.clear();
    let resp = call(&h).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(one.received().len(), 1);

    // The record moves to a live second upstream. Until the interval is
    // up, the kept-alive connection to the first serves on.
    let two = EchoUpstream::start(SocketAddr::from(([127, 0, 0, 2], port))).await.expect("second echo");
    dns.answer(NAME, "127.0.0.2").await;
    assert_eq!(call(&h).await.status, 200);
    assert_eq!((one.received().len(), two.received().len()), (2, 0), "re-resolved before its interval");
    // The interval is up: the name is asked again in the background, and
    // from then on every request goes to the new address; the pooled
    // connection to the old one is not reused.
    h.advance(std::time::Duration::from_secs(61));
    assert_eq!(call(&h).await.status, 200);
    settled("success", 3.0).await;
    one.clear();
    for _ in 0..4 {
        assert_eq!(call(&h).await.status, 200);
    }
    assert_eq!((one.received().len(), two.received().len()), (0, 4));

    // The DNS server goes away: resolution fails, and the last good
    // address serves on.
    drop(dns);
    h.advance(std::time::Duration::from_secs(61));
    assert_eq!(call(&h).await.status, 200);
    settled("failure", 1.0).await;
    assert_eq!(call(&h).await.status, 200);
    assert_eq!(two.received().len(), 6);
    assert_eq!(count("success").await, 3.0);
    h.shutdown().await;
}

#[tokio::test]
#[ignore = "needs dnsmasq: scripts/test installs it"]
async fn a_dead_address_among_a_names_several_costs_no_request() {
    const NAME: &str = "several.upstream.test";
    // The name gives two addresses; only one of them serves (nothing
    // listens on the port at 127.0.0.3: a refused connection).
    let live = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let port = live.addr.port();
    let dns = Dnsmasq::start(NAME, "127.0.0.1,127.0.0.3").await;
    // No pooled connection is kept, so every request dials the name; and
    // neither a retry nor the configured address's ejection may hide a
    // failed request.
    let h = named_upstream_gateway(NAME, port, &dns, json!({ "pool_max_idle": 0 })).await;
    for i in 0..8 {
        let resp = call(&h).await;
        assert_eq!(resp.status, 200, "request {i}: {}", resp.body);
    }
    assert_eq!(live.received().len(), 8, "each request reached the live address");
    let failed =
        crate::support::metric(h.admin, r#"narrowgate_upstream_errors_total{kind="connect",upstream="named"}"#).await;
    assert_eq!(failed.unwrap_or(0.0), 0.0, "no request failed");
    h.shutdown().await;
}
