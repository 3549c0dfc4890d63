//! The first admin token. When a store is created (`narrowgate store init`,
//! or a start with `create_if_missing`) one master admin token is made
//! (reference form, every rule, no expiry). Its secret is either the
//! operator's own — the config holds only its SHA-256
//! (`bootstrap_token_sha256`), which is all the store ever records — or
//! generated then, written to `bootstrap_token_file` (mode 0600) if
//! configured and handed back once. Opening an existing store never does
//! this, so a lost store cannot mint a new admin. Several replicas creating
//! one PostgreSQL store at once make one token between them (the name is
//! unique among live tokens; the losers find it taken and stay silent).
//! Every token here is minted by the token service, like any other.
//!
//! **No secret in a log.** A generated secret (and Crafter's default ids,
//! which are credentials too) is printed only when someone is reading:
//! stdout is a terminal, or `store init --print-secrets` says so. In an
//! unattended run (a Job, a service: stdout is a log) it is never printed;
//! such a run must have another way to hand over the first admin
//! credential — the operator's digest, or the file — or it creates nothing
//! ([`check_handover`]).

use std::io::Write;
use std::path::Path;

use crate::config::Bootstrap;
use crate::policy::AccessRule;
use crate::policy::tenant::TenantPermission;
use crate::service::{ErrorKind, ServiceError, TokenService};
use crate::service::{NewForm, NewToken};
use crate::token::Role;

/// The bootstrap token's name.
pub const NAME: &str = "bootstrap-admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Mint(#[from] ServiceError),
    // The cause is the source, shown once after this.
    #[error("cannot write the bootstrap token file {path} (bootstrap_token_file)")]
    File { path: String, source: std::io::Error },
    #[error("no randomness available")]
    Random,
    /// Unattended, with no way to hand the first admin credential over.
    #[error(
        "stdout is not a terminal, so a generated first admin token would not be printed (a log is no place for it), \
         and the config names no other way to hand it over: set store.*.bootstrap_token_sha256 to the SHA-256 of a \
         secret you keep (`narrowgate keys secret` makes a pair) or store.*.bootstrap_token_file; at a terminal, \
         `narrowgate store init --print-secrets` prints it anyway"
    )]
    NoHandover,
}

/// What a store's first start made: secrets to show once.
#[derive(Debug, Default)]
pub struct FirstStart {
    /// The bootstrap admin token's id, when this start made it.
    pub admin_id: Option<String>,
    /// Its secret, when it was generated (not the operator's own).
    pub admin_token: Option<String>,
    /// Crafter's default access tokens, (application, id).
    pub crafter_tokens: Vec<(String, String)>,
}

/// Everything a newly created store starts with: the bootstrap admin token
/// and, with the Crafter facade, Crafter's default tokens. Minted by the
/// token service like every token.
pub async fn first_start(service: &TokenService, config: &crate::config::Config) -> Result<FirstStart, BootstrapError> {
    let Some((admin_id, admin_token)) = bootstrap(service, &config.bootstrap).await? else {
        // Another replica bootstrapped first: then it made the rest too.
        return Ok(FirstStart::default());
    };
    let crafter_tokens = if config.facades.crafter { crafter_defaults(service).await? } else { Vec::new() };
    Ok(FirstStart { admin_id: Some(admin_id), admin_token, crafter_tokens })
}

/// Whether a run that may create a store can hand its first admin
/// credential over: the operator's digest, a file for a generated one, or
/// someone reading stdout (`print`: a terminal, or `--print-secrets`).
/// Checked before a store is created; without any of them it must not be.
pub fn check_handover(bootstrap: &Bootstrap, print: bool) -> Result<(), BootstrapError> {
    if print || bootstrap.token_sha256.is_some() || bootstrap.token_file.is_some() {
        return Ok(());
    }
    // Fail closed: an admin shown nowhere (or in a log) is worse than none.
    Err(BootstrapError::NoHandover)
}

/// What a first start says on stdout. Secrets (a generated admin token,
/// Crafter's default ids) only when `print`; otherwise where they are, so
/// an unattended run never writes one into a log. `made`: this run created
/// the bootstrap admin.
pub fn announce(
    made: bool,
    admin_token: Option<&str>,
    crafter: &[(String, String)],
    bootstrap: &Bootstrap,
    print: bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    match (admin_token, &bootstrap.token_file) {
        (Some(secret), _) if print => lines.push(format!("bootstrap admin token (shown once; keep it safe): {secret}")),
        (Some(_), Some(file)) => {
            lines.push(format!("bootstrap admin token: written to {} (mode 0600), not printed", file.display()))
        }
        (Some(_), None) => lines.push("bootstrap admin token: not printed (stdout is not a terminal)".into()),
        (None, _) if made && bootstrap.token_sha256.is_some() => lines.push(
            "bootstrap admin token: the secret whose SHA-256 is the config's bootstrap_token_sha256 (the store holds only the digest)"
                .into(),
        ),
        (None, _) => {}
    }
    if print {
        for (application, id) in crafter {
            lines.push(format!("Crafter Profile access token for {application} (shown once; keep it safe): {id}"));
        }
    } else if !crafter.is_empty() {
        let apps: Vec<&str> = crafter.iter().map(|(a, _)| a.as_str()).collect();
        lines.push(format!(
            "Crafter Profile's default access tokens were created for {}; their ids are credentials, not printed \
             (stdout is not a terminal): a master token lists them (GET /api/1/access_token/all.json)",
            apps.join(", ")
        ));
    }
    lines
}

/// Create the first admin token: its id, and its secret when it was
/// generated (once). `None` when another replica creating the same store
/// made it first.
pub async fn bootstrap(
    service: &TokenService,
    config: &Bootstrap,
) -> Result<Option<(String, Option<String>)>, BootstrapError> {
    let form = config.token_sha256.map_or(NewForm::Reference, NewForm::Digest);
    let mut token = NewToken::user(NAME, form, service.now());
    token.name = Some(NAME.into());
    token.description = "created at first start".into();
    token.role = Role::Admin;
    token.master = true;
    token.rules = vec![AccessRule::everything()];
    let (secret, record) = match service.first_start(&service.settings(), token).await {
        Ok(minted) => (minted.secret, minted.record),
        // Another replica bootstrapped first.
        Err(e) if e.kind() == ErrorKind::Conflict => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if config.token_sha256.is_some() {
        // The operator's own secret: the service never had it.
        tracing::info!(token.jti = %record.id, "created the bootstrap admin token from the configured digest");
        return Ok(Some((record.id, None)));
    }
    if let Some(path) = &config.token_file {
        write_secret(path, &secret)
            .map_err(|source| BootstrapError::File { path: path.display().to_string(), source })?;
    }
    tracing::info!(token.jti = %record.id, "created the bootstrap admin token");
    Ok(Some((record.id, Some(secret))))
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
        let record = service.first_start(&service.settings(), token).await?.record;
        tracing::info!(token.jti = %record.id, application, "created a Crafter default access token");
        out.push((application.to_string(), id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret is printed only to someone reading; otherwise the lines say
    /// where it is, and no unattended run goes on without a way to hand
    /// the first admin credential over.
    #[test]
    fn secrets_are_announced_only_to_a_reader() {
        let crafter = vec![("engine".to_string(), "crafter-id-1".to_string())];
        let file = Bootstrap { token_file: Some("data/admin-token".into()), token_sha256: None };
        let digest = Bootstrap { token_file: None, token_sha256: Some([7; 32]) };
        let neither = Bootstrap::default();
        struct Case<'a> {
            name: &'a str,
            admin: Option<&'a str>,
            bootstrap: &'a Bootstrap,
            print: bool,
            shows_secrets: bool,
            says: &'a str,
        }
        let cases = [
            Case {
                name: "a terminal",
                admin: Some("ngr_s3cret"),
                bootstrap: &neither,
                print: true,
                shows_secrets: true,
                says: "shown once",
            },
            Case {
                name: "a file, unattended",
                admin: Some("ngr_s3cret"),
                bootstrap: &file,
                print: false,
                shows_secrets: false,
                says: "written to data/admin-token",
            },
            Case {
                name: "a digest, unattended",
                admin: None,
                bootstrap: &digest,
                print: false,
                shows_secrets: false,
                says: "bootstrap_token_sha256",
            },
            Case {
                name: "a digest, at a terminal",
                admin: None,
                bootstrap: &digest,
                print: true,
                shows_secrets: true,
                says: "bootstrap_token_sha256",
            },
        ];
        for c in cases {
            let text = announce(true, c.admin, &crafter, c.bootstrap, c.print).join("\n");
            assert_eq!(text.contains("crafter-id-1"), c.shows_secrets, "{}: {text}", c.name);
            assert!(!text.contains("ngr_s3cret") || c.print, "{}: {text}", c.name);
            assert!(text.contains(c.says), "{}: {text}", c.name);
            if !c.print {
                assert!(text.contains("are credentials, not printed"), "{}: {text}", c.name);
            }
        }
        assert!(check_handover(&neither, false).is_err(), "unattended, with no way to hand it over");
        for (b, print) in [(&neither, true), (&file, false), (&digest, false)] {
            assert!(check_handover(b, print).is_ok(), "{b:?} {print}");
        }
    }
}
