//! Where tokens are kept and how revocations reach the gateway: the store
//! (SQLite or PostgreSQL), the bootstrap token file, the revocation feed's
//! readers, and, for an enforce-only gateway, the feed it follows and what
//! it does when it cannot confirm its revocations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration::HumanDuration;
use super::network::Listeners;
use super::{Errors, check_private_file, parse_sha256_hex};

/// The token store, how often its revocations are fully resynced, and
/// whether a missing one may be created at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub resync_interval: Duration,
    /// Create the store at start if it has never existed (demos, first-start
    /// automation). Off: a missing store is an error, never silently
    /// replaced by an empty one; `narrowgate store init` creates it.
    pub create_if_missing: bool,
}

/// Which store.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        url: String,
        /// How long a store call may take (getting a connection included)
        /// before the token service answers 503 `store_unavailable`.
        timeout: Duration,
    },
}

/// The first admin credential of a store created empty: either the
/// operator's own secret, of which the config holds only the SHA-256 (the
/// store records that digest and never sees the secret), or a secret
/// generated then and written to `token_file` (mode 0600). A generated one
/// is printed only on a terminal (see `bootstrap`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bootstrap {
    pub token_file: Option<PathBuf>,
    /// SHA-256 of the operator's first admin credential.
    pub token_sha256: Option<[u8; 32]>,
}

impl StoreBackend {
    /// Its section of the config: `store.sqlite` or `store.postgres`.
    pub fn section(&self) -> &'static str {
        match self {
            StoreBackend::Sqlite { .. } => "store.sqlite",
            StoreBackend::Postgres { .. } => "store.postgres",
        }
    }

    /// The setting that says where it is: `store.sqlite.path` or
    /// `store.postgres.url`.
    pub fn setting(&self) -> &'static str {
        match self {
            StoreBackend::Sqlite { .. } => "store.sqlite.path",
            StoreBackend::Postgres { .. } => "store.postgres.url",
        }
    }
}

impl std::fmt::Debug for StoreBackend {
    // The PostgreSQL URL may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreBackend::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StoreBackend::Postgres { timeout, .. } => {
                f.debug_struct("Postgres").field("timeout", timeout).finish_non_exhaustive()
            }
        }
    }
}

/// How revocations reach this gateway, and what it does when it cannot
/// confirm them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevocationConfig {
    pub staleness: crate::revocation::Staleness,
    /// SHA-256 of the tokens that may read this gateway's revocation feed.
    pub feed_readers: Vec<[u8; 32]>,
    /// An issuer's feed this (enforce-only) gateway follows.
    pub follow: Option<FeedFollow>,
}

/// Where an enforce-only gateway follows an issuer's revocation feed.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedFollow {
    /// Tried in turn.
    pub urls: Vec<String>,
    /// PEM: the CAs an `https://` feed's certificate must chain to (`None`:
    /// the system's roots).
    pub ca: Option<Vec<u8>>,
    /// The feed reader token (a secret: never printed).
    pub token: String,
    /// The most ids the followed set holds (beyond it the set goes stale).
    pub max_ids: usize,
}

impl std::fmt::Debug for FeedFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedFollow").field("urls", &self.urls.len()).finish_non_exhaustive()
    }
}

/// Where tokens, registration tokens and revocations are kept.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum StoreFile {
    Sqlite {
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        resync_interval: Option<HumanDuration>,
        #[serde(default)]
        bootstrap_token_file: Option<String>,
        /// SHA-256 (hex) of the first admin credential, which the operator
        /// keeps (`narrowgate keys secret` makes a pair).
        #[serde(default)]
        bootstrap_token_sha256: Option<String>,
        /// Create the database at start if it does not exist (demos);
        /// otherwise `narrowgate store init` creates it.
        #[serde(default)]
        create_if_missing: bool,
    },
    Postgres {
        url: String,
        #[serde(default)]
        resync_interval: Option<HumanDuration>,
        #[serde(default)]
        bootstrap_token_file: Option<String>,
        /// SHA-256 (hex) of the first admin credential, which the operator
        /// keeps (`narrowgate keys secret` makes a pair).
        #[serde(default)]
        bootstrap_token_sha256: Option<String>,
        /// Create the schema at start if the database has none.
        #[serde(default)]
        create_if_missing: bool,
        /// How long a store call may take before 503 (default 1s).
        #[serde(default)]
        timeout: Option<HumanDuration>,
    },
}

/// How revocations reach this gateway and what it does when it cannot
/// confirm them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevocationFile {
    /// How long the revocation set may go unconfirmed (default 5s).
    #[serde(default)]
    pub max_staleness: Option<HumanDuration>,
    /// `serve` (default: keep serving from the last known set, logged and
    /// alerted) or `refuse` (503 `revocations_unavailable`).
    #[serde(default)]
    pub when_stale: Option<WhenStale>,
    /// Issuer side: SHA-256 (hex) of the tokens that may read this
    /// gateway's revocation feed (`GET /v1/revocations`).
    #[serde(default)]
    pub feed_readers_sha256: Vec<String>,
    /// Enforce-only side: follow an issuer's revocation feed.
    #[serde(default)]
    pub follow: Option<FollowFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FollowFile {
    /// The issuer replicas' feed URLs (`http://issuer:8081/v1/revocations`),
    /// tried in turn.
    pub urls: Vec<String>,
    /// A file holding the feed reader token (its SHA-256 is among the
    /// issuer's `feed_readers_sha256`).
    pub token_file: String,
    /// The file holds the reader token published with `narrowgate demo`
    /// (`config/keys/demo-feed.token`), no secret: its mode is not checked,
    /// since a checkout cannot make it private. Refused for any other token.
    #[serde(default)]
    pub demo_token: bool,
    /// The most revoked ids the followed set holds (default 1,000,000;
    /// about 100 bytes each). An issuer revoking more makes the follower
    /// stale: `when_stale` decides.
    #[serde(default)]
    pub max_ids: Option<usize>,
    /// PEM bundle of the CAs the feed's `https://` certificates must chain
    /// to; absent: the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

pub(super) fn build_store(f: StoreFile, base: &Path, errs: &mut Errors) -> (StoreConfig, Bootstrap) {
    let resync = |v: Option<HumanDuration>, errs: &mut Errors| {
        let d = v.map_or(Duration::from_secs(30), Duration::from);
        if d < Duration::from_millis(100) {
            errs.push("store.resync_interval", "must be at least 100ms");
        }
        d
    };
    match f {
        StoreFile::Sqlite {
            path,
            resync_interval,
            bootstrap_token_file,
            bootstrap_token_sha256,
            create_if_missing,
        } => {
            let path = base.join(path.as_deref().unwrap_or("data/narrowgate.db"));
            // The database holds token records: like a key, for its owner only.
            check_private_file(&path, "store.sqlite.path", errs);
            (
                StoreConfig {
                    backend: StoreBackend::Sqlite { path },
                    resync_interval: resync(resync_interval, errs),
                    create_if_missing,
                },
                bootstrap(bootstrap_token_file, bootstrap_token_sha256, base, "sqlite", errs),
            )
        }
        StoreFile::Postgres {
            url,
            resync_interval,
            bootstrap_token_file,
            bootstrap_token_sha256,
            create_if_missing,
            timeout,
        } => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // Not echoing the value: it may hold a password.
                errs.push("store.postgres.url", "must be a postgres:// or postgresql:// URL");
            }
            let timeout = timeout.map_or(Duration::from_secs(1), Duration::from);
            if timeout < Duration::from_millis(50) || timeout > Duration::from_secs(60) {
                errs.push("store.postgres.timeout", "must be between 50ms and 60s");
            }
            (
                StoreConfig {
                    backend: StoreBackend::Postgres { url, timeout },
                    resync_interval: resync(resync_interval, errs),
                    create_if_missing,
                },
                bootstrap(bootstrap_token_file, bootstrap_token_sha256, base, "postgres", errs),
            )
        }
    }
}

/// The first admin credential: the operator's digest, or a file for a
/// generated secret — not both (a generated secret would not be the one
/// the digest names).
fn bootstrap(file: Option<String>, sha256: Option<String>, base: &Path, backend: &str, errs: &mut Errors) -> Bootstrap {
    let at = |field: &str| format!("store.{backend}.{field}");
    let token_sha256 = sha256.and_then(|h| match parse_sha256_hex(&h) {
        // Fail closed: all zeros is the shipped placeholder, a digest no
        // secret has; a store made with it would have an admin nobody holds.
        Some(d) if d == [0; 32] => {
            errs.push(
                &at("bootstrap_token_sha256"),
                "is the placeholder (all zeros): put the SHA-256 of your first admin secret here (`narrowgate keys secret` makes a pair)",
            );
            None
        }
        Some(d) => Some(d),
        None => {
            errs.push(&at("bootstrap_token_sha256"), "must be 64 hex digits (the SHA-256 of a secret)");
            None
        }
    });
    if token_sha256.is_some() && file.is_some() {
        errs.push(
            &at("bootstrap_token_file"),
            "the first admin credential is the one bootstrap_token_sha256 names; no token is generated to write here",
        );
    }
    Bootstrap { token_file: file.map(|p| base.join(p)), token_sha256 }
}

pub(super) fn build_revocation(
    f: RevocationFile,
    base: &Path,
    listeners: &Option<Listeners>,
    has_store: bool,
    errs: &mut Errors,
) -> RevocationConfig {
    let max = f.max_staleness.map_or(Duration::from_secs(5), Duration::from);
    if max < Duration::from_millis(500) {
        errs.push("revocation.max_staleness", "must be at least 500ms (the feeds confirm every 250ms)");
    }
    let refuse = f.when_stale == Some(WhenStale::Refuse);
    let feed_readers = f
        .feed_readers_sha256
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let at = format!("revocation.feed_readers_sha256[{i}]");
            match parse_sha256_hex(h) {
                // All zeros is a placeholder, the digest of no token: a
                // gateway started with it would leave every sidecar stale.
                Some(d) if d == [0; 32] => {
                    errs.push(&at, "is the placeholder (all zeros): put the SHA-256 of the sidecars' feed reader token here (`narrowgate keys secret --out feed.token` makes one)");
                    None
                }
                Some(d) => Some(d),
                None => {
                    errs.push(&at, "must be 64 hex digits (the SHA-256 of a token)");
                    None
                }
            }
        })
        .collect::<Vec<_>>();
    if !feed_readers.is_empty() && listeners.as_ref().is_none_or(|l| l.api.is_none()) {
        errs.push("revocation.feed_readers_sha256", "needs listeners.api (the feed is served there)");
    }
    let follow = f.follow.and_then(|fw| {
        if has_store {
            errs.push(
                "revocation.follow",
                "a gateway with a store follows the store; follow is for enforce-only gateways",
            );
        }
        if fw.urls.is_empty() {
            errs.push("revocation.follow.urls", "list at least one issuer feed URL");
        }
        if fw.max_ids == Some(0) {
            errs.push("revocation.follow.max_ids", "must be at least 1");
        }
        for (i, u) in fw.urls.iter().enumerate() {
            super::check_fetch_url(u, &format!("revocation.follow.urls[{i}]"), errs);
        }
        let ca =
            fw.ca_file.as_ref().and_then(|c| super::read_ca_bundle(&base.join(c), "revocation.follow.ca_file", errs));
        let file = base.join(&fw.token_file);
        if !fw.demo_token {
            check_private_file(&file, "revocation.follow.token_file", errs);
        }
        match errs.read(&file).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
            Ok(t) if fw.demo_token && t.trim() != DEMO_FEED_TOKEN.trim() => {
                // A real token never goes unchecked under the demo's flag.
                errs.push(
                    "revocation.follow.demo_token",
                    format!("{} is not the demo's published token; remove demo_token and chmod 600 it", file.display()),
                );
                None
            }
            Ok(t) if !t.trim().is_empty() => Some(FeedFollow {
                urls: fw.urls,
                ca,
                token: t.trim().to_string(),
                max_ids: fw.max_ids.unwrap_or(DEFAULT_MAX_IDS),
            }),
            Ok(_) => {
                errs.push("revocation.follow.token_file", format!("{} is empty", file.display()));
                None
            }
            Err(e) => {
                errs.push("revocation.follow.token_file", format!("cannot read {}: {e}", file.display()));
                None
            }
        }
    });
    RevocationConfig { staleness: crate::revocation::Staleness { max, refuse }, feed_readers, follow }
}

/// The revocation-feed reader token published with `narrowgate demo`
/// (`config/enforce-only.yaml` presents it): no secret, never to be used
/// elsewhere.
pub const DEMO_FEED_TOKEN: &str = include_str!("../../config/keys/demo-feed.token");

/// The most revoked ids a followed set holds unless the config says.
const DEFAULT_MAX_IDS: usize = 1_000_000;

/// What an enforce-only gateway does when its revocation set goes
/// unconfirmed for longer than `max_staleness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WhenStale {
    /// Keep serving from the last known set (logged, and alerted on).
    Serve,
    /// 503 `revocations_unavailable`.
    Refuse,
}
