//! Errors of the broker library.

use std::path::PathBuf;

/// A configuration that cannot be used. The binary prints it and exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the config schema (names the key and position).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser message with line, column and key.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid config value `{key}`: {reason}")]
    Invalid {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cluster layer (Raft storage, peer listener) could not start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The metrics registry could not be built (a duplicate metric name).
    #[error("metrics: {0}")]
    Metrics(String),
    /// A listener could not be bound.
    #[error("cannot bind listener `{name}` on {addr}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}
