//! The `starling` binary: config → build → run → drain. Kept thin: all
//! behaviour lives in the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use starling_broker::StartError;
use starling_broker::config::{Config, ListenerConfig};
use starling_broker::server::Server;
use tokio_util::sync::CancellationToken;

/// Exit code for a bad configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "starling",
    version,
    about = "Starling: a clustered MQTT broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker node.
    Serve(ServeArgs),
    /// Inspect or change the cluster through a node's admin API.
    Cluster(ClusterArgs),
    /// Validate policy files and explain decisions.
    #[command(subcommand)]
    Policy(starling_broker::cli::policy::PolicyCommand),
    /// Hash a password (read from standard input) for a policy file.
    Passwd,
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Admin API base URL of any node.
    #[arg(
        long,
        env = "STARLING_ADMIN_URL",
        default_value = "http://127.0.0.1:9100"
    )]
    admin: String,
    /// File holding the admin bearer token.
    #[arg(long, env = "STARLING_ADMIN_TOKEN_FILE")]
    token_file: PathBuf,
    #[command(subcommand)]
    action: ClusterAction,
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Members, roles, leader, term, log indexes and lag (JSON).
    Status,
    /// Add a node (as learner, promoted to voter once caught up).
    Add {
        /// Node id.
        id: u64,
        /// `host:port` of its cluster listener.
        addr: String,
    },
    /// Remove a node from the membership.
    Remove {
        /// Node id.
        id: u64,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "STARLING_CONFIG")]
    config: Option<PathBuf>,
    /// MQTT listen address (repeatable); replaces the config's listeners.
    #[arg(long, env = "STARLING_LISTEN", value_delimiter = ',')]
    listen: Vec<SocketAddr>,
    /// Directory for durable state.
    #[arg(long, env = "STARLING_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Node id (1 for a single node).
    #[arg(long, env = "STARLING_NODE_ID")]
    node_id: Option<u64>,
    /// Peer-link address of this node (cluster port).
    #[arg(long, env = "STARLING_CLUSTER_LISTEN")]
    cluster_listen: Option<SocketAddr>,
    /// Address other nodes dial to reach this node (default: --cluster-listen).
    #[arg(long, env = "STARLING_CLUSTER_ADVERTISE")]
    cluster_advertise: Option<String>,
    /// The other nodes, `ID@host:port`, comma separated.
    #[arg(long, env = "STARLING_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// File holding the cluster's shared secret.
    #[arg(long, env = "STARLING_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Policy file (default deny: without a policy every client is refused).
    #[arg(long, env = "STARLING_POLICY")]
    policy: Option<PathBuf>,
    /// Admin HTTP address (`/livez`, `/readyz`, `/api/v1`).
    #[arg(long, env = "STARLING_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `starling_broker=debug`.
    #[arg(long, env = "STARLING_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, env = "STARLING_LOG_JSON")]
    log_json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Cluster(args) => cluster(args),
        Command::Policy(cmd) => starling_broker::cli::policy::run(cmd),
        Command::Passwd => starling_broker::cli::policy::passwd(),
    }
}

/// `starling cluster …`: one admin API call, result printed as JSON.
fn cluster(args: ClusterArgs) -> ExitCode {
    let token = match std::fs::read_to_string(&args.token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            eprintln!("starling: cannot read {}: {e}", args.token_file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let base = args.admin.trim_end_matches('/');
    let auth = format!("Bearer {token}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .build()
        .into();
    let result = match args.action {
        ClusterAction::Status => agent
            .get(format!("{base}/api/v1/cluster"))
            .header("Authorization", &auth)
            .call(),
        ClusterAction::Add { id, addr } => agent
            .post(format!("{base}/api/v1/cluster/nodes"))
            .header("Authorization", &auth)
            .send_json(serde_json::json!({ "id": id, "addr": addr })),
        ClusterAction::Remove { id } => agent
            .delete(format!("{base}/api/v1/cluster/nodes/{id}"))
            .header("Authorization", &auth)
            .call(),
    };
    match result {
        Ok(mut resp) => {
            let status = resp.status();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            println!("{body}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("starling: admin API at {base}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &ServeArgs) -> Result<Config, StartError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.listeners = args
            .listen
            .iter()
            .enumerate()
            .map(|(i, addr)| ListenerConfig {
                name: if i == 0 {
                    "mqtt".into()
                } else {
                    format!("mqtt{i}")
                },
                bind: *addr,
                ..ListenerConfig::default()
            })
            .collect();
    }
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = dir.clone();
    }
    if let Some(id) = args.node_id {
        config.node.id = id;
    }
    if let Some(addr) = args.admin_listen {
        config.admin.listen = addr;
    }
    if args.policy.is_some() {
        config.auth.policy_file.clone_from(&args.policy);
    }
    let c = &mut config.cluster;
    if args.cluster_listen.is_some() {
        c.listen = args.cluster_listen;
    }
    if args.cluster_advertise.is_some() {
        c.advertise.clone_from(&args.cluster_advertise);
    }
    if !args.peers.is_empty() {
        c.peers.clone_from(&args.peers);
    }
    if args.cluster_secret_file.is_some() {
        c.secret_file.clone_from(&args.cluster_secret_file);
    }
    config.validate()?;
    Ok(config)
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(&args);
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starling: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starling: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("starling: {e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                    StartError::Bind { .. } | StartError::Cluster(_) | StartError::Metrics(_) => {
                        ExitCode::FAILURE
                    }
                };
            }
        };
        let stop = CancellationToken::new();
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal_stop.cancel();
        });
        server.run(stop).await;
        ExitCode::SUCCESS
    })
}

/// The main log (text or JSON, filtered by `--log`) and, beside it, the
/// security events as JSON lines whatever the main format
/// (`docs/security.md`).
fn init_logging(args: &ServeArgs) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let security = starling_broker::security::TARGET;
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(
            format!("{security}=off")
                .parse()
                .unwrap_or_else(|_| tracing::Level::INFO.into()),
        );
    let ansi = std::io::stderr().is_terminal();
    let main = if args.log_json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed()
    };
    let events = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(security, tracing::Level::INFO),
        );
    // Copies of security events for `$SYS/starling/security/...` (used only
    // when `[security] publish_sys` is on).
    let sys = starling_broker::security::SysLayer.with_filter(
        tracing_subscriber::filter::Targets::new().with_target(security, tracing::Level::INFO),
    );
    tracing_subscriber::registry()
        .with(main)
        .with(events)
        .with(sys)
        .init();
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
