//! The upstream side: a pooled HTTP/1.1 client, round-robin over the
//! configured addresses, with connect and response-head timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamConfig;
use crate::metrics::UpstreamError;

pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    authorities: Vec<Authority>,
    next: AtomicUsize,
    read_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("authorities", &self.authorities).finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Upstream {
            client,
            authorities: cfg.addresses.clone(),
            next: AtomicUsize::new(0),
            read_timeout: cfg.read_timeout,
        }
    }

    /// The next upstream address, round robin.
    pub fn pick(&self) -> Authority {
        let n = self.authorities.len().max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        // Config validation guarantees at least one address.
        self.authorities.get(i).cloned().unwrap_or_else(|| Authority::from_static("127.0.0.1:1"))
    }

    /// Send a request whose URI is already absolute; wait at most the read
    /// timeout for the response head.
    pub async fn send(&self, req: http::Request<Incoming>) -> Result<http::Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.read_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect),
            Ok(Err(_)) => Err(UpstreamError::Other),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}
