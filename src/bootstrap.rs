//! The first admin token. When a store is created (`narrowgate store init`,
//! or a start with `create_if_missing`) one master admin token is made
//! (reference form, every rule, no expiry), its secret handed back once to
//! be printed and written to a file with mode 0600 if configured. Opening
//! an existing store never does this, so a lost store cannot mint a new
//! admin. Several replicas creating one PostgreSQL store at once make one
//! token between them (the name is unique among live tokens; the losers
//! find it taken and stay silent). Every token here is minted by the token
//! service, like any other.

use std::io::Write;
use std::path::Path;

use crate::api::service::{MintRequest, Minted, NewForm, NewToken};
use crate::api::{ApiCode, ApiError, Kind, TokenService};
use crate::policy::AccessRule;
use crate::policy::tenant::TenantPermission;
use crate::token::Role;

/// The bootstrap token's name.
pub const NAME: &str = "bootstrap-admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Mint(#[from] ApiError),
    #[error("cannot write the bootstrap token file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("no randomness available")]
    Random,
}

/// What a store's first start made: secrets to show once.
#[derive(Debug, Default)]
pub struct FirstStart {
    /// The bootstrap admin token's secret.
    pub admin_token: Option<String>,
    /// Crafter's default access tokens, (application, id).
    pub crafter_tokens: Vec<(String, String)>,
}

/// Everything a newly created store starts with: the bootstrap admin token
/// and, with the Crafter facade, Crafter's default tokens. Minted by the
/// token service like every token.
pub async fn first_start(service: &TokenService, config: &crate::config::Config) -> Result<FirstStart, BootstrapError> {
    let admin_token = bootstrap(service, config.bootstrap.token_file.as_deref()).await?;
    // Another replica may have bootstrapped first: then it made the rest too.
    let crafter_tokens =
        if admin_token.is_some() && config.facades.crafter { crafter_defaults(service).await? } else { Vec::new() };
    Ok(FirstStart { admin_token, crafter_tokens })
}

/// Create the first admin token; its secret, once. `None` when another
/// replica creating the same store made it first.
pub async fn bootstrap(service: &TokenService, file: Option<&Path>) -> Result<Option<String>, BootstrapError> {
    let mut token = NewToken::user(NAME, NewForm::Reference, service.now());
    token.name = Some(NAME.into());
    token.description = "created at first start".into();
    token.role = Role::Admin;
    token.master = true;
    token.rules = vec![AccessRule::everything()];
    let (secret, record) = match service.mint(&service.snapshot(), MintRequest::FirstStart { token }).await {
        Ok(Minted::Token { secret, record }) => (secret, record),
        Ok(Minted::Registration { .. }) => return Err(ApiError::internal("bootstrap minted something else").into()),
        // Another replica bootstrapped first.
        Err(e) if e.kind() == Kind::Api(ApiCode::Conflict) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if let Some(path) = file {
        write_secret(path, &secret)
            .map_err(|source| BootstrapError::File { path: path.display().to_string(), source })?;
    }
    tracing::info!(token.jti = %record.id, "created the bootstrap admin token");
    Ok(Some(secret))
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path)?;
        // An existing file keeps its mode on open: tighten it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(secret.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut f = opts.open(path)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()
    }
}

/// Crafter Profile's default access tokens, created at first start when the
/// Crafter facade is on: a master token for the admin console, and tokens
/// for the engine and social applications with
/// `[READ_TENANT, MANAGE_PROFILES, MANAGE_TICKETS]` on every tenant. Their
/// ids are their credentials: (application, id) pairs, to print once.
pub async fn crafter_defaults(service: &TokenService) -> Result<Vec<(String, String)>, BootstrapError> {
    let everything = TenantPermission { tenant: "*".into(), allowed_actions: vec!["*".into()] };
    let app_actions = TenantPermission {
        tenant: "*".into(),
        allowed_actions: ["READ_TENANT", "MANAGE_PROFILES", "MANAGE_TICKETS"].map(String::from).to_vec(),
    };
    let defaults =
        [("profile-admin", true, everything), ("engine", false, app_actions.clone()), ("social", false, app_actions)];
    let mut out = Vec::new();
    for (application, master, tenants) in defaults {
        // The id is the credential: a UUID, as Crafter's ids are.
        let id = crate::token::keys::random_uuid().map_err(|_| BootstrapError::Random)?;
        let mut token = NewToken::user(application, NewForm::External(id.clone()), service.now());
        token.role = if master { Role::Admin } else { Role::User };
        token.master = master;
        token.application = Some(application.into());
        token.description = "Crafter Profile default access token".into();
        token.tenants = vec![tenants];
        let record = match service.mint(&service.snapshot(), MintRequest::FirstStart { token }).await? {
            Minted::Token { record, .. } => record,
            Minted::Registration { .. } => return Err(ApiError::internal("a default minted something else").into()),
        };
        tracing::info!(token.jti = %record.id, application, "created a Crafter default access token");
        out.push((application.to_string(), id));
    }
    Ok(out)
}
