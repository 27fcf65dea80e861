//! `starling policy check|explain` and `starling passwd`: thin wrappers over
//! the `starling-auth` policy engine for security teams and CI pipelines.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use starling_auth::{Action, Policy, Request, hash_password};

/// Exit code for unusable input (sysexits EX_DATAERR).
const EXIT_DATA: u8 = 65;

/// `starling policy …` subcommands.
#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and run the test cases it carries.
    Check {
        /// Policy file (TOML).
        file: PathBuf,
    },
    /// Say which rule decides a request, and why.
    Explain {
        /// Policy file (TOML).
        file: PathBuf,
        /// Identity name from the policy (default: the username, else `anonymous`).
        #[arg(long)]
        identity: Option<String>,
        /// MQTT client id.
        #[arg(long)]
        client_id: String,
        /// Username presented at CONNECT.
        #[arg(long)]
        username: Option<String>,
        /// Client certificate subject CN.
        #[arg(long)]
        cert_cn: Option<String>,
        /// Source address of the connection.
        #[arg(long, default_value = "127.0.0.1")]
        from: IpAddr,
        /// Listener name.
        #[arg(long, default_value = "mqtt")]
        listener: String,
        /// The connection uses TLS.
        #[arg(long)]
        tls: bool,
        /// QoS of the publish or subscription.
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// Retain flag of the publish.
        #[arg(long)]
        retain: bool,
        /// connect | publish | subscribe | receive | retain | will
        action: String,
        /// Topic name, or filter for subscribe (ignored for connect).
        #[arg(default_value = "")]
        topic: String,
    },
}

fn read(file: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(file).map_err(|e| {
        eprintln!("starling: cannot read {}: {e}", file.display());
        ExitCode::from(EXIT_DATA)
    })
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Runs a `starling policy` subcommand.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Check { file } => {
            let text = match read(&file) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let report = Policy::check(&text);
            say(&format!("{report}\n"));
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        PolicyCommand::Explain {
            file,
            identity,
            client_id,
            username,
            cert_cn,
            from,
            listener,
            tls,
            qos,
            retain,
            action,
            topic,
        } => {
            let text = match read(&file) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let policy = match Policy::parse(&text) {
                Ok((p, _)) => p,
                Err(e) => {
                    eprintln!("starling: {e}");
                    return ExitCode::from(EXIT_DATA);
                }
            };
            let Some(action) = Action::parse(&action) else {
                eprintln!("starling: unknown action `{action}`");
                return ExitCode::from(EXIT_DATA);
            };
            let name = identity
                .or_else(|| username.clone())
                .unwrap_or_else(|| "anonymous".to_owned());
            let Some(principal) = policy.principal(&name, cert_cn.as_deref(), username.as_deref())
            else {
                eprintln!(
                    "starling: the policy has no identity `{name}` (or anonymous is disabled)"
                );
                return ExitCode::from(EXIT_DATA);
            };
            let req = Request {
                principal: &principal,
                client_id: &client_id,
                action,
                topic: &topic,
                qos,
                retain,
                source: from,
                listener: &listener,
                tls,
            };
            say(&policy.explain(&req).to_string());
            ExitCode::SUCCESS
        }
    }
}

/// `starling passwd`: reads a password from standard input (one line) and
/// prints its argon2id hash for a policy file.
pub fn passwd() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("starling: cannot read the password: {e}");
        return ExitCode::from(EXIT_DATA);
    }
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("starling: refusing to hash an empty password");
        return ExitCode::from(EXIT_DATA);
    }
    match hash_password(password.as_bytes()) {
        Ok(hash) => {
            say(&format!("{hash}\n"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("starling: {e}");
            ExitCode::FAILURE
        }
    }
}
