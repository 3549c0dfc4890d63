//! `narrowgate inject` (manifests in, manifests with the sidecar out) and
//! `narrowgate webhook` (the injector as an admission webhook, and
//! `webhook certs` for its certificates).

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::kube::{Options, SidecarMode, certs, inject_documents, webhook};

/// How the sidecar is made (flags, or the environment for the webhook's
/// Deployment); pod annotations override most of them per pod.
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// The gateway's image.
    #[arg(long, env = "NARROWGATE_SIDECAR_IMAGE", default_value_t = Options::default().image)]
    image: String,
    /// `native`: an init container with restartPolicy Always (Kubernetes
    /// 1.29 and later); `container`: an ordinary container, for older
    /// clusters.
    #[arg(long, env = "NARROWGATE_SIDECAR_MODE", value_enum, default_value = "native")]
    sidecar_mode: SidecarMode,
    /// The port the gateway takes traffic on.
    #[arg(long, default_value_t = Options::default().proxy_port)]
    proxy_port: u16,
    /// The gateway's admin port (probes, metrics).
    #[arg(long, default_value_t = Options::default().admin_port)]
    admin_port: u16,
    /// The ConfigMap holding the gateway's config.yaml, unless a pod names
    /// another (annotation narrowgate.io/config).
    #[arg(long, env = "NARROWGATE_SIDECAR_CONFIG", default_value_t = Options::default().config_map)]
    config_map: String,
    /// The Secret mounted beside it, unless a pod names another
    /// (annotation narrowgate.io/secret).
    #[arg(long, env = "NARROWGATE_SIDECAR_SECRET", default_value_t = Options::default().secret)]
    secret: String,
    /// RUST_LOG for the gateway, unless a pod says otherwise
    /// (annotation narrowgate.io/log-level).
    #[arg(long, default_value_t = Options::default().log_level)]
    log_level: String,
}

impl SidecarArgs {
    fn options(self) -> Options {
        Options {
            image: self.image,
            mode: self.sidecar_mode,
            proxy_port: self.proxy_port,
            admin_port: self.admin_port,
            config_map: self.config_map,
            secret: self.secret,
            log_level: self.log_level,
            ..Options::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The manifests (multi-document YAML; `-` reads standard input).
    #[arg(long, short = 'f')]
    filename: PathBuf,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    sidecar: SidecarArgs,
}

/// Inject the sidecar into every workload of a manifest file.
pub fn inject(args: InjectArgs) -> anyhow::Result<()> {
    let text = if args.filename.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&args.filename).with_context(|| format!("reading {}", args.filename.display()))?
    };
    let out = inject_documents(&text, &args.sidecar.options())?;
    match args.output {
        Some(path) => std::fs::write(&path, out).with_context(|| format!("writing {}", path.display())),
        None => {
            print!("{out}");
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebhookArgs {
    #[command(subcommand)]
    command: Option<WebhookCommand>,
    /// The serving certificate (PEM, the chain); read again when it changes.
    #[arg(long, env = "NARROWGATE_WEBHOOK_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "NARROWGATE_WEBHOOK_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Where to listen (HTTPS): POST /inject, GET /healthz.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// How often the certificate files are checked for a change.
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_duration)]
    reload_interval: std::time::Duration,
    /// Once listening, write the bound address here (with port 0, how a
    /// test learns the port).
    #[arg(long)]
    addresses_file: Option<PathBuf>,
    #[command(flatten)]
    sidecar: SidecarArgs,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Make a CA and a serving certificate for the webhook's Service
    /// (without cert-manager), and print the caBundle for its
    /// MutatingWebhookConfiguration.
    Certs {
        /// The directory to write ca.crt, tls.crt and tls.key to.
        #[arg(long)]
        out: PathBuf,
        /// The webhook's Service.
        #[arg(long, default_value = "narrowgate-injector")]
        service: String,
        /// The Service's namespace.
        #[arg(long, default_value = "narrowgate-system")]
        namespace: String,
        /// How long the certificates are valid (1 to 3650 days).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// More DNS names for the serving certificate.
        #[arg(long = "dns")]
        extra: Vec<String>,
    },
}

/// Run the webhook, or make its certificates.
pub fn webhook(args: WebhookArgs) -> anyhow::Result<()> {
    if let Some(WebhookCommand::Certs { out, service, namespace, days, extra }) = args.command {
        let mut names = certs::service_names(&service, &namespace);
        names.extend(extra);
        let made = certs::make(&names, days)?;
        certs::write(&made, &out).with_context(|| format!("writing to {}", out.display()))?;
        println!("wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key (for {1})", out.display(), names.join(", "));
        println!("caBundle: {}", certs::ca_bundle(&made));
        return Ok(());
    }
    anyhow::ensure!(args.reload_interval >= std::time::Duration::from_secs(1), "--reload-interval must be at least 1s");
    let (Some(tls_cert), Some(tls_key)) = (args.tls_cert, args.tls_key) else {
        anyhow::bail!(
            "the webhook serves HTTPS only: give --tls-cert and --tls-key (or run `narrowgate webhook certs`)"
        );
    };
    let config = webhook::WebhookConfig {
        listen: args.listen,
        tls_cert,
        tls_key,
        reload_interval: args.reload_interval,
        options: args.sidecar.options(),
    };
    let addresses_file = args.addresses_file;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let mut written = Ok(());
        let bound = |addr: SocketAddr| {
            if let Some(file) = &addresses_file {
                let tmp = file.with_extension("tmp");
                written = std::fs::write(&tmp, serde_json::json!({ "webhook": addr.to_string() }).to_string())
                    .and_then(|()| std::fs::rename(&tmp, file));
            }
        };
        webhook::serve(config, super::shutdown_signal(), bound).await?;
        written.context("writing the addresses file")
    })
}
