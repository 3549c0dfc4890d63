//! The store: issued-token records, reference-token hashes, registration
//! tokens and revocations — the source of truth behind the token service.
//!
//! One [`Store`], two backends run by the same test suite:
//! [`SqliteStore`] (embedded default: a file, migrations at start, WAL) and
//! [`PgStore`] (several replicas sharing one database). Both share their
//! queries in `sql` over sqlx's `Any` driver; what differs — connecting,
//! migrations, notifications — lives in each. The request path never calls
//! the store: revocations and reference tokens are mirrored in memory.
//! Secrets are never stored, only their SHA-256.

// First: its column-list macros are used by the stores below.
#[macro_use]
mod queries;
pub mod mirror;
mod postgres;
mod readonly;
mod sql;
mod sqlite;
#[doc(hidden)]
#[cfg(any(test, feature = "test-support"))]
pub mod testsuite;
mod writer;

use mirror::resync;
pub use mirror::{FeedRefusal, Mirror, ReferenceTokens, Revocations, SetFull, Staleness};

pub use postgres::PgStore;
pub use readonly::load_read_only;
pub use sqlite::SqliteStore;

use crate::config::StoreBackend;
pub use crate::time::UnixTime;
use crate::token::{Role, TokenKind};

/// Failures of the store. Messages are for operators; they never contain
/// secrets.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name or id is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The store could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// No store exists where the config points, and none was created.
    #[error("{0}")]
    Missing(String),
    /// The store was removed or replaced under this running gateway:
    /// nothing more is read from or written to it.
    #[error("store lost: {0}")]
    Lost(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("a token with this name or id".into())
            }
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// Why a registration token could not be redeemed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("unknown registration token")]
    Unknown,
    #[error("registration token already used")]
    Used,
    #[error("registration token expired")]
    Expired,
    #[error("registration token revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a token is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenForm {
    Jwt,
    /// An opaque secret; the store keeps its hash.
    Reference,
}

impl TokenForm {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenForm::Jwt => "jwt",
            TokenForm::Reference => "reference",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jwt" => Some(TokenForm::Jwt),
            "reference" => Some(TokenForm::Reference),
            _ => None,
        }
    }
}

/// An issued token, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The `jti`.
    pub id: String,
    /// Unique when present.
    pub name: Option<String>,
    pub description: String,
    pub kind: TokenKind,
    pub role: Role,
    pub master: bool,
    pub application: Option<String>,
    pub subject: String,
    /// JSON: the access rules (or tenant permissions) the token grants.
    pub grants: String,
    pub form: TokenForm,
    /// SHA-256 of a reference token's secret.
    pub secret_hash: Option<Vec<u8>>,
    pub not_before: Option<UnixTime>,
    /// `None`: never expires.
    pub expires_at: Option<UnixTime>,
    pub parent_id: Option<String>,
    /// Ancestor ids, root first.
    pub lineage: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// A credential id a facade's client chose (Crafter), unique while live.
    pub external_id: Option<String>,
}

/// A single-use registration token, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationRecord {
    pub id: String,
    pub secret_hash: Vec<u8>,
    /// Name of the access token it yields.
    pub name: String,
    pub role: Role,
    /// JSON: the access rules of the token it yields.
    pub grants: String,
    /// Lifetime of the access token it yields, seconds; `None`: never
    /// expires.
    pub lifetime_secs: Option<u64>,
    /// Its own expiry.
    pub expires_at: UnixTime,
    pub created_by: Option<String>,
    pub created_at: UnixTime,
    pub used_at: Option<UnixTime>,
    pub redeemed_token: Option<String>,
    /// The lineage the yielded token gets (its creator's, when the creator
    /// is not a master, so revoking the creator revokes it).
    pub lineage: Vec<String>,
    /// The latest expiry the yielded token may have (its creator's).
    pub expires_cap: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

/// The revocation of a token this store has no record of (another
/// issuer's), by its `jti`; in force until the token's own expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JtiRevocation {
    pub jti: String,
    /// The issuer (`iss`) the token came from, as the operator named it.
    pub issuer: String,
    /// The token's expiry; `None`: kept for good.
    pub expires_at: Option<UnixTime>,
    pub revoked_at: UnixTime,
    pub revoked_by: Option<String>,
}

/// A console session as the store keeps it (see
/// `migrations/*/0007_console_sessions.sql`): found by the SHA-256 of its
/// cookie, its contents sealed under a key only the cookie gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub key: Vec<u8>,
    /// The sign-in token's id.
    pub token_id: String,
    pub sealed: Vec<u8>,
    pub created_at: UnixTime,
    pub last_seen: UnixTime,
}

/// The bounds a new console session makes room under, and when a session
/// has ended (idle since before `idle_before`, or opened before
/// `opened_before`).
#[derive(Clone, Copy, Debug)]
pub struct SessionBounds {
    pub per_token: usize,
    pub total: usize,
    pub idle_before: UnixTime,
    pub opened_before: UnixTime,
}

/// Which tokens to list, and which page.
#[derive(Clone, Debug, Default)]
pub struct TokenFilter {
    pub name: Option<String>,
    pub application: Option<String>,
    pub kind: Option<TokenKind>,
    /// Only this token and the tokens whose lineage holds it (what a
    /// non-master admin may see).
    pub within_lineage_of: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

impl TokenRecord {
    /// Whether this is the token `id` or one in its lineage (minted under
    /// it, narrowed from it, or from one that was).
    pub fn is_within_lineage_of(&self, id: &str) -> bool {
        self.id == id || self.lineage.iter().any(|ancestor| ancestor == id)
    }
}

/// The token store: SQLite or PostgreSQL, and the metrics its calls are
/// counted in. Every operation is written once, in `sql.rs` (`SqlCore`,
/// the queries both backends share), and offered once, here: each call
/// passes its backend's guard (a lost store answers nothing), PostgreSQL's
/// call timeout, and is counted and timed.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    metrics: Option<StoreMetrics>,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Store calls by operation and result, and how long they took.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub calls: prometheus::IntCounterVec,
    pub seconds: prometheus::HistogramVec,
}

/// The `result` label of a failed store call.
trait KindLabel {
    fn kind_label(&self) -> &'static str;
}

impl StoreError {
    /// The stable code of what went wrong (never the text, which may
    /// name what the caller sent).
    pub fn code(&self) -> &'static str {
        self.kind_label()
    }
}

impl KindLabel for StoreError {
    fn kind_label(&self) -> &'static str {
        match self {
            StoreError::Conflict(_) => "conflict",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Missing(_) => "missing",
            StoreError::Lost(_) => "lost",
        }
    }
}

impl KindLabel for RedeemError {
    fn kind_label(&self) -> &'static str {
        match self {
            RedeemError::Unknown => "unknown",
            RedeemError::Used => "used",
            RedeemError::Expired => "expired",
            RedeemError::Revoked => "revoked",
            RedeemError::Store(e) => e.kind_label(),
        }
    }
}

/// Call `$call` on whichever store this is, after its guard (a lost store
/// answers nothing), within PostgreSQL's call timeout, counted and timed
/// as `$op`.
macro_rules! dispatch {
    ($self:ident, $op:literal, $s:ident => $call:expr) => {{
        let start = std::time::Instant::now();
        let result = async {
            match &$self.backend {
                Backend::Sqlite(backend) => {
                    backend.guard()?;
                    let $s = backend.core();
                    $call.await
                }
                Backend::Postgres(backend) => {
                    backend.guard()?;
                    let $s = backend.core();
                    match tokio::time::timeout(backend.timeout(), $call).await {
                        Ok(r) => r,
                        Err(_) => Err(StoreError::Unavailable("the store did not answer in time".into()).into()),
                    }
                }
            }
        }
        .await;
        $self.observe($op, start, result.as_ref().err().map(|e| e.kind_label()));
        result
    }};
}

impl From<SqliteStore> for Store {
    fn from(s: SqliteStore) -> Store {
        Store { backend: Backend::Sqlite(s), metrics: None }
    }
}

impl From<PgStore> for Store {
    fn from(s: PgStore) -> Store {
        Store { backend: Backend::Postgres(s), metrics: None }
    }
}

impl Store {
    /// Open (and migrate) the configured store; a store that has never
    /// existed is created only if the config says so. Also returns whether
    /// this call created it.
    pub async fn open(config: &crate::config::StoreConfig) -> Result<(Store, bool), StoreError> {
        let create = config.create_if_missing;
        Ok(match &config.backend {
            StoreBackend::Sqlite { path } => {
                let (s, created) = SqliteStore::open(path, create).await?;
                (Store { backend: Backend::Sqlite(s), metrics: None }, created)
            }
            StoreBackend::Postgres { url, timeout } => {
                let (s, created) = PgStore::open(url, create, *timeout).await?;
                (Store { backend: Backend::Postgres(s), metrics: None }, created)
            }
        })
    }

    /// Count and time every call in `metrics` from now on.
    pub fn instrumented(mut self, metrics: StoreMetrics) -> Store {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, op: &'static str, start: std::time::Instant, error: Option<&'static str>) {
        if let Some(m) = &self.metrics {
            m.calls.with_label_values(&[op, error.unwrap_or("ok")]).inc();
            m.seconds.with_label_values(&[op]).observe(start.elapsed().as_secs_f64());
        }
    }

    /// The PostgreSQL store, if this is one (tests reach its internals).
    pub fn postgres(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Postgres(s) => Some(s),
            Backend::Sqlite(_) => None,
        }
    }

    /// Whether the store was removed or replaced under this gateway.
    pub fn is_lost(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(s) => s.is_lost(),
            Backend::Postgres(s) => s.is_lost(),
        }
    }

    /// Check every second that the store is still the one opened (a lost
    /// store turns readiness false even when nothing is written).
    pub fn watch(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                match &store.backend {
                    Backend::Sqlite(s) => {
                        let _ = s.guard();
                    }
                    Backend::Postgres(s) => s.check_identity().await,
                }
                if store.is_lost() {
                    return;
                }
            }
        })
    }

    /// Record a token in whichever store this is.
    pub async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        dispatch!(self, "insert_token", s => s.insert_token(token))
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, "token", s => s.token(id))
    }

    pub async fn count_tokens(&self) -> Result<i64, StoreError> {
        dispatch!(self, "count_tokens", s => s.count_tokens())
    }

    pub async fn token_by_name(&self, name: &str) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, "token_by_name", s => s.token_by_name(name))
    }

    pub async fn list_tokens(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        dispatch!(self, "list_tokens", s => s.list_tokens(filter))
    }

    pub async fn insert_registration(&self, reg: &RegistrationRecord) -> Result<(), StoreError> {
        dispatch!(self, "insert_registration", s => s.insert_registration(reg))
    }

    pub async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        dispatch!(self, "registration", s => s.registration(id))
    }

    pub async fn revoke_registration(&self, id: &str, at: UnixTime) -> Result<bool, StoreError> {
        dispatch!(self, "revoke_registration", s => s.revoke_registration(id, at))
    }

    pub async fn redeem<F>(&self, secret_hash: &[u8], now: UnixTime, build: F) -> Result<TokenRecord, RedeemError>
    where
        F: FnOnce(&RegistrationRecord) -> Result<TokenRecord, RedeemError> + Send,
    {
        dispatch!(self, "redeem", s => s.redeem(secret_hash, now, build))
    }

    pub async fn revoke(&self, id: &str, at: UnixTime) -> Result<bool, StoreError> {
        dispatch!(self, "revoke", s => s.revoke(id, at))
    }

    pub async fn token_by_external_id(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, "token_by_external_id", s => s.token_by_external_id(id))
    }

    pub async fn revoke_jti(&self, r: &JtiRevocation) -> Result<bool, StoreError> {
        dispatch!(self, "revoke_jti", s => s.revoke_jti(r))
    }

    pub async fn external_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        dispatch!(self, "external_tokens", s => s.external_tokens())
    }

    pub async fn forget_secret(&self, id: &str) -> Result<(), StoreError> {
        dispatch!(self, "forget_secret", s => s.forget_secret(id))
    }

    /// Record a console session.
    pub async fn insert_session(&self, r: &SessionRecord) -> Result<(), StoreError> {
        dispatch!(self, "insert_session", s => s.insert_session(r))
    }

    /// The console session stored under `key`.
    pub async fn session(&self, key: &[u8]) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, "session", s => s.session(key))
    }

    /// Mark a console session used at `at` (never earlier than it was);
    /// `false` when there is no such session (it ended elsewhere).
    pub async fn touch_session(&self, key: &[u8], at: UnixTime) -> Result<bool, StoreError> {
        dispatch!(self, "touch_session", s => s.touch_session(key, at))
    }

    /// End a console session.
    pub async fn delete_session(&self, key: &[u8]) -> Result<(), StoreError> {
        dispatch!(self, "delete_session", s => s.delete_session(key))
    }

    /// Make room for one more session of `token_id` under `bounds`: its own
    /// least recently used sessions past its bound end; in a full table,
    /// the ended ones, then the least recently used of the token holding
    /// the most (its own, when it will be one of the largest).
    pub async fn make_session_room(&self, token_id: &str, bounds: SessionBounds) -> Result<(), StoreError> {
        dispatch!(self, "make_session_room", s => s.make_session_room(token_id, bounds))
    }

    /// End every console session of `token_id` (revoked).
    pub async fn delete_token_sessions(&self, token_id: &str) -> Result<(), StoreError> {
        dispatch!(self, "delete_token_sessions", s => s.delete_token_sessions(token_id))
    }

    /// The sign-in token of each console session that has not ended.
    pub async fn live_session_tokens(&self, bounds: SessionBounds) -> Result<Vec<String>, StoreError> {
        dispatch!(self, "live_session_tokens", s => s.live_session_tokens(bounds))
    }

    /// Every revoked token id, other issuers' unexpired jtis included: the
    /// mirror's full resync.
    pub async fn revoked_ids(&self, now: UnixTime) -> Result<Vec<(String, Option<UnixTime>)>, StoreError> {
        dispatch!(self, "revoked_ids", s => s.revoked_ids(now))
    }

    /// Reference tokens with their secret's hash, revoked ones too (so they
    /// are refused as revoked): the mirror's full resync.
    pub async fn reference_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        dispatch!(self, "reference_tokens", s => s.reference_tokens())
    }

    /// Close the store's connections (tests reopen the same file).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => s.core().pool.close().await,
        }
    }

    /// Load the mirror now, then keep it current in the background.
    pub async fn mirror(
        &self,
        mirror: std::sync::Arc<Mirror>,
        resync_every: std::time::Duration,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => {
                resync(s.core(), &mirror).await?;
                s.follow(mirror, resync_every)
            }
            Backend::Postgres(s) => {
                resync(s.core(), &mirror).await?;
                // Complete as of now; the follower keeps confirming it.
                mirror.revocations.follow();
                mirror.revocations.confirm();
                s.follow(mirror, resync_every)
            }
        })
    }
}

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes()).as_ref().to_vec()
}

pub(crate) fn kind_str(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Access => "access",
        TokenKind::Narrowed => "narrowed",
        TokenKind::Registration => "registration",
    }
}

pub(crate) fn parse_kind(s: &str) -> Option<TokenKind> {
    Some(match s {
        "access" => TokenKind::Access,
        "narrowed" => TokenKind::Narrowed,
        "registration" => TokenKind::Registration,
        _ => return None,
    })
}

pub fn role_str(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Admin => "admin",
    }
}

pub(crate) fn parse_role(s: &str) -> Option<Role> {
    Some(match s {
        "user" => Role::User,
        "admin" => Role::Admin,
        _ => return None,
    })
}
