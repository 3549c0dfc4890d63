//! Durability: the real binary, killed with SIGKILL after issuing tokens,
//! comes back with every issued token, revocation and used registration
//! token as it was.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use narrowgate::echo::EchoUpstream;
use narrowgate::token::testkit::TestKey;
use serde_json::json;
use support::{build_request, send_raw};

const BIN: &str = env!("CARGO_BIN_EXE_narrowgate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Gateway {
    child: Child,
    proxy: std::net::SocketAddr,
    api: std::net::SocketAddr,
}

impl Drop for Gateway {
    /// A failing test must not leave a gateway running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(config: &std::path::Path, proxy: u16, api: u16, admin: u16) -> Gateway {
    let child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn narrowgate serve");
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
    support::eventually_async(Duration::from_secs(20), || async move {
        let r = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(admin)).await;
        if !matches!(r, Ok(Ok(_))) {
            return None;
        }
        (send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await.status == 200).then_some(())
    })
    .await;
    Gateway {
        child,
        proxy: format!("127.0.0.1:{proxy}").parse().expect("addr"),
        api: format!("127.0.0.1:{api}").parse().expect("addr"),
    }
}

async fn post(api: std::net::SocketAddr, path: &str, auth: Option<&str>, body: &str) -> support::Response {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Bearer {a}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    send_raw(api, req.as_bytes()).await
}

async fn call(g: &Gateway, method: &str, path: &str, token: &str) -> support::Response {
    send_raw(g.proxy, build_request(method, path, &[("Authorization", &format!("Bearer {token}"))]).as_bytes()).await
}

#[tokio::test]
async fn a_killed_gateway_restarts_with_every_token_revocation_and_redemption_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let key = TestKey::es256("demo");
    let signer = TestKey::es256("signer");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
    std::fs::write(dir.path().join("keys/signer.pem"), &signer.private_pem).expect("write");
    let (proxy, api, admin) = (free_port(), free_port(), free_port());
    let yaml = support::DEMO_YAML
        .replace("proxy: 127.0.0.1:8080", &format!("proxy: 127.0.0.1:{proxy}"))
        .replace("admin: 127.0.0.1:9090", &format!("admin: 127.0.0.1:{admin}"))
        .replace("api: 127.0.0.1:8081", &format!("api: 127.0.0.1:{api}"))
        .replace("addresses: [\"127.0.0.1:3000\"]", &format!("addresses: [\"{}\"]", echo.addr))
        .replace(
            "        public_key_file: keys/demo.pub.pem\n",
            "        public_key_file: keys/demo.pub.pem\n    signing_keys:\n      - kid: signer\n        private_key_file: keys/signer.pem\n",
        )
        .replace(
            "unmatched: deny",
            "unmatched: deny\n\nstore:\n  sqlite:\n    path: data/narrowgate.db\n    bootstrap_token_file: data/admin-token",
        );
    let config = dir.path().join("narrowgate.yaml");
    std::fs::write(&config, yaml).expect("write config");

    let mut g = serve(&config, proxy, api, admin).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("bootstrap file").trim().to_string();
    let created = |r: support::Response| -> String {
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["token"].as_str().expect("token").to_string()
    };
    let jwt = created(post(g.api, "/v1/tokens", Some(&root), r#"{"name":"jwt-1","lifetime":"1h"}"#).await);
    let doomed = created(post(g.api, "/v1/tokens", Some(&root), r#"{"name":"doomed","lifetime":"1h"}"#).await);
    let reference = created(post(g.api, "/v1/tokens", Some(&root), r#"{"name":"ref-1","form":"reference"}"#).await);
    let registration = created(
        post(g.api, "/v1/registration-tokens", Some(&root), r#"{"name":"reg-1","role":"User","ttl":"1h"}"#).await,
    );
    let redeemed = created(
        post(g.api, "/v1/registration-tokens/redeem", None, &json!({ "token": registration }).to_string()).await,
    );
    let r = send_raw(
        g.api,
        build_request("DELETE", "/v1/tokens?name=doomed", &[("Authorization", &format!("Bearer {root}"))]).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 204);
    for t in [&jwt, &reference, &redeemed, &root] {
        assert_eq!(call(&g, "GET", "/users/current/accounts/a1", t).await.status, 200);
    }
    assert_eq!(call(&g, "GET", "/users/current/accounts/a1", &doomed).await.status, 401);

    // SIGKILL: no shutdown, no flush beyond what each commit already did.
    g.child.kill().expect("kill -9");
    let _ = g.child.wait();

    let g = serve(&config, proxy, api, admin).await;
    for (name, t) in [("jwt", &jwt), ("reference", &reference), ("redeemed", &redeemed), ("bootstrap", &root)] {
        assert_eq!(call(&g, "GET", "/users/current/accounts/a1", t).await.status, 200, "{name} after restart");
    }
    let r = call(&g, "GET", "/users/current/accounts/a1", &doomed).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "revoked"), "the revocation after restart");
    let again =
        post(g.api, "/v1/registration-tokens/redeem", None, &json!({ "token": registration }).to_string()).await;
    assert_eq!((again.status, again.reason().as_str()), (409, "already_redeemed"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/admin-token")).expect("file").trim(),
        root,
        "no second bootstrap"
    );
}
