//! The first admin token. When a store is created (`narrowgate store init`,
//! or a start with `create_if_missing`) one master admin token is made
//! (reference form, every rule, no expiry), its secret handed back once to
//! be printed and written to a file with mode 0600 if configured. Opening
//! an existing store never does this, so a lost store cannot mint a new
//! admin. Several replicas creating one PostgreSQL store at once make one
//! token between them (the name is unique; the losers find it taken and
//! stay silent).

use std::io::Write;
use std::path::Path;

use crate::auth::reference;
use crate::policy::AccessRule;
use crate::store::{Mirror, Store, StoreError, TokenForm, TokenRecord};
use crate::token::claims::WireRule;
use crate::token::keys::random_id;
use crate::token::{Role, TokenKind, now_unix};

/// The bootstrap token's name.
pub const NAME: &str = "bootstrap-admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
/// and, with the Crafter facade, Crafter's default tokens.
pub async fn first_start(
    store: &Store,
    mirror: &Mirror,
    config: &crate::config::Config,
) -> Result<FirstStart, BootstrapError> {
    let admin_token = bootstrap(store, mirror, config.bootstrap.token_file.as_deref()).await?;
    // Another replica may have bootstrapped first: then it made the rest too.
    let crafter_tokens = if admin_token.is_some() && config.facades.crafter {
        crafter_defaults(store, mirror).await?
    } else {
        Vec::new()
    };
    Ok(FirstStart { admin_token, crafter_tokens })
}

/// Create the first admin token if the store is empty; its secret, once.
pub async fn bootstrap(store: &Store, mirror: &Mirror, file: Option<&Path>) -> Result<Option<String>, BootstrapError> {
    if store.count_tokens().await? > 0 {
        return Ok(None);
    }
    let (Ok(id), Some(secret)) = (random_id(16), reference::new_secret()) else {
        return Err(BootstrapError::Random);
    };
    let hash = reference::hash(&secret);
    let rules = vec![WireRule::from_rule(&AccessRule::everything())];
    let mut record =
        first_start_record(id, &secret, NAME, Role::Admin, crate::token::claims::encode_grants(&rules, &[]));
    record.name = Some(NAME.into());
    record.description = "created at first start".into();
    match store.insert_token(&record).await {
        Ok(()) => {}
        // Another replica bootstrapped first.
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if let Some(grant) = reference::grant_of(&record, &mirror.issuer) {
        mirror.references.insert(hash, grant);
    }
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
pub async fn crafter_defaults(store: &Store, mirror: &Mirror) -> Result<Vec<(String, String)>, BootstrapError> {
    use crate::policy::tenant::TenantPermission;
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
        let (Ok(jti), Ok(id)) = (random_id(16), crate::token::keys::random_uuid()) else {
            return Err(BootstrapError::Random);
        };
        let role = if master { Role::Admin } else { Role::User };
        let grants = crate::token::claims::encode_grants(&[], &[tenants]);
        let mut record = first_start_record(jti, &id, application, role, grants);
        record.master = master;
        record.application = Some(application.into());
        record.description = "Crafter Profile default access token".into();
        record.external_id = Some(id.clone());
        store.insert_token(&record).await?;
        mirror.references.add(&record, &mirror.issuer);
        tracing::info!(token.jti = %record.id, application, "created a Crafter default access token");
        out.push((application.to_string(), id));
    }
    Ok(out)
}

/// A reference token made at first start: `secret` hashed, no expiry, made
/// by "bootstrap", master when an admin.
fn first_start_record(id: String, secret: &str, subject: &str, role: Role, grants: String) -> TokenRecord {
    let now = now_unix() as i64;
    TokenRecord {
        id,
        name: None,
        description: String::new(),
        kind: TokenKind::Access,
        role,
        master: role == Role::Admin,
        application: None,
        subject: subject.into(),
        grants,
        form: TokenForm::Reference,
        secret_hash: Some(reference::hash(secret).to_vec()),
        not_before: Some(now),
        expires_at: None,
        parent_id: None,
        lineage: vec![],
        created_by: Some("bootstrap".into()),
        created_at: now,
        revoked_at: None,
        external_id: None,
    }
}
