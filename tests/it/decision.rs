//! The decision listener, asked by the proxies a team already runs — real
//! Envoy 1.40 (`ext_authz` over gRPC and over HTTP), nginx (`auth_request`)
//! and Caddy (`forward_auth`) in front of the echo upstream: what the
//! client gets through each is what narrowgate's own proxy would answer,
//! the upstream gets the identity and never the credential or a forged
//! identity, and a denied request never reaches it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::support::{self, Harness, Response, build_request, matrix, send_raw, web_rules};

const A1: &str = "/users/current/accounts/a1";

/// Every identity header an answer states (the demo config's names).
const IDENTITY: [&str; 7] = [
    "x-narrowgate-subject",
    "x-narrowgate-token-id",
    "x-narrowgate-application",
    "x-narrowgate-roles",
    "x-narrowgate-client-subject",
    "x-narrowgate-client-spiffe",
    "x-narrowgate-would-deny",
];

/// The demo gateway with the decision listener on, believing 127.0.0.1.
async fn decision_gateway() -> (Harness, SocketAddr) {
    let h = Harness::start_with(
        |doc| {
            doc.set("listeners.decision", "127.0.0.1:0");
            doc.set("decision", json!({ "peers": ["127.0.0.1/32"] }));
        },
        |_| {},
    )
    .await;
    let addr = h.gateway.as_ref().and_then(|g| g.decision_addr).expect("the decision listener");
    (h, addr)
}

/// A port for a front proxy that cannot be told port 0 and say which it
/// took (nginx, Caddy, Envoy's listeners): bound, released, then given.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// A front proxy's process, stopped when dropped; its output kept for a
/// failing test's message.
struct Front {
    addr: SocketAddr,
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Front {
    /// Run `bin args` (with `config` written to `dir/config`), listening on
    /// `port`, and wait until it serves.
    async fn start(bin_var: &str, port: u16, config: &str, args: impl Fn(&str) -> Vec<String>) -> Front {
        let bin = std::env::var(bin_var).unwrap_or_else(|_| panic!("{bin_var} is not set: scripts/test sets it"));
        let dir = tempfile::tempdir().expect("tempdir");
        // Envoy tells its config's format by the file's extension.
        let path = dir.path().join(if bin_var == "NG_ENVOY" { "config.yaml" } else { "config" });
        std::fs::write(&path, config.replace("$DIR", &dir.path().display().to_string())).expect("config");
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let child = tokio::process::Command::new(bin)
            .args(args(&path.display().to_string()))
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the front proxy starts");
        let front = Front { addr: SocketAddr::from(([127, 0, 0, 1], port)), _child: child, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(front.addr).await.is_ok() {
                return front;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the front proxy did not listen: {}", front.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        send_raw(self.addr, build_request(method, target, headers).as_bytes()).await
    }
}

/// Which front proxy asks, and what its model can carry out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proxy {
    EnvoyGrpc,
    EnvoyHttp,
    /// Shows a denial's 401 and 403 as they are, any other as its own 500
    /// (the reason in `X-Narrowgate-Reason`, set from `auth_request_set`).
    Nginx,
    /// Caddy's `forward_auth`: the gateway's answer, the identity copied.
    Caddy,
}

impl Proxy {
    /// The status an answer of `status` reaches the client with.
    fn shown(self, status: u16) -> u16 {
        match (self, status) {
            (Proxy::Nginx, 200 | 401 | 403) | (Proxy::EnvoyGrpc | Proxy::EnvoyHttp | Proxy::Caddy, _) => status,
            (Proxy::Nginx, _) => 500,
        }
    }

    /// The reason code the client can read.
    fn reason(self, r: &Response) -> String {
        match self {
            Proxy::Nginx => r.header("x-narrowgate-reason").unwrap_or("").to_string(),
            _ => r.reason(),
        }
    }

    /// Whether it can drop a credential from the query (Envoy's gRPC
    /// answer has `query_parameters_to_remove`; the others nothing).
    fn strips_query(self) -> bool {
        self == Proxy::EnvoyGrpc
    }
}

/// Through `front`, what narrowgate's proxy would do: the matrix of
/// `tests/it/proxy_matrix.rs` (every allowed request reaches the upstream
/// with the identity and without the credential, every denial is
/// answered with the proxy's status and reason and reaches nothing),
/// forged identity headers, hygiene, and hostile descriptions.
async fn enforces_like_the_proxy(h: &Harness, front: &Front, proxy: Proxy) {
    let tokens = matrix::tokens(h);
    h.upstream_received();
    for c in &matrix::cases() {
        let token = c.token(&tokens);
        let (target, headers) = c.request(&tokens);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = front.send(c.method, &target, &headers).await;
        let seen = h.upstream_received();
        let name = c.name;
        // A credential in the query reaches the upstream through a front
        // proxy that cannot drop it: refused there instead.
        let in_query = matches!(c.token, Some((_, matrix::Via::Query(_))));
        let (status, reason) = if in_query && c.status == 200 && !proxy.strips_query() {
            (400, "cannot_remove")
        } else {
            (c.status, c.reason)
        };
        assert_eq!(r.status, proxy.shown(status), "{name}: {} {}", r.body, front.log());
        if status != 200 {
            assert_eq!(proxy.reason(&r), reason, "{name}: {}", r.body);
            assert!(seen.is_empty(), "{name}: the upstream received {seen:?}");
            if proxy != Proxy::Nginx {
                let body = r.json();
                let list = |k: &str| -> Vec<String> {
                    body[k]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                        .unwrap_or_default()
                };
                let (scopes, roles) =
                    if status == c.status { (c.missing_scopes, c.missing_roles) } else { (&[][..], &[][..]) };
                assert_eq!(
                    (list("missing_scopes"), list("missing_roles")),
                    (scopes.iter().map(|s| s.to_string()).collect(), roles.iter().map(|s| s.to_string()).collect()),
                    "{name}"
                );
                if status == 401 {
                    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{name}");
                }
            }
            if let Some(t) = token {
                assert!(!r.body.contains(t), "{name}: the token leaked into the body");
            }
            continue;
        }
        assert_eq!(seen.len(), 1, "{name}: {}", front.log());
        let got = &seen[0];
        assert_eq!(got.method, c.method, "{name}");
        // Exactly the target without the credential, wherever it was.
        assert_eq!(got.target, c.target, "{name}");
        assert_eq!(got.header("authorization"), None, "{name}: credential forwarded");
        assert_eq!(got.header("auth-token"), None, "{name}: credential forwarded");
        match c.token {
            None => {
                for hdr in IDENTITY {
                    // Absent, or empty where the front proxy copies what the
                    // answer says (forward auth).
                    assert!(
                        got.header(hdr).is_none_or(str::is_empty),
                        "{name}: {hdr} on a public route: {:?}",
                        got.headers
                    );
                }
            }
            Some((who, _)) => {
                assert_eq!(got.header("x-narrowgate-subject"), Some(who), "{name}");
                assert!(
                    got.header("x-narrowgate-token-id").is_some_and(|v| v.starts_with(&format!("jti-{who}-"))),
                    "{name}"
                );
                assert_eq!(got.header("x-narrowgate-application"), Some(c.reason), "{name}");
                assert_eq!(got.header("x-narrowgate-roles"), Some(c.roles), "{name}");
            }
        }
    }

    // Identity headers a client forges never pass: replaced on an allow.
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let forged = [("X-Narrowgate-Subject", "forged"), ("X-Narrowgate-Roles", "admin")];
    let r = front.send("GET", A1, &[&[("Authorization", auth.as_str())][..], &forged].concat()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = h.upstream_received();
    assert_eq!(
        (got[0].header("x-narrowgate-subject"), got[0].header("x-narrowgate-roles")),
        (Some("web"), Some("reader"))
    );
    // And on a public route, where the answer has no identity, every one a
    // client sends is gone (or empty).
    let forged: Vec<(&str, &str)> = IDENTITY.iter().map(|h| (*h, "forged")).collect();
    let r = front.send("GET", "/health", &forged).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = h.upstream_received();
    for hdr in IDENTITY {
        assert!(got[0].header(hdr).is_none_or(str::is_empty), "{hdr}: {:?}", got[0].headers);
    }

    // Hygiene, and a client describing another request than it sends:
    // an allowed read in the description headers of each kind of proxy
    // while it asks to delete; a separator encoded into a segment.
    let describing = [
        ("Authorization", auth.as_str()),
        ("X-Original-URI", A1),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", A1),
        ("X-Forwarded-Method", "GET"),
    ];
    for (method, target, headers, status, reason) in [
        (
            "GET",
            A1,
            vec![("Authorization", auth.as_str()), ("X-HTTP-Method-Override", "DELETE")],
            400,
            "method_override_rejected",
        ),
        // Beside nginx's own description: two descriptions.
        (
            "GET",
            A1,
            vec![("Authorization", auth.as_str()), ("X-Original-URL", "/admin")],
            400,
            if proxy == Proxy::Nginx { "bad_request" } else { "target_rewrite_rejected" },
        ),
        ("DELETE", A1, describing.to_vec(), 0, ""),
        ("GET", "/users/current/accounts%2Fa1", vec![("Authorization", auth.as_str())], 400, "ambiguous_path"),
        // A gRPC request is refused like any other: never with a 2xx a
        // front proxy would take for an allow.
        ("GET", A1, vec![("Content-Type", "application/grpc")], 0, ""),
        ("DELETE", A1, vec![("Authorization", auth.as_str()), ("Content-Type", "application/grpc+proto")], 0, ""),
    ] {
        let r = front.send(method, target, &headers).await;
        // Envoy answers a gRPC client's refusal in gRPC's terms: a 200
        // whose grpc-status is not OK.
        let refused = r.status != 200 || r.header("grpc-status").is_some_and(|s| s != "0");
        assert!(refused, "{method} {target} {headers:?}: allowed: {:?}", r.headers);
        if status != 0 {
            assert_eq!(
                (r.status, proxy.reason(&r)),
                (proxy.shown(status), reason.to_string()),
                "{method} {target}: {}",
                r.body
            );
        }
    }
    assert!(h.upstream_received().is_empty(), "a denied request reaches nothing");

    // An identity header in another spelling, which the proxy removes:
    // removed by a front proxy that can (Envoy), dropped by nginx (it
    // ignores names with an underscore), refused where it would pass.
    let r = front.send("GET", "/health", &[("X-Narrowgate_Subject", "forged")]).await;
    let seen = h.upstream_received();
    if r.status == 200 {
        assert!(seen[0].headers.iter().all(|(_, v)| v != "forged"), "{:?}", seen[0].headers);
    } else {
        assert_eq!((r.status, proxy.reason(&r)), (proxy.shown(400), "cannot_remove".to_string()), "{}", r.body);
        assert!(seen.is_empty());
    }

    // A dot segment: the proxy would forward the canonical path. Through a
    // front proxy that forwards it as sent, refused; one that resolves it
    // first is asked about, and forwards, the canonical path.
    let r = front.send("GET", "/users/current/./accounts/a1", &[("Authorization", auth.as_str())]).await;
    let seen = h.upstream_received();
    if r.status == 200 {
        assert_eq!(seen.iter().map(|g| g.target.as_str()).collect::<Vec<_>>(), [A1]);
    } else {
        assert_eq!((r.status, proxy.reason(&r)), (proxy.shown(400), "ambiguous_path".to_string()), "{}", r.body);
        assert!(seen.is_empty());
    }
}

/// With narrowgate gone, `front` refuses what it would have allowed: the
/// setting the README names makes each proxy fail closed.
async fn fails_closed_without_narrowgate(mut h: Harness, front: &Front) {
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    if let Some(g) = h.gateway.take() {
        g.shutdown().await;
    }
    let r = front.send("GET", A1, &[("Authorization", auth.as_str())]).await;
    assert!(r.status >= 400, "{}: {}", r.status, r.body);
    assert!(h.upstream_received().is_empty(), "nothing passes without a decision");
}

/// Envoy with one listener on `port` in front of `upstream`, asking
/// narrowgate through `filter` (an `ext_authz` config), and the cluster
/// `narrowgate` at `decision` (HTTP/2 when `grpc`).
fn envoy_config(port: u16, upstream: SocketAddr, decision: SocketAddr, filter: &str, grpc: bool) -> String {
    let h2 = if grpc {
        r#"
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }"#
    } else {
        ""
    };
    let cluster = |name: &str, a: SocketAddr| {
        format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }} }}] }}]"#,
            a.ip(),
            a.port()
        )
    };
    format!(
        r#"static_resources:
  listeners:
  - name: front
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: app }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
{filter}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{app}{ng}{h2}
"#,
        app = cluster("app", upstream),
        ng = cluster("narrowgate", decision),
    )
}

async fn envoy(config: String, port: u16) -> Front {
    // A base id of its own: tests run side by side.
    let base_id = (port % 60_000).to_string();
    Front::start("NG_ENVOY", port, &config, |path| {
        ["-c", path, "--base-id", &base_id, "--concurrency", "1", "-l", "warning", "--disable-hot-restart"]
            .map(String::from)
            .to_vec()
    })
    .await
}

#[tokio::test]
#[ignore = "needs Envoy: scripts/test installs it"]
async fn envoy_asks_over_grpc_and_its_clients_get_what_the_proxy_would_answer() {
    let (h, decision) = decision_gateway().await;
    let port = free_port();
    let filter = r#"              grpc_service:
                envoy_grpc: { cluster_name: narrowgate }
                timeout: 5s"#;
    let front = envoy(envoy_config(port, h.echo.addr, decision, filter, true), port).await;
    enforces_like_the_proxy(&h, &front, Proxy::EnvoyGrpc).await;
    // Each was decided, and counted, like a request to the proxy.
    let metrics = h.admin_get("/metrics").await.body;
    let denied = metrics
        .lines()
        .filter(|l| l.starts_with("narrowgate_requests_total{") && l.contains(r#"reason="insufficient_role""#))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>();
    assert!(denied >= 1.0, "{metrics}");
    fails_closed_without_narrowgate(h, &front).await;
}

#[tokio::test]
#[ignore = "needs Envoy: scripts/test installs it"]
async fn envoy_asks_over_http_and_its_clients_get_what_the_proxy_would_answer() {
    let (h, decision) = decision_gateway().await;
    let port = free_port();
    // Every header to the decision (it judges them all, as the proxy
    // does); the identity and request id back to the upstream.
    let filter = format!(
        r#"              http_service:
                server_uri: {{ uri: "http://{decision}", cluster: narrowgate, timeout: 5s }}
                path_prefix: /envoy
                authorization_request:
                  allowed_headers: {{ patterns: [{{ safe_regex: {{ regex: ".*" }} }}] }}
                authorization_response:
                  allowed_upstream_headers: {{ patterns: [{exact}, {{ exact: x-request-id }}] }}"#,
        exact = IDENTITY.map(|h| format!("{{ exact: {h} }}")).join(", ")
    );
    let front = envoy(envoy_config(port, h.echo.addr, decision, &filter, false), port).await;
    enforces_like_the_proxy(&h, &front, Proxy::EnvoyHttp).await;
    fails_closed_without_narrowgate(h, &front).await;
}

#[tokio::test]
#[ignore = "needs nginx: scripts/test installs it"]
async fn nginx_auth_request_asks_and_its_clients_get_what_the_proxy_would_answer() {
    let (h, decision) = decision_gateway().await;
    let port = free_port();
    let identity = IDENTITY
        .map(|header| {
            let var = header.replace('-', "_");
            format!("auth_request_set ${var} $upstream_http_{var};\n            proxy_set_header {header} ${var};\n            ")
        })
        .concat();
    let config = format!(
        r#"daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/log warn;
events {{}}
http {{
    access_log off;
    client_body_temp_path $DIR;
    proxy_temp_path $DIR;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_narrowgate;
            auth_request_set $ng_reason $upstream_http_x_narrowgate_reason;
            add_header X-Narrowgate-Reason $ng_reason always;
            {identity}proxy_set_header Authorization "";
            proxy_set_header auth-token "";
            proxy_pass http://{upstream};
        }}
        location = /_narrowgate {{
            internal;
            proxy_pass http://{decision}/nginx;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Host $host;
        }}
    }}
}}
"#,
        upstream = h.echo.addr
    );
    let front =
        Front::start("NG_NGINX", port, &config, |path| vec!["-c".into(), path.into(), "-p".into(), "/".into()]).await;
    enforces_like_the_proxy(&h, &front, Proxy::Nginx).await;
    fails_closed_without_narrowgate(h, &front).await;
}

#[tokio::test]
#[ignore = "needs Caddy: scripts/test installs it"]
async fn caddy_forward_auth_asks_and_its_clients_get_what_the_proxy_would_answer() {
    let (h, decision) = decision_gateway().await;
    let port = free_port();
    let deletes = IDENTITY.map(|h| format!("request_header -{h}")).join("\n        ");
    let copies = IDENTITY.join(" ");
    let config = format!(
        r#"{{
    admin off
    auto_https off
    storage file_system $DIR
}}
http://:{port} {{
    # In this order: the client's identity headers go, the decision's
    # come, then the credential goes.
    route {{
        {deletes}
        forward_auth {decision} {{
            uri /forward-auth
            copy_headers {copies}
        }}
        request_header -Authorization
        request_header -auth-token
        reverse_proxy {upstream}
    }}
}}
"#,
        upstream = h.echo.addr
    );
    let front = Front::start("NG_CADDY", port, &config, |path| {
        ["run", "--config", path, "--adapter", "caddyfile"].map(String::from).to_vec()
    })
    .await;
    enforces_like_the_proxy(&h, &front, Proxy::Caddy).await;
    fails_closed_without_narrowgate(h, &front).await;
}

#[tokio::test]
async fn a_description_is_believed_only_from_a_peer() {
    let (h, decision) = decision_gateway().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let nginx = |host: &str| {
        build_request(
            "GET",
            "/nginx",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", A1),
                ("Authorization", &auth),
                ("X-Real-IP", host),
                ("X-Request-Id", "chosen-by-the-client"),
            ],
        )
    };
    let from_peer = support::send_raw_from([127, 0, 0, 1].into(), decision, nginx("1.2.3.4").as_bytes()).await;
    assert_eq!(from_peer.status, 200, "{}", from_peer.body);
    assert_eq!(from_peer.header("x-narrowgate-subject"), Some("web"));
    // nginx passes the client's request id: a new one is made.
    let id = from_peer.header("x-request-id").unwrap_or("");
    assert!(!id.is_empty() && id != "chosen-by-the-client", "{id}");
    // Anyone else: refused whatever it describes.
    let stranger = support::send_raw_from([127, 0, 0, 2].into(), decision, nginx("1.2.3.4").as_bytes()).await;
    assert_eq!((stranger.status, stranger.reason().as_str()), (403, "untrusted_peer"), "{}", stranger.body);
    assert!(stranger.header("x-narrowgate-subject").is_none());
    // A gRPC Check from anyone else is refused before its message is read
    // (this one, with no message at all, would fail to decode if it were
    // read; no body, so the refusal cannot race its sending).
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--http2-prior-knowledge", "--interface", "127.0.0.2"])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", ""])
        .arg(format!("http://{decision}/envoy.service.auth.v3.Authorization/Check"))
        .output()
        .await
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(head.contains("grpc-status: 7") && head.contains("untrusted_peer"), "{head} {err}");

    // An endpoint that does not exist, and a description that does not
    // hold together.
    let r = send_raw(decision, build_request("GET", "/elsewhere", &[]).as_bytes()).await;
    assert_eq!(r.status, 404);
    let r =
        send_raw(decision, build_request("GET", "/forward-auth", &[("X-Forwarded-Method", "GET")]).as_bytes()).await;
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"));
    assert!(h.upstream_received().is_empty(), "a decision forwards nothing");
    h.shutdown().await;
}

#[tokio::test]
async fn a_decision_that_cannot_be_confirmed_current_is_a_denial() {
    // A gateway following a revocation feed that never answers, and told
    // to refuse when its revocations are stale: every token-checked
    // decision is a denial; a public route is still allowed.
    let (_held, nowhere) = support::refusing_address();
    let token_file = format!("{}/config/keys/demo-feed.token", env!("CARGO_MANIFEST_DIR"));
    let h = Harness::start_with(
        |doc| {
            doc.set("listeners.decision", "127.0.0.1:0");
            doc.set("decision", json!({ "peers": ["127.0.0.1/32"] }));
            doc.set(
                "revocation",
                json!({
                    "follow": { "urls": [format!("http://{nowhere}/v1/revocations")], "token_file": token_file, "demo_token": true },
                    "max_staleness": "1s",
                    "when_stale": "refuse",
                }),
            );
        },
        |_| {},
    )
    .await;
    let decision = h.gateway.as_ref().and_then(|g| g.decision_addr).expect("the decision listener");
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let ask = |target: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("X-Original-Method", "GET"), ("X-Original-URI", target)];
        all.extend_from_slice(headers);
        build_request("GET", "/nginx", &all)
    };
    let r = send_raw(decision, ask(A1, &[("Authorization", &auth)]).as_bytes()).await;
    assert_eq!((r.status, r.reason().as_str()), (503, "revocations_unavailable"), "{}", r.body);
    assert_eq!(r.header("x-narrowgate-reason"), Some("revocations_unavailable"));
    let public = send_raw(decision, ask("/health", &[]).as_bytes()).await;
    assert_eq!(public.status, 200, "{}", public.body);
    assert!(h.upstream_received().is_empty(), "a decision forwards nothing");
    h.shutdown().await;
}

#[test]
fn the_decision_listener_needs_its_peers_and_they_need_it() {
    let errors = |listener: bool, peers: Option<serde_json::Value>| {
        support::config_errors(&move |doc| {
            if listener {
                doc.set("listeners.decision", "127.0.0.1:0");
            }
            if let Some(p) = &peers {
                doc.set("decision", json!({ "peers": p }));
            }
        })
    };
    assert_eq!(errors(true, Some(json!(["10.0.0.0/8"]))), "");
    assert!(errors(true, None).contains("decision.peers: list the proxies"), "{}", errors(true, None));
    assert!(errors(true, Some(json!([]))).contains("decision.peers: list the proxies"));
    assert!(errors(true, Some(json!(["nope"]))).contains("decision.peers[0]"));
    assert!(errors(false, Some(json!(["10.0.0.0/8"]))).contains("decision: applies only with listeners.decision"));
    for prefix in ["envoy", "/", "/envoy/", "/a?b"] {
        let e = support::config_errors(&move |doc| {
            doc.set("listeners.decision", "127.0.0.1:0");
            doc.set("decision", json!({ "peers": ["10.0.0.0/8"], "envoy_path_prefix": prefix }));
        });
        assert!(e.contains("decision.envoy_path_prefix: a path"), "{prefix}: {e}");
    }
}
