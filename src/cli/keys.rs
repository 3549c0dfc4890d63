//! `narrowgate keys generate`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::token::keys;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key pair: `<kid>.pem` (private, mode 0600) and
    /// `<kid>.pub.pem` in DIR; prints the kid.
    Generate {
        /// The key's algorithm.
        #[arg(long, value_enum)]
        alg: KeyAlg,
        /// The directory the two files are written to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a secret (a first admin credential, a feed reader token, a
    /// ProdManager application secret): prints the secret, to hand over,
    /// and its SHA-256, for the config.
    Secret {
        /// Write the secret to this new file (0600) instead of printing it;
        /// only its SHA-256 is printed.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyAlg {
    Es256,
    Eddsa,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { alg, out } => {
            let alg = match alg {
                KeyAlg::Es256 => jsonwebtoken::Algorithm::ES256,
                KeyAlg::Eddsa => jsonwebtoken::Algorithm::EdDSA,
            };
            let key = keys::generate(alg)?;
            let (private, public) = write_pair(&key, &out)?;
            println!("kid: {}\nprivate key: {}\npublic key: {}", key.kid, private.display(), public.display());
            Ok(())
        }
        KeysCommand::Secret { out } => {
            let secret = keys::random_id(32)?;
            let digest = crate::token::reference::hash_hex(&secret);
            match out {
                Some(file) => {
                    write_private(&file, secret.as_bytes())?;
                    println!("secret: written to {}\nsecret_sha256: {digest}", file.display());
                }
                None => println!("secret: {secret}\nsecret_sha256: {digest}"),
            }
            Ok(())
        }
    }
}

/// Write a generated pair into `dir` as `<kid>.pem` and `<kid>.pub.pem`.
pub fn write_pair(key: &keys::GeneratedKey, dir: &std::path::Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let private = dir.join(format!("{}.pem", key.kid));
    let public = dir.join(format!("{}.pub.pem", key.kid));
    write_private(&private, key.private_pem.as_bytes())?;
    std::fs::write(&public, &key.public_pem).with_context(|| format!("writing {}", public.display()))?;
    Ok((private, public))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
