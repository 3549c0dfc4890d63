//! The decision listener, asked by the proxies a team already runs — real
//! Envoy 1.40 (`ext_authz` over gRPC and over HTTP), nginx (`auth_request`)
//! and Caddy (`forward_auth`) in front of the echo upstream: what the
//! client gets through each is what narrowgate's own proxy would answer,
//! the upstream gets the identity and never the credential or a forged
//! identity, and a denied request never reaches it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::support::{self, Harness, Response, build_request, send_raw, web_rules};

const A1: &str = "/users/current/accounts/a1";

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

/// How a front proxy shows a denial to its client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shows {
    /// The gateway's own answer: its status and JSON body.
    Answer,
    /// nginx: 401 and 403 as they are, any other denial as its 500 (the
    /// reason in `X-Narrowgate-Reason`, set from `auth_request_set`).
    Nginx,
    /// The gateway's own answer, through Caddy before 2.9, whose
    /// `copy_headers` sets a header the decision did not send to its
    /// placeholder's text (caddyserver/caddy#6610).
    Caddy26,
}

/// Through `front`, what narrowgate's proxy would do: the identity
/// upstream and no credential, forged identity headers gone, and each
/// denial answered as the proxy answers it, reaching nothing.
async fn enforces_like_the_proxy(h: &Harness, front: &Front, shows: Shows) {
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    h.upstream_received();
    let forged = [("X-Narrowgate-Subject", "forged"), ("X-Narrowgate-Roles", "admin")];
    let r = front.send("GET", A1, &[&[("Authorization", auth.as_str())][..], &forged].concat()).await;
    assert_eq!(r.status, 200, "{} {}", r.body, front.log());
    let got = h.upstream_received();
    assert_eq!(got.len(), 1, "{:?} {} {}", r.headers, r.body, front.log());
    assert_eq!(got[0].target, A1);
    assert_eq!(got[0].header("x-narrowgate-subject"), Some("web"));
    assert_eq!(got[0].header("x-narrowgate-roles"), Some("reader"));
    assert_eq!(got[0].header("x-narrowgate-application"), Some("trading-account-management-api"));
    assert!(got[0].header("authorization").is_none(), "the credential is not forwarded");

    // A public route: no identity, and the forged one gone too.
    let r = front.send("GET", "/health", &forged).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = h.upstream_received();
    assert_eq!(got.len(), 1);
    for name in ["x-narrowgate-subject", "x-narrowgate-roles"] {
        let placeholder = |v: &str| shows == Shows::Caddy26 && v.starts_with("{http.reverse_proxy.header.");
        assert!(got[0].header(name).is_none_or(placeholder), "{name}: {:?}", got[0].headers);
    }

    let bad = "Bearer not.a.token";
    for (method, target, headers, status, reason) in [
        ("GET", A1, vec![], 401, "missing_token"),
        ("GET", A1, vec![("Authorization", bad)], 401, "invalid_token"),
        ("DELETE", A1, vec![("Authorization", auth.as_str())], 403, "insufficient_role"),
        ("GET", "/users/current/accounts/a2", vec![("Authorization", auth.as_str())], 403, "resource_not_allowed"),
        ("GET", "/nowhere", vec![("Authorization", auth.as_str())], 403, "no_matching_route"),
        (
            "GET",
            A1,
            vec![("Authorization", auth.as_str()), ("X-HTTP-Method-Override", "DELETE")],
            400,
            "method_override_rejected",
        ),
        // A target rewrite a client sends: never the described request
        // (beside nginx's own description, two descriptions).
        (
            "GET",
            A1,
            vec![("Authorization", auth.as_str()), ("X-Original-URL", "/admin")],
            400,
            if shows == Shows::Nginx { "bad_request" } else { "target_rewrite_rejected" },
        ),
    ] {
        let r = front.send(method, target, &headers).await;
        let shown = match (shows, status) {
            (Shows::Nginx, 401 | 403) | (Shows::Answer | Shows::Caddy26, _) => status,
            (Shows::Nginx, _) => 500,
        };
        assert_eq!(r.status, shown, "{method} {target} {headers:?}: {}", r.body);
        match shows {
            Shows::Answer | Shows::Caddy26 => assert_eq!(r.reason(), reason, "{method} {target}: {}", r.body),
            Shows::Nginx => assert_eq!(r.header("x-narrowgate-reason"), Some(reason), "{method} {target}"),
        }
        if status == 401 && shows != Shows::Nginx {
            assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{:?}", r.headers);
        }
    }
    assert!(h.upstream_received().is_empty(), "a denied request reaches nothing");
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
    enforces_like_the_proxy(&h, &front, Shows::Answer).await;
    // Each was decided, and counted, like a request to the proxy.
    let metrics = h.admin_get("/metrics").await.body;
    let denied = metrics
        .lines()
        .filter(|l| l.starts_with("narrowgate_requests_total{") && l.contains(r#"reason="insufficient_role""#))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>();
    assert!(denied >= 1.0, "{metrics}");
    h.shutdown().await;
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
                  allowed_upstream_headers: {{ patterns: [{{ prefix: "x-narrowgate-" }}, {{ exact: x-request-id }}] }}"#
    );
    let front = envoy(envoy_config(port, h.echo.addr, decision, &filter, false), port).await;
    enforces_like_the_proxy(&h, &front, Shows::Answer).await;
    h.shutdown().await;
}

#[tokio::test]
#[ignore = "needs nginx: scripts/test installs it"]
async fn nginx_auth_request_asks_and_its_clients_get_what_the_proxy_would_answer() {
    let (h, decision) = decision_gateway().await;
    let port = free_port();
    let identity = ["subject", "token_id", "application", "roles"]
        .map(|n| {
            let header = format!("x-narrowgate-{}", n.replace('_', "-"));
            format!(
                "auth_request_set $ng_{n} $upstream_http_{var};\n            proxy_set_header {header} $ng_{n};\n            ",
                var = header.replace('-', "_")
            )
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
    enforces_like_the_proxy(&h, &front, Shows::Nginx).await;
    h.shutdown().await;
}

#[tokio::test]
#[ignore = "needs Caddy: scripts/test installs it"]
async fn caddy_forward_auth_asks_and_its_clients_get_what_the_proxy_would_answer() {
    let (h, decision) = decision_gateway().await;
    let port = free_port();
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
        request_header -X-Narrowgate-Subject
        request_header -X-Narrowgate-Token-Id
        request_header -X-Narrowgate-Application
        request_header -X-Narrowgate-Roles
        forward_auth {decision} {{
            uri /forward-auth
            copy_headers X-Narrowgate-Subject X-Narrowgate-Token-Id X-Narrowgate-Application X-Narrowgate-Roles
        }}
        request_header -Authorization
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
    enforces_like_the_proxy(&h, &front, Shows::Caddy26).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_description_is_believed_only_from_a_peer() {
    let (h, decision) = decision_gateway().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let nginx = |host: &str| {
        build_request(
            "GET",
            "/nginx",
            &[("X-Original-Method", "GET"), ("X-Original-URI", A1), ("Authorization", &auth), ("X-Real-IP", host)],
        )
    };
    let from_peer = support::send_raw_from([127, 0, 0, 1].into(), decision, nginx("1.2.3.4").as_bytes()).await;
    assert_eq!(from_peer.status, 200, "{}", from_peer.body);
    assert_eq!(from_peer.header("x-narrowgate-subject"), Some("web"));
    // Anyone else: refused whatever it describes.
    let stranger = support::send_raw_from([127, 0, 0, 2].into(), decision, nginx("1.2.3.4").as_bytes()).await;
    assert_eq!((stranger.status, stranger.reason().as_str()), (403, "untrusted_peer"), "{}", stranger.body);
    assert!(stranger.header("x-narrowgate-subject").is_none());
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
}
