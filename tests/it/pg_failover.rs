//! PostgreSQL failed over to a standby under load: the primary crashes, a
//! synchronous streaming standby is promoted, and the address the
//! gateways use (here a relay on a Unix socket, as a service address or a
//! connection pooler is in production) moves to it. Token-service writes
//! resume on their own, no write that was acknowledged is lost, and a
//! revocation made through one replica right after is enforced by another
//! within the bound.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use narrowgate::echo::EchoUpstream;
use support::{PrivatePostgres, process_config, serve_process};
use tokio::net::{UnixListener, UnixStream};

const ACCOUNT: &str = "/users/current/accounts/a1";

/// Where the gateways reach PostgreSQL: a Unix socket whose connections
/// go to the primary of the moment.
struct PgAddress {
    dir: tempfile::TempDir,
    target: Arc<Mutex<PathBuf>>,
}

impl PgAddress {
    async fn start(primary: &Path) -> PgAddress {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).expect("bind the socket");
        let target = Arc::new(Mutex::new(primary.to_path_buf()));
        let to = target.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let socket = to.lock().expect("target").join(".s.PGSQL.5432");
                tokio::spawn(async move {
                    if let Ok(mut server) = UnixStream::connect(socket).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        PgAddress { dir, target }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@localhost:5432/postgres?host={}", self.dir.path().display())
    }

    /// New connections go to `primary` from now on.
    fn move_to(&self, primary: &Path) {
        *self.target.lock().expect("target") = primary.to_path_buf();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test starts one"]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_write_and_keeps_the_revocation_bound() {
    // Every commit waits until the standby has it.
    let primary = PrivatePostgres::start_with("-c synchronous_standby_names='*'");
    let standby = PrivatePostgres::standby_of(&primary);
    support::eventually(Duration::from_secs(20), || {
        (primary.query("SELECT sync_state FROM pg_stat_replication") == "sync").then_some(())
    })
    .await;
    let address = PgAddress::start(&primary.socket_dir()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = format!(
        "store:\n  postgres:\n    url: {}\n    timeout: 1s\n    bootstrap_token_file: admin-token\n    create_if_missing: true",
        address.url()
    );
    let a = Arc::new(serve_process(&process_config(dir.path(), "a", echo.addr, &store)).await);
    let b = serve_process(&process_config(dir.path(), "b", echo.addr, &store)).await;
    let root = std::fs::read_to_string(dir.path().join("admin-token")).expect("bootstrap file").trim().to_string();
    let mint = |g: Arc<support::GatewayProcess>, root: String, name: String| async move {
        g.api_call("POST", "/v1/tokens", Some(&root), Some(&format!(r#"{{"name":"{name}","lifetime":"1h"}}"#))).await
    };
    let r = mint(a.clone(), root.clone(), "victim".into()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let victim = r.json()["token"].as_str().expect("token").to_string();
    assert_eq!(b.call("GET", ACCOUNT, &victim).await.status, 200);

    // Load: mints one after another through a, for as long as the test
    // runs; each acknowledged or refused (503), never anything else.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn({
        let (a, root) = (a.clone(), root.clone());
        async move {
            let (mut acknowledged, mut refused) = (Vec::new(), 0u32);
            for i in 0.. {
                if *stopped.borrow() {
                    break;
                }
                let name = format!("load-{i}");
                let r = mint(a.clone(), root.clone(), name.clone()).await;
                match r.status {
                    201 => acknowledged.push(name),
                    503 => refused += 1,
                    s => panic!("a mint during the failover answered {s}: {}", r.body),
                }
            }
            (acknowledged, refused)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The primary crashes; the standby is promoted; the address moves.
    primary.crash();
    let failed_over = Instant::now();
    standby.promote();
    address.move_to(&standby.socket_dir());
    // Writes resume on their own.
    support::eventually_async(Duration::from_secs(30), || {
        let (a, root) = (a.clone(), root.clone());
        async move {
            (mint(a, root, format!("after-{}", failed_over.elapsed().as_millis())).await.status == 201).then_some(())
        }
    })
    .await;
    eprintln!("writes resumed {:?} after the primary crashed", failed_over.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).expect("stop the load");
    let (acknowledged, refused) = load.await.expect("the load");
    assert!(acknowledged.len() > 5, "the load barely ran: {} mints", acknowledged.len());
    eprintln!("{} mints acknowledged, {refused} refused (503) during the failover", acknowledged.len());

    // Nothing acknowledged was lost: each name is taken on the new primary
    // (asked again while the store answers 503, which says nothing).
    for name in &acknowledged {
        let status = support::eventually_async(Duration::from_secs(10), || {
            let (a, root, name) = (a.clone(), root.clone(), name.clone());
            async move { Some(mint(a, root, name).await.status).filter(|s| *s != 503) }
        })
        .await;
        assert_eq!(status, 409, "{name}, acknowledged before the failover, is gone");
    }

    // A revocation through a is enforced by b within the bound.
    support::eventually_async(Duration::from_secs(10), || async {
        let r = a.api_call("DELETE", "/v1/tokens?name=victim", Some(&root), None).await;
        assert!(matches!(r.status, 204 | 503), "{} {}", r.status, r.body);
        (r.status == 204).then_some(())
    })
    .await;
    let revoked = Instant::now();
    support::eventually_async(Duration::from_secs(5), || async {
        let r = b.call("GET", ACCOUNT, &victim).await;
        (r.status == 401).then_some(())
    })
    .await;
    let seen = revoked.elapsed();
    eprintln!("a revocation after the failover was enforced by the other replica {seen:?} later");
    assert!(seen < Duration::from_secs(1), "b accepted the revoked token for {seen:?}");
}
