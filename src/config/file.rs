//! The file format: a serde mirror of the YAML, kept apart from the
//! validated model in `config::Config`. Unknown keys are errors everywhere.

use serde::Deserialize;
use serde_json::Value;

/// Top-level keys; each section is deserialized on its own so that problems
/// in several sections are all reported.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "listeners",
    "upstream",
    "server",
    "trusted_proxies",
    "issuers",
    "credentials",
    "forwarding",
    "cache",
    "unmatched",
    "enforcement",
    "applications",
    "store",
    "facades",
    "revocation",
    "issuance",
];

/// Bounds the token service keeps to when it mints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuanceFile {
    /// The longest a registration token may wait to be redeemed (default 7d).
    #[serde(default)]
    pub registration_max_ttl: Option<String>,
    /// The longest the token a registration yields may live (default: any,
    /// never expiring included).
    #[serde(default)]
    pub registration_max_lifetime: Option<String>,
}

/// How revocations reach this gateway and what it does when it cannot
/// confirm them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationFile {
    /// How long the revocation set may go unconfirmed (default 5s).
    #[serde(default)]
    pub max_staleness: Option<String>,
    /// `serve` (default: keep serving from the last known set, logged and
    /// alerted) or `refuse` (503 `revocations_unavailable`).
    #[serde(default)]
    pub when_stale: Option<String>,
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
pub struct FollowFile {
    /// The issuer replicas' feed URLs (`http://issuer:8081/v1/revocations`),
    /// tried in turn.
    pub urls: Vec<String>,
    /// A file holding the feed reader token (its SHA-256 is among the
    /// issuer's `feed_readers_sha256`).
    pub token_file: String,
}

/// The compatibility facades on the api listener, each off unless enabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacadesFile {
    /// MetaApi's token-management API: `GET /access-rule-manifest`,
    /// `POST /users/current/narrow-down-auth-token`.
    #[serde(default)]
    pub metaapi: bool,
    /// Crafter Profile's access-token API under `/api/1/access_token`, and
    /// its default tokens at first start.
    #[serde(default)]
    pub crafter: bool,
    /// ProdManager's token API: `POST /api/token/create`, `GET /api/token/whoami`.
    #[serde(default)]
    pub prodmanager: Option<ProdManagerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProdManagerFile {
    pub applications: Vec<ProdManagerAppFile>,
}

/// One application whose secret may create ProdManager tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProdManagerAppFile {
    /// A manifest application.
    pub application: String,
    /// SHA-256 (hex) of the application secret clients send; the secret
    /// itself is never in the config (`narrowgate keys secret` makes one).
    pub secret_sha256: String,
    /// Permission name → what it grants in this application.
    pub permissions: std::collections::BTreeMap<String, PermissionFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionFile {
    /// Method groups of the application (`*`: all).
    pub method_groups: Vec<String>,
    /// Roles of the application (`*`: all); default all.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenersFile {
    pub proxy: String,
    #[serde(default)]
    pub admin: Option<String>,
    /// The token service; absent in enforce-only mode.
    #[serde(default)]
    pub api: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub addresses: Vec<String>,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub read_timeout: Option<String>,
    #[serde(default)]
    pub pool_idle_timeout: Option<String>,
    #[serde(default)]
    pub pool_max_idle: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    #[serde(default)]
    pub header_read_timeout: Option<String>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_headers: Option<usize>,
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// After SIGTERM, how long to keep accepting while not ready (5s).
    #[serde(default)]
    pub drain_delay: Option<String>,
    /// Then how long in-flight requests may take (25s).
    #[serde(default)]
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    pub name: String,
    pub issuer: String,
    #[serde(default)]
    pub audience: Vec<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub clock_skew: Option<String>,
    #[serde(default)]
    pub allow_missing_exp: bool,
    /// Whether this issuer's tokens may carry narrowgate's management
    /// authority (`role: admin`, `master`). Default: only for the issuer
    /// holding this gateway's `signing_keys`; an external issuer's admin
    /// claims are ignored unless this says `true`.
    #[serde(default)]
    pub may_manage: Option<bool>,
    /// The longest lifetime (`exp − iat`) a token may claim; tokens without
    /// `iat` are then refused. This gateway mints nothing longer.
    #[serde(default)]
    pub max_lifetime: Option<String>,
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// An enforce-only gateway fetches this issuer's keys from here.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched again (default 5m).
    #[serde(default)]
    pub jwks_refresh: Option<String>,
    /// At most one refetch this often, however many unknown kids arrive
    /// (default 10s); also the retry interval while no keys are loaded.
    #[serde(default)]
    pub jwks_min_refetch: Option<String>,
    /// Private keys this gateway signs tokens with, as this issuer; their
    /// public halves are trusted automatically (do not list them in `keys`).
    #[serde(default)]
    pub signing_keys: Vec<SigningKeyFile>,
    /// The kid new tokens are signed with; default: the first signing key.
    #[serde(default)]
    pub active_signing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyFile {
    pub kid: String,
    pub private_key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    #[serde(default)]
    pub kid: Option<String>,
    pub algorithm: String,
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialFile {
    Bearer,
    Header { name: String },
    Query { name: String },
    Cookie { name: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingFile {
    #[serde(default)]
    pub forward_credential: bool,
    #[serde(default)]
    pub request_id_header: Option<String>,
    #[serde(default)]
    pub identity_headers: Option<IdentityHeadersFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersFile {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub roles: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    #[serde(default)]
    pub capacity: Option<usize>,
    #[serde(default)]
    pub max_ttl: Option<String>,
}

/// Where tokens, registration tokens and revocations are kept.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreFile {
    Sqlite {
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        resync_interval: Option<String>,
        #[serde(default)]
        bootstrap_token_file: Option<String>,
        /// Create the database at start if it does not exist (demos);
        /// otherwise `narrowgate store init` creates it.
        #[serde(default)]
        create_if_missing: bool,
    },
    Postgres {
        url: String,
        #[serde(default)]
        resync_interval: Option<String>,
        #[serde(default)]
        bootstrap_token_file: Option<String>,
        /// Create the schema at start if the database has none.
        #[serde(default)]
        create_if_missing: bool,
        /// How long a store call may take before 503 (default 1s).
        #[serde(default)]
        timeout: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationFile {
    #[serde(default)]
    pub id: Option<String>,
    pub application: String,
    #[serde(default)]
    pub description: String,
    pub services: Vec<ServiceFile>,
    #[serde(default)]
    pub method_groups: Vec<MethodGroupFile>,
    #[serde(default)]
    pub roles: Vec<RoleSetFile>,
    #[serde(default)]
    pub entities: Vec<EntityFile>,
    #[serde(default)]
    pub entity_composition_description: Option<String>,
    /// Routes are deserialized one by one, for per-route error reporting.
    #[serde(default)]
    pub routes: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    pub service: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodGroupFile {
    pub group: String,
    #[serde(default)]
    pub description: String,
    pub methods: Vec<MethodFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodFile {
    pub method: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSetFile {
    pub roles: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityFile {
    pub entity: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub id_description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// `METHOD /path/{param}`.
    pub route: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub resource: Option<ResourceFile>,
    /// A Crafter-style tenant the route acts on: tokens with tenant
    /// permissions may call it when they allow `action` on that tenant.
    #[serde(default)]
    pub tenant: Option<TenantFile>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// `"{param}"`: the path parameter holding the tenant's name.
    pub id: String,
    /// One of Crafter's actions (`READ_TENANT`, `MANAGE_PROFILES`, …).
    pub action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceFile {
    pub entity: String,
    /// `"{param}"`: the path parameter holding the id.
    pub id: String,
}
